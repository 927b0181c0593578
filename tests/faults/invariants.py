"""What must hold after a fault, checked on the database against what the load recorded.

No acknowledged write lost. do_update_user_presence handles a report made at ``log_time``
under the lock of the member's row: it writes a timestamp that is more than
UPDATE_MIN_FREQ_SECONDS older than ``log_time`` (last_connected_time for every report,
last_active_time for an "active" one), and otherwise leaves it, being then at least
``log_time - UPDATE_MIN_FREQ_SECONDS``. Timestamps never move backwards except when the member
turns invisible. So once a report is acknowledged, the stored timestamp is at or after
``log_time - UPDATE_MIN_FREQ_SECONDS`` for good, and the server's ``log_time`` is at or after
the moment the client sent the request (one machine, one clock). For a member that toggles
invisible mode, what holds depends on the last PATCH (see lost_write_problems).

Update ids: unique among a realm's rows, none above the realm's sequence, and no acknowledged
answer carried an id above it either (the sequence never went back), nor a smaller id than an
earlier answer to the same member.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model

from django_presence.models import PresenceSequence, RealmMember, UserPresence

from .presence_load import REPORT, SETTINGS, Attempt

# Stored timestamps have microseconds; time.time() has more digits.
CLOCK_SLACK_SECS = 0.001


@dataclass(frozen=True)
class StoredMember:
    """A member's membership flag and presence row (None fields when there is no row)."""

    realm_id: int
    presence_enabled: bool
    last_active: float | None
    last_connected: float | None
    last_update_id: int | None


@dataclass(frozen=True)
class Stored:
    members: dict[str, StoredMember]  # by username
    sequences: dict[int, int]  # realm id: PresenceSequence.last_update_id


def read_stored(connection: Any) -> Stored:
    """Every member, presence row and realm sequence, from a psycopg connection."""
    users = get_user_model()._meta.db_table
    members = RealmMember._meta.db_table
    presence = UserPresence._meta.db_table
    sequence = PresenceSequence._meta.db_table
    rows = connection.execute(
        f"SELECT u.username, m.realm_id, m.presence_enabled, p.last_active_time,"
        f" p.last_connected_time, p.last_update_id FROM {members} m"
        f" JOIN {users} u ON u.id = m.user_id LEFT JOIN {presence} p ON p.user_id = m.user_id"
    ).fetchall()
    sequences = connection.execute(f"SELECT realm_id, last_update_id FROM {sequence}").fetchall()
    return Stored(
        members={
            username: StoredMember(
                realm_id=realm_id,
                presence_enabled=enabled,
                last_active=_seconds(last_active),
                last_connected=_seconds(last_connected),
                last_update_id=update_id,
            )
            for username, realm_id, enabled, last_active, last_connected, update_id in rows
        },
        sequences=dict(sequences),
    )


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def lost_write_problems(
    attempts: Sequence[Attempt], stored: Stored, *, min_freq: float, backdate: float
) -> tuple[list[str], int]:
    """Acknowledged writes the database does not reflect, and how many acknowledged writes
    were checked. ``backdate`` is INVISIBLE_BACKDATE_SECS.

    A member's last PATCH settings decides what can be checked: unacknowledged, nothing (it
    may or may not have happened); presence_enabled=false acknowledged, the flag is off and the
    timestamps are backdated, whatever was reported since (ignored); presence_enabled=true
    acknowledged, the flag is on and the reports after it are checked, and the PATCH itself
    counts as an "active" report if the PATCH before it turned presence off."""
    problems: list[str] = []
    checked = 0
    by_member: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in sorted(attempts, key=lambda attempt: attempt.sent):
        by_member[attempt.username].append(attempt)
    for username, own in by_member.items():
        row = stored.members[username]
        latest = max(attempt.answered for attempt in own)
        for name, moment in (("active", row.last_active), ("connected", row.last_connected)):
            if moment is not None and moment > latest + CLOCK_SLACK_SECS:
                problems.append(f"{username}: last {name} {moment} is after every request")

        reports = [attempt for attempt in own if attempt.kind == REPORT]
        patches = [attempt for attempt in own if attempt.kind == SETTINGS]
        if patches:
            last = patches[-1]
            if not last.acknowledged:
                continue
            enabled = last.value == "true"
            if row.presence_enabled != enabled:
                problems.append(
                    f"{username}: presence_enabled is {row.presence_enabled} after an "
                    f"acknowledged PATCH presence_enabled={last.value} (the last one)"
                )
            checked += 1
            if not enabled:
                bound = last.answered - backdate + CLOCK_SLACK_SECS
                for name, moment in (
                    ("active", row.last_active),
                    ("connected", row.last_connected),
                ):
                    if moment is not None and moment > bound:
                        problems.append(
                            f"{username}: last {name} {moment} not backdated by an "
                            f"acknowledged PATCH presence_enabled=false at {last.answered}"
                        )
                continue
            reports = [attempt for attempt in reports if attempt.sent > last.sent]
            if len(patches) > 1 and patches[-2].acknowledged and patches[-2].value == "false":
                reports.append(last)  # coming back reports "active"
        for attempt in reports:
            if not attempt.acknowledged:
                continue
            checked += 1
            floor = attempt.sent - min_freq - CLOCK_SLACK_SECS
            active = attempt.kind == SETTINGS or attempt.value == "active"
            if row.last_connected is None or row.last_connected < floor:
                problems.append(
                    f"{username}: last connected {row.last_connected} is before the "
                    f"acknowledged {attempt.value} report sent at {attempt.sent} "
                    f"(minus {min_freq} s)"
                )
            if active and (row.last_active is None or row.last_active < floor):
                problems.append(
                    f"{username}: last active {row.last_active} is before the acknowledged "
                    f"active report sent at {attempt.sent} (minus {min_freq} s)"
                )
    return problems, checked


def update_id_problems(attempts: Sequence[Attempt], stored: Stored) -> list[str]:
    """Duplicate row ids within a realm, row ids or acknowledged ids above the realm's
    sequence, and a member's acknowledged ids going backwards."""
    problems: list[str] = []
    owners: dict[tuple[int, int], str] = {}
    for username, row in stored.members.items():
        if row.last_update_id is None:
            continue
        key = (row.realm_id, row.last_update_id)
        if key in owners:
            problems.append(
                f"update id {row.last_update_id} held by both {owners[key]} and {username}"
            )
        owners[key] = username
        sequence = stored.sequences.get(row.realm_id)
        if sequence is None or row.last_update_id > sequence:
            problems.append(
                f"{username}: row update id {row.last_update_id} above the realm's "
                f"sequence {sequence}"
            )
    newest: dict[str, tuple[int, float]] = {}
    for attempt in sorted(attempts, key=lambda attempt: attempt.sent):
        update_id = attempt.update_id
        if update_id is None:
            continue
        realm_id = stored.members[attempt.username].realm_id
        sequence = stored.sequences.get(realm_id, -1)
        if update_id > sequence:
            problems.append(
                f"{attempt.username}: acknowledged update id {update_id} (sent at "
                f"{attempt.sent}) above the realm's sequence {sequence}"
            )
        earlier = newest.get(attempt.username)
        if earlier is not None and update_id < earlier[0]:
            problems.append(
                f"{attempt.username}: update id {update_id} (sent at {attempt.sent}) after "
                f"{earlier[0]} (sent at {earlier[1]})"
            )
        newest[attempt.username] = (update_id, attempt.sent)
    return problems


def envelope_problems(attempts: Sequence[Attempt]) -> list[str]:
    """Answers that are not Zulip's JSON envelope: success with 200, error otherwise."""
    problems = []
    for attempt in attempts:
        if not attempt.answered_at_all:
            continue
        body = attempt.body
        where = f"{attempt.kind} sent at {attempt.sent:.3f}: HTTP {attempt.http_status}"
        if not attempt.content_type.startswith("application/json") or not isinstance(body, dict):
            problems.append(f"{where}, {attempt.content_type!r}: {attempt.error!r}")
        elif attempt.http_status == 200:
            if body.get("result") != "success" or body.get("msg") != "":
                problems.append(f"{where} without the success envelope: {body}")
        elif not (
            body.get("result") == "error"
            and isinstance(body.get("msg"), str)
            and isinstance(body.get("code"), str)
        ):
            problems.append(f"{where} without the error envelope: {body}")
    return problems


def assert_no_problems(problems: Sequence[str], what: str, *, shown: int = 10) -> None:
    """Fail with how many ``what`` there were and the first few of them."""
    assert not problems, f"{len(problems)} {what}:\n" + "\n".join(problems[:shown])
