"""Every write of django-presence. Nothing else saves or updates these models.

Each action runs one short transaction; signals go out with ``transaction.on_commit``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from .conf import presence_settings
from .emoji import EmojiError, check_emoji, resolve_emoji
from .formatting import format_modern_entry
from .models import (
    ApiKey,
    PresenceSequence,
    Realm,
    RealmEmoji,
    RealmMember,
    UserPresence,
    UserStatus,
    user_email,
)
from .queries import get_user_status, stale_presence_rows, stored_status_of
from .recent_keys import forget_recent_api_keys
from .signals import (
    presence_changed,
    presence_enabled_changed,
    presence_status_changed,
    user_status_changed,
)
from .status import (
    ACTIVE,
    OFFLINE,
    REPORTED_STATUSES,
    Transition,
    next_status_change,
    presence_status,
    transitions_by_time,
)
from .timers import is_late
from .user_status import (
    MAX_END_TIMESTAMP,
    NO_EMOJI,
    NO_STATUS,
    STATUS_TEXT_MAX_LENGTH,
    UNSET,
    Emoji,
    StatusChange,
    StoredStatus,
    Unset,
    end_time_after,
    ending,
    format_user_status,
)

logger = logging.getLogger(__name__)


# A NULL timestamp counts as this old, so the user is treated as newly online.
NULL_TIMESTAMP_AGE = timedelta(days=1)

API_KEY_LENGTH = 32
API_KEY_ALPHABET = string.ascii_letters + string.digits


# Realms and members ------------------------------------------------------------------------


def do_create_realm(string_id: str, name: str, *, presence_disabled: bool = False) -> Realm:
    """Create a realm together with its presence sequence row (starting at 0)."""
    with transaction.atomic():
        realm = Realm.objects.create(
            string_id=string_id, name=name, presence_disabled=presence_disabled
        )
        PresenceSequence.objects.create(realm=realm, last_update_id=0)
    return realm


class MembershipError(ValueError):
    """Why a user cannot become a member of a realm; the message is for people."""


def validate_realm_membership(user: AbstractBaseUser, realm: Realm) -> None:
    """The membership rules: one realm per user, and one member per email within a realm (the
    API finds members by email, case-insensitively). Raises MembershipError."""
    email_field = user.get_email_field_name()
    email = user_email(user)
    current = RealmMember.objects.select_related("realm").filter(user_id=user.pk).first()
    if current is not None:
        raise MembershipError(f"{email} already belongs to realm '{current.realm.string_id}'.")
    clash = (
        RealmMember.objects.select_related("user")
        .filter(realm=realm, **{f"user__{email_field}__iexact": email})
        .first()
    )
    if clash is not None:
        raise MembershipError(
            f"Another member of realm '{realm.string_id}' already has the email "
            f"{clash.email} (user id {clash.user_id})."
        )


def check_add_realm_member(
    user: AbstractBaseUser,
    realm: Realm,
    *,
    role: int = RealmMember.Role.MEMBER,
    is_bot: bool = False,
) -> RealmMember:
    """Make ``user`` a member of ``realm`` if validate_realm_membership allows it (else
    MembershipError)."""
    validate_realm_membership(user, realm)
    return do_add_realm_member(user, realm, role=role, is_bot=is_bot)


def do_add_realm_member(
    user: AbstractBaseUser,
    realm: Realm,
    *,
    role: int = RealmMember.Role.MEMBER,
    is_bot: bool = False,
) -> RealmMember:
    """Make ``user`` a member of ``realm``, unchecked: callers have run
    validate_realm_membership (the database still refuses a second membership of a user)."""
    return RealmMember.objects.create(user_id=user.pk, realm=realm, role=role, is_bot=is_bot)


def do_change_member_role(member: RealmMember, role: int) -> None:
    member.role = role
    member.save(update_fields=["role"])


def do_deactivate_member(member: RealmMember) -> None:
    """Hide the member from presence and refuse their API keys (USER_DEACTIVATED)."""
    member.is_active = False
    member.save(update_fields=["is_active"])


def do_reactivate_member(member: RealmMember) -> None:
    member.is_active = True
    member.save(update_fields=["is_active"])


def do_set_realm_deactivated(realm: Realm, deactivated: bool) -> None:
    realm.deactivated = deactivated
    realm.save(update_fields=["deactivated", "updated_at"])


def do_set_realm_presence_disabled(realm: Realm, disabled: bool) -> None:
    realm.presence_disabled = disabled
    realm.save(update_fields=["presence_disabled", "updated_at"])


# API keys ----------------------------------------------------------------------------------


def api_key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def do_create_api_key(member: RealmMember, *, revoke_existing: bool = False) -> tuple[ApiKey, str]:
    """Issue a new key. Returns the row and the raw key, which is never stored nor shown again."""
    raw_key = "".join(secrets.choice(API_KEY_ALPHABET) for _ in range(API_KEY_LENGTH))
    with transaction.atomic():
        if revoke_existing:
            do_revoke_api_keys(member)
        api_key = ApiKey.objects.create(
            member=member, key_digest=api_key_digest(raw_key), prefix=raw_key[:6]
        )
    return api_key, raw_key


def do_revoke_api_key(api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


def do_revoke_api_keys(member: RealmMember) -> int:
    """Revoke every active key of the member; returns how many were revoked."""
    revoked = ApiKey.objects.filter(member=member, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    forget_recent_api_keys()  # an update sends no post_save
    return revoked


# Presence ----------------------------------------------------------------------------------


def update_user_presence(
    member: RealmMember, *, log_time: datetime, status: str, new_user_input: bool
) -> int | None:
    """What a presence report does: nothing at all for a member in invisible mode, or for a bot
    (bots have no presence). Returns the update id of the row's write, None when nothing was
    written.

    ``new_user_input`` feeds Zulip's usage statistics, which this app does not keep; it is
    accepted so clients can send it."""
    if member.presence_enabled and not member.is_bot:
        return do_update_user_presence(member, log_time=log_time, status=status)
    return None


@dataclass(frozen=True)
class _PresenceWrite:
    """The outcome of the last statement of a presence write."""

    last_update_id: int
    row_written: bool


def do_update_user_presence(
    member: RealmMember,
    *,
    log_time: datetime,
    status: str,
    force_send_update: bool = False,
) -> int | None:
    """Record a report of ``status`` ("active" or "idle") made at ``log_time``. Returns the
    update id of the row's write, None when nothing was written.

    Writes at most once per timestamp per UPDATE_MIN_FREQ_SECONDS, never moves a timestamp
    backwards, keeps last_connected >= last_active, and bumps the realm sequence only when it
    writes. Must not run inside an outer transaction: the realm's sequence row is locked from
    the write until commit, and an outer transaction would hold that hot lock for longer."""
    if status not in REPORTED_STATUSES:
        raise ValueError(f"invalid presence status {status!r}")
    conf = presence_settings
    # Zulip asserts this on every write; checks.py reports it at start-up as well.
    assert 3 * conf.PING_INTERVAL_SECS + 20 <= conf.OFFLINE_THRESHOLD_SECS
    is_active = status == ACTIVE

    loaded = None if force_send_update else _loaded_presence_row(member)
    if loaded is not None and not _report_changes(
        loaded.last_active_time, loaded.last_connected_time, log_time, is_active
    ):
        # The row came with the member (authentication loads it) moments ago, and timestamps
        # only move forward (invisible mode moves them back, but then reports are ignored):
        # a report that changed nothing then changes nothing now. No transaction, no lock.
        return None

    with transaction.atomic(durable=True):
        report = _write_report(member, log_time, is_active)
        if report is None:
            return None
        announce = report.created or report.came_online
        if force_send_update or (announce and not member.realm.presence_disabled):
            _send_presence_changed_on_commit(
                member,
                last_active=report.last_active,
                last_connected=report.last_connected,
                last_update_id=report.last_update_id,
                log_time=log_time,
                forced=force_send_update,
            )
    return report.last_update_id


@dataclass(frozen=True)
class _WrittenReport:
    """What a report did to the member's row: the timestamps now, the update id of the write
    (None when it wrote nothing), and whether it created the row or brought the member online
    (active after more than PRESENCE_CAME_ONLINE_THRESHOLD_SECS without being active)."""

    last_active: datetime | None
    last_connected: datetime | None
    last_update_id: int | None
    created: bool
    came_online: bool


def _write_report(
    member: RealmMember, log_time: datetime, is_active: bool
) -> _WrittenReport | None:
    """Lock the member's row and write the report into it, or create it. None when another
    request created the row first: that request sends the event, this one does nothing."""
    row = _lock_presence_row(member.user_id)
    previous_active = None if row is None else row.last_active
    came_online = is_active and _age(previous_active, log_time) > timedelta(
        seconds=presence_settings.CAME_ONLINE_THRESHOLD_SECS
    )
    if row is None:
        last_active = log_time if is_active else None
        status = _StatusUpdate.of_new_row(last_active, log_time, log_time)
        write = _insert_presence_row(member, last_active, log_time, status)
        if not write.row_written:
            logger.info("UserPresence row already created for %s, returning.", member.user_id)
            return None
        status.announce_on_commit(member)
        return _WrittenReport(last_active, log_time, write.last_update_id, True, came_online)
    changes: dict[str, Any] = _report_changes(
        row.last_active, row.last_connected, log_time, is_active
    )
    last_active = changes.get("last_active_time", row.last_active)
    last_connected = changes.get("last_connected_time", row.last_connected)
    update_id = None
    if changes:
        status = _StatusUpdate.of_row(row, last_active, last_connected, log_time)
        write = _update_presence_row(member, row.id, {**changes, **status.columns()})
        update_id = write.last_update_id
        status.announce_on_commit(member)
    return _WrittenReport(last_active, last_connected, update_id, False, came_online)


@dataclass(frozen=True)
class _StatusUpdate:
    """What a write does to the row's announced status: the transitions to announce (those
    time alone made before the write, which no sweeper has announced yet, then the write's own),
    and the status and next change to store with the write."""

    transitions: list[Transition]
    status: str
    changes_at: datetime | None

    @classmethod
    def of_new_row(
        cls, last_active: datetime | None, last_connected: datetime, log_time: datetime
    ) -> _StatusUpdate:
        return cls._after(OFFLINE, [], last_active, last_connected, log_time)

    @classmethod
    def of_row(
        cls,
        row: _LockedRow,
        last_active: datetime | None,
        last_connected: datetime | None,
        log_time: datetime,
    ) -> _StatusUpdate:
        by_time, status, _changes_at = transitions_by_time(
            row.announced_status,
            row.status_changes_at,
            row.last_active,
            row.last_connected,
            log_time,
        )
        return cls._after(status, by_time, last_active, last_connected, log_time)

    @classmethod
    def _after(
        cls,
        status: str,
        transitions: list[Transition],
        last_active: datetime | None,
        last_connected: datetime | None,
        log_time: datetime,
    ) -> _StatusUpdate:
        new = presence_status(last_active, last_connected, log_time)
        if new != status:
            transitions = [*transitions, Transition(status, new, log_time)]
        return cls(transitions, new, next_status_change(last_active, last_connected, log_time))

    def columns(self) -> dict[str, Any]:
        return {"announced_status": self.status, "status_changes_at": self.changes_at}

    def announce_on_commit(self, member: RealmMember) -> None:
        if self.transitions:
            _send_status_changes_on_commit(
                [(member, transition) for transition in self.transitions]
            )


def _age(moment: datetime | None, log_time: datetime) -> timedelta:
    """How long before ``log_time`` a timestamp is; a NULL one counts as NULL_TIMESTAMP_AGE."""
    return log_time - moment if moment else NULL_TIMESTAMP_AGE


def _report_changes(
    last_active: datetime | None,
    last_connected: datetime | None,
    log_time: datetime,
    is_active: bool,
) -> dict[str, datetime]:
    """What a report at ``log_time`` writes to an existing row: each timestamp more than
    PRESENCE_UPDATE_MIN_FREQ_SECONDS older than the report (last_active only for an active
    report, which also brings last_connected up to it). Empty when it changes nothing."""
    min_freq = timedelta(seconds=presence_settings.UPDATE_MIN_FREQ_SECONDS)
    changes: dict[str, datetime] = {}
    if _age(last_connected, log_time) > min_freq:
        changes["last_connected_time"] = last_connected = log_time
    if is_active and _age(last_active, log_time) > min_freq:
        changes["last_active_time"] = log_time
        if last_connected is None or last_connected < log_time:
            changes["last_connected_time"] = log_time
    return changes


@dataclass(frozen=True)
class _LockedRow:
    id: int
    last_active: datetime | None
    last_connected: datetime | None
    announced_status: str
    status_changes_at: datetime | None


def _lock_presence_row(user_id: int) -> _LockedRow | None:
    """The user's row, locked until commit (SQLite has no row locks: its writers take the
    database lock at BEGIN); None when the user has none. Written out: building and compiling
    the QuerySet would cost more than the round trip."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    columns = ("id", "last_active_time", "last_connected_time", "announced_status")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(_quoted(UserPresence, column) for column in columns)},"
            f" {_quoted(UserPresence, 'status_changes_at')} FROM {_quoted(UserPresence)}"
            f" WHERE {_quoted(UserPresence, 'user')} = %s{lock}",
            [user_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return _LockedRow(
        row[0],
        _datetime_from_db(row[1]),
        _datetime_from_db(row[2]),
        row[3],
        _datetime_from_db(row[4]),
    )


def _loaded_presence_row(member: RealmMember) -> UserPresence | None:
    """The member's presence row if it was loaded together with the member (authentication
    selects it with the API key), else None; never a query."""
    user = RealmMember._meta.get_field("user").get_cached_value(member, default=None)
    if user is None:
        return None
    presence_rel = UserPresence._meta.get_field("user").remote_field
    presence = presence_rel.get_cached_value(user, default=None)
    return presence if isinstance(presence, UserPresence) else None


def do_set_presence_enabled(
    member: RealmMember, presence_enabled: bool, *, log_time: datetime | None = None
) -> None:
    """Turn invisible mode off (``presence_enabled=True``) or on (``False``).

    Turning presence on records an active report at once and forces a presence_changed signal.
    Turning it off backdates the row by INVISIBLE_BACKDATE_SECS so the user looks offline at
    once but keeps a plausible "last seen"; that also forces the signal."""
    log_time = log_time or timezone.now()
    if member.presence_enabled == presence_enabled:
        return
    with transaction.atomic(durable=True):
        locked = RealmMember.objects.select_for_update().get(pk=member.pk)
        if locked.presence_enabled == presence_enabled:
            member.presence_enabled = presence_enabled
            return
        member.presence_enabled = presence_enabled
        member.save(update_fields=["presence_enabled"])
        if not presence_enabled and not member.is_bot:
            _backdate_presence_row(member, log_time)

        def send_enabled_changed() -> None:
            presence_enabled_changed.send(
                sender=RealmMember,
                user=member.user,
                member=member,
                realm=member.realm,
                presence_enabled=presence_enabled,
            )

        transaction.on_commit(send_enabled_changed)

    if presence_enabled and not member.is_bot:
        # A separate transaction, as do_update_user_presence must not be nested. Bots have no
        # presence: the setting is kept, but no row is written and no event goes out.
        do_update_user_presence(member, log_time=log_time, status=ACTIVE, force_send_update=True)


def _backdate_presence_row(member: RealmMember, log_time: datetime) -> None:
    """Move both timestamps back to at most now - INVISIBLE_BACKDATE_SECS, never forwards.
    A member with no row keeps having none. Runs inside the caller's transaction."""
    backdate_to = log_time - timedelta(seconds=presence_settings.INVISIBLE_BACKDATE_SECS)
    row = _lock_presence_row(member.user_id)
    if row is None:
        return
    last_active, last_connected = row.last_active, row.last_connected
    changes: dict[str, Any] = {}
    if last_connected is not None and last_connected > backdate_to:
        changes["last_connected_time"] = last_connected = backdate_to
    if last_active is not None and last_active > backdate_to:
        changes["last_active_time"] = last_active = backdate_to
    if not changes:
        return
    status = _StatusUpdate.of_row(row, last_active, last_connected, log_time)
    write = _update_presence_row(member, row.id, {**changes, **status.columns()})
    status.announce_on_commit(member)
    _send_presence_changed_on_commit(
        member,
        last_active=last_active,
        last_connected=last_connected,
        last_update_id=write.last_update_id,
        log_time=log_time,
        forced=True,
    )


def _send_presence_changed_on_commit(
    member: RealmMember,
    *,
    last_active: datetime | None,
    last_connected: datetime | None,
    last_update_id: int | None,
    log_time: datetime,
    forced: bool,
) -> None:
    """Schedule presence_changed for after commit, whatever the realm's size: the cut-off of
    PRESENCE_USER_LIMIT_FOR_EVENTS applies to event queues only (events/receivers.py)."""
    date_joined = member.date_joined
    presence = format_modern_entry(last_active or date_joined, last_connected or date_joined)
    server_timestamp = log_time.timestamp()

    def send() -> None:
        presence_changed.send(
            sender=UserPresence,
            user=member.user,
            member=member,
            realm=member.realm,
            presence=presence,
            last_update_id=last_update_id,
            server_timestamp=server_timestamp,
            forced=forced,
        )

    transaction.on_commit(send)


def _send_status_changes_on_commit(changes: list[tuple[RealmMember, Transition]]) -> None:
    """presence_status_changed for each transition, in order, after commit."""

    def send() -> None:
        now = timezone.now()
        for member, transition in changes:
            presence_status_changed.send(
                sender=UserPresence,
                user=member.user,
                member=member,
                realm=member.realm,
                old_status=transition.old,
                new_status=transition.new,
                at=transition.at,
                late=is_late(transition.at, now),
            )

    transaction.on_commit(send)


# Rows whose status changes are announced per sweep, oldest due first; the rest, next sweep.
TRANSITIONS_BATCH_SIZE = 1000


def do_announce_due_status_transitions(now: datetime) -> int:
    """Announce the status changes time alone made up to ``now`` (presence_status_changed),
    each exactly once however many sweepers run: a row's announced state is replaced only if
    it is still the one read (and, on PostgreSQL, rows another sweeper or a write holds are
    skipped). Returns how many transitions it announced."""
    due_rows = UserPresence.objects.filter(status_changes_at__lte=now)
    # Most sweeps find nothing: they take no lock and open no transaction (on SQLite, with
    # IMMEDIATE transactions, one would take the database's write lock twice a second).
    if not due_rows.exists():
        return 0
    announced: list[tuple[int, Transition]] = []
    with transaction.atomic(durable=True):
        due = (
            due_rows.select_for_update(skip_locked=True)
            .order_by("status_changes_at")
            .values_list(
                "id",
                "user_id",
                "announced_status",
                "status_changes_at",
                "last_active_time",
                "last_connected_time",
            )[:TRANSITIONS_BATCH_SIZE]
        )
        for row_id, user_id, status, changes_at, last_active, last_connected in due:
            transitions, new_status, next_change = transitions_by_time(
                status, changes_at, last_active, last_connected, now
            )
            claimed = UserPresence.objects.filter(
                pk=row_id, announced_status=status, status_changes_at=changes_at
            ).update(announced_status=new_status, status_changes_at=next_change)
            if claimed:
                announced.extend((user_id, transition) for transition in transitions)
        if announced:
            members = {
                member.user_id: member
                for member in RealmMember.objects.filter(
                    user_id__in={user_id for user_id, _transition in announced}
                ).select_related("user", "realm")
            }
            _send_status_changes_on_commit(
                [
                    (members[user_id], transition)
                    for user_id, transition in announced
                    if user_id in members
                ]
            )
    return len(announced)


def do_record_lost_presence_event(realm: Realm) -> None:
    """Count a presence event of ``realm`` that could not be published (the event backend was
    down): every event queue of the realm registered before it answers BAD_EVENT_QUEUE_ID at
    its next poll, so that its client registers again and fetches the state afresh instead of
    missing the change for good (docs/events.md). One short transaction, run after the presence
    write's commit, by the receiver that publishes."""
    with transaction.atomic():
        lost = F("events_lost") + 1
        if not PresenceSequence.objects.filter(realm=realm).update(events_lost=lost):
            _ensure_presence_sequence(realm.pk)
            PresenceSequence.objects.filter(realm=realm).update(events_lost=lost)
        # The remembered keys carry the realm's count: the polls of this process must see
        # the new one at once.
        forget_recent_api_keys()


# Purging old rows ---------------------------------------------------------------------------


def do_purge_presence_rows(
    realm: Realm | None,
    older_than: datetime,
    *,
    batch_size: int = 1000,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the presence rows of ``realm`` (every realm for None) with no report since
    ``older_than`` (see queries.stale_presence_rows), ``batch_size`` rows per short
    transaction, so that concurrent presence writes never wait long. ``on_progress`` gets the
    running total after each batch. Returns how many rows were deleted.

    The realm sequence is not bumped: a deleted row has nothing left to send, so incremental
    readers simply stop receiving it. A user who reports again gets a new row and a new id."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    deleted = 0
    after_pk = 0
    # Walking the primary key forwards ends the loop even if rows keep changing meanwhile.
    while True:
        batch = list(
            stale_presence_rows(realm, older_than)
            .filter(pk__gt=after_pk)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            return deleted
        after_pk = batch[-1]
        with transaction.atomic(durable=True):
            # The DELETE checks the age again: a row reported since it was selected stays.
            count, _per_model = stale_presence_rows(realm, older_than).filter(pk__in=batch).delete()
        deleted += count
        if on_progress is not None:
            on_progress(deleted)


# The last statement of a presence write ----------------------------------------------------
#
# The realm's sequence row is incremented and the presence row written in one statement where
# the database has data-modifying CTEs (PostgreSQL), else in two; both forms are built from the
# same statements below, and tests/test_actions.py runs both on the same data. Either way it
# is the last thing the transaction does, so the sequence row stays locked only from here to
# commit, and for one round trip on PostgreSQL.


def _one_statement_writes() -> bool:
    return connection.vendor == "postgresql"


def _quoted(model: type[Any], field: str | None = None) -> str:
    meta = model._meta
    name = meta.db_table if field is None else meta.get_field(field).column
    return connection.ops.quote_name(name)


def _adapt(value: datetime | None) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _datetime_from_db(value: Any) -> datetime | None:
    """A timestamp column as a plain cursor read it, converted as a QuerySet would (SQLite's
    are naive until then)."""
    column = UserPresence._meta.get_field("last_active_time").get_col(UserPresence._meta.db_table)
    for converter in connection.ops.get_db_converters(column):
        value = converter(value, column, connection)
    converted: datetime | None = value
    return converted


def _ensure_presence_sequence(realm_id: int) -> None:
    """Create a missing sequence row (for realms not made by do_create_realm), starting
    above every id already in use in that realm."""
    sequence = _quoted(PresenceSequence)
    presence = _quoted(UserPresence)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {sequence} ({_quoted(PresenceSequence, 'realm')}, "
            f"{_quoted(PresenceSequence, 'last_update_id')}) "
            f"SELECT %s, COALESCE(MAX({_quoted(UserPresence, 'last_update_id')}), 0) "
            f"FROM {presence} WHERE {_quoted(UserPresence, 'realm')} = %s "
            f"ON CONFLICT ({_quoted(PresenceSequence, 'realm')}) DO NOTHING",
            [realm_id, realm_id],
        )


def _next_update_id_sql() -> str:
    return (
        f"UPDATE {_quoted(PresenceSequence)} "
        f"SET {_quoted(PresenceSequence, 'last_update_id')} = "
        f"{_quoted(PresenceSequence, 'last_update_id')} + 1 "
        f"WHERE {_quoted(PresenceSequence, 'realm')} = %s "
        f"RETURNING {_quoted(PresenceSequence, 'last_update_id')}"
    )


def _write_with_next_update_id(
    member: RealmMember, write: Callable[[Any], tuple[int | None, bool]]
) -> _PresenceWrite:
    """Run ``write(cursor)``, which takes the realm's next update id and writes the row, and
    returns (update id or None when the realm has no sequence row, whether a row was written).
    A missing sequence row is created once and the write retried."""
    for _attempt in range(2):
        with connection.cursor() as cursor:
            update_id, row_written = write(cursor)
        if update_id is not None:
            return _PresenceWrite(last_update_id=int(update_id), row_written=row_written)
        _ensure_presence_sequence(member.realm_id)
    raise RuntimeError(f"no presence sequence for realm {member.realm_id}")


def _take_next_update_id(cursor: Any, realm_id: int) -> int | None:
    """The two-statement form's first statement (databases without data-modifying CTEs)."""
    cursor.execute(_next_update_id_sql(), [realm_id])
    fetched = cursor.fetchone()
    return fetched[0] if fetched else None


def _insert_presence_row(
    member: RealmMember,
    last_active: datetime | None,
    last_connected: datetime | None,
    status: _StatusUpdate,
) -> _PresenceWrite:
    table = _quoted(UserPresence)
    fields = (
        "user",
        "realm",
        "last_active_time",
        "last_connected_time",
        "announced_status",
        "status_changes_at",
        "last_update_id",
    )
    columns = ", ".join(_quoted(UserPresence, field) for field in fields)
    conflict = f"ON CONFLICT ({_quoted(UserPresence, 'user')}) DO NOTHING"
    values = [
        member.user_id,
        member.realm_id,
        _adapt(last_active),
        _adapt(last_connected),
        status.status,
        _adapt(status.changes_at),
    ]

    def write(cursor: Any) -> tuple[int | None, bool]:
        if _one_statement_writes():
            cursor.execute(
                f"WITH seq AS ({_next_update_id_sql()}), "
                f"ins AS (INSERT INTO {table} ({columns}) "
                f"SELECT %s, %s, %s, %s, %s, %s, seq.last_update_id FROM seq {conflict}"
                " RETURNING 1) "
                f"SELECT (SELECT last_update_id FROM seq), (SELECT COUNT(*) FROM ins)",
                [member.realm_id, *values],
            )
            update_id, inserted = cursor.fetchone()
            return update_id, inserted == 1
        update_id = _take_next_update_id(cursor, member.realm_id)
        if update_id is None:
            return None, False
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s) {conflict}",
            [*values, update_id],
        )
        return update_id, cursor.rowcount == 1

    return _write_with_next_update_id(member, write)


def _update_presence_row(
    member: RealmMember, row_id: int, changes: dict[str, Any]
) -> _PresenceWrite:
    table = _quoted(UserPresence)
    assignments = ", ".join(f"{_quoted(UserPresence, field)} = %s" for field in changes)
    values = [value if isinstance(value, str) else _adapt(value) for value in changes.values()]
    update_id_column = _quoted(UserPresence, "last_update_id")
    id_column = _quoted(UserPresence, "id")

    def write(cursor: Any) -> tuple[int | None, bool]:
        if _one_statement_writes():
            cursor.execute(
                f"WITH seq AS ({_next_update_id_sql()}) "
                f"UPDATE {table} SET {assignments}, {update_id_column} = seq.last_update_id "
                f"FROM seq WHERE {table}.{id_column} = %s RETURNING seq.last_update_id",
                [member.realm_id, *values, row_id],
            )
            fetched = cursor.fetchone()
            return (fetched[0] if fetched else None), True
        update_id = _take_next_update_id(cursor, member.realm_id)
        if update_id is not None:
            cursor.execute(
                f"UPDATE {table} SET {assignments}, {update_id_column} = %s WHERE {id_column} = %s",
                [*values, update_id, row_id],
            )
        return update_id, True

    return _write_with_next_update_id(member, write)


# Refusals ------------------------------------------------------------------------------------


class ActionRefused(ValueError):
    """Why a ``check_*`` action refuses a change; the message is for people (the API answers
    it as a 400 with this message)."""


INVISIBLE_MODE_NOT_ALLOWED = "This organization does not allow invisible mode."


# Invisible mode as an organization's policy ----------------------------------------------


def check_set_presence_enabled(member: RealmMember, presence_enabled: bool) -> None:
    """do_set_presence_enabled, unless it would turn invisible mode on in a realm that does
    not allow it (ActionRefused)."""
    if not presence_enabled and not member.realm.invisible_mode_allowed:
        raise ActionRefused(INVISIBLE_MODE_NOT_ALLOWED)
    do_set_presence_enabled(member, presence_enabled)


def do_set_realm_invisible_mode_allowed(realm: Realm, allowed: bool) -> None:
    """Allow or forbid invisible mode in ``realm``. Forbidding it makes every invisible member
    visible again, each as turning invisible mode off does (an active report, a forced
    presence event): one transaction per member, as do_set_presence_enabled needs, so this
    must not run inside an outer transaction when it forbids."""
    with transaction.atomic():
        realm.invisible_mode_allowed = allowed
        realm.save(update_fields=["invisible_mode_allowed", "updated_at"])
    if allowed:
        return
    invisible = RealmMember.objects.filter(realm=realm, presence_enabled=False).select_related(
        "user", "realm"
    )
    for member in invisible.order_by("pk"):
        do_set_presence_enabled(member, True)


# Custom emoji --------------------------------------------------------------------------------


def do_add_realm_emoji(realm: Realm, name: str, *, image_url: str = "") -> RealmEmoji:
    """A new active custom emoji of ``realm`` (the database refuses a second active one of the
    same name)."""
    return RealmEmoji.objects.create(realm=realm, name=name, image_url=image_url)


def do_set_realm_emoji_deactivated(emoji: RealmEmoji, deactivated: bool) -> None:
    """Deactivate a custom emoji (statuses that show it keep it; no new status may take it),
    or make it active again."""
    emoji.deactivated = deactivated
    emoji.save(update_fields=["deactivated"])


# User statuses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusWrite:
    """A checked status change, as do_update_user_status takes it."""

    away: bool | None
    status_text: str | None
    emoji: Emoji | None
    scheduled_end_time: datetime | None | Unset


def check_user_status_change(
    member: RealmMember,
    *,
    away: bool | None = None,
    status_text: str | None = None,
    emoji_name: str | None = None,
    emoji_code: str | None = None,
    reaction_type: str | None = None,
    scheduled_end_time: int | None | Unset = UNSET,
    now: datetime,
) -> StatusWrite:
    """Zulip's checks of a status change in Zulip's order, then the policy's and the end
    time's; the first failure is an ActionRefused with Zulip's message. Writes nothing."""
    realm = member.realm
    if status_text is not None:
        status_text = status_text.strip()
        # The API's parameter check says the same first (serializers.StatusTextField).
        if len(status_text) > STATUS_TEXT_MAX_LENGTH:
            raise ActionRefused(
                f"status_text is too long (limit: {STATUS_TEXT_MAX_LENGTH} characters)"
            )
    passes_end_time = not isinstance(scheduled_end_time, Unset)
    if away is None and status_text is None and emoji_name is None and not passes_end_time:
        raise ActionRefused("Client did not pass any new values.")
    emoji: Emoji | None = None
    try:
        if emoji_name == "":
            # Clearing: whatever code and type came with it.
            emoji = NO_EMOJI
        elif emoji_name is not None:
            if emoji_code is None or reaction_type is None:
                resolved = resolve_emoji(realm, emoji_name)
                emoji_code = resolved.code if emoji_code is None else emoji_code
                reaction_type = resolved.reaction_type if reaction_type is None else reaction_type
            emoji = Emoji(emoji_name, emoji_code, reaction_type)
            check_emoji(realm, emoji)
        elif emoji_code or reaction_type:
            raise ActionRefused(
                "Client must pass emoji_name if they pass either emoji_code or reaction_type."
            )
    except EmojiError as exc:
        raise ActionRefused(str(exc)) from None
    if away and not realm.invisible_mode_allowed:
        raise ActionRefused(INVISIBLE_MODE_NOT_ALLOWED)
    end_time: datetime | None | Unset = UNSET
    if isinstance(scheduled_end_time, int):
        end_time = _check_end_time(member, scheduled_end_time, status_text, emoji, now)
    elif scheduled_end_time is None:
        end_time = None
    return StatusWrite(away, status_text, emoji, end_time)


def check_update_user_status(
    member: RealmMember,
    *,
    acting_user: AbstractBaseUser | None,
    away: bool | None = None,
    status_text: str | None = None,
    emoji_name: str | None = None,
    emoji_code: str | None = None,
    reaction_type: str | None = None,
    scheduled_end_time: int | None | Unset = UNSET,
    now: datetime | None = None,
) -> None:
    """Change ``member``'s status as POST users/me/status asks (None, UNSET: not passed) if
    check_user_status_change allows it (else ActionRefused). ``scheduled_end_time`` is UNIX
    seconds (None removes the end time)."""
    now = now or timezone.now()
    write = check_user_status_change(
        member,
        away=away,
        status_text=status_text,
        emoji_name=emoji_name,
        emoji_code=emoji_code,
        reaction_type=reaction_type,
        scheduled_end_time=scheduled_end_time,
        now=now,
    )
    do_update_user_status(
        member,
        acting_user=acting_user,
        away=write.away,
        status_text=write.status_text,
        emoji=write.emoji,
        scheduled_end_time=write.scheduled_end_time,
        now=now,
    )


def _check_end_time(
    member: RealmMember,
    timestamp: int,
    status_text: str | None,
    emoji: Emoji | None,
    now: datetime,
) -> datetime:
    """The end time a request passes, if it ends a status that will be set."""
    if timestamp <= now.timestamp():
        raise ActionRefused("scheduled_end_time must be in the future")
    if timestamp > MAX_END_TIMESTAMP:
        raise ActionRefused("scheduled_end_time is too far in the future")
    current = get_user_status(member.realm, member) or NO_STATUS
    current = current.current(now)
    text_after = current.status_text if status_text is None else status_text
    emoji_after = current.emoji if emoji is None else emoji
    if not (text_after or emoji_after.name):
        raise ActionRefused("Client does not have any status set.")
    return datetime.fromtimestamp(timestamp, tz=UTC)


def do_update_user_status(
    member: RealmMember,
    *,
    acting_user: AbstractBaseUser | None,
    away: bool | None = None,
    status_text: str | None = None,
    emoji: Emoji | None = None,
    scheduled_end_time: datetime | None | Unset = UNSET,
    now: datetime | None = None,
) -> None:
    """Write ``member``'s status, unchecked: the fields passed (None, UNSET: unchanged; see
    user_status.end_time_after for the end time), and ``away`` through invisible mode
    (do_set_presence_enabled, in its own transactions, first). One user_status_changed, hence
    one user_status event, per call, even if nothing changed, as Zulip; before it, the end of
    a status whose end time had come and that no sweeper had ended yet."""
    now = now or timezone.now()
    if away is not None:
        do_set_presence_enabled(member, not away, log_time=now)
    with transaction.atomic():
        row, _created = UserStatus.objects.select_for_update().get_or_create(
            user_id=member.user_id, defaults={"realm_id": member.realm_id, "timestamp": now}
        )
        before = stored_status_of(row)
        changes: list[StatusChange] = []
        if before.ended(now):
            changes.append(ending(before))
            before = NO_STATUS
        end_after = end_time_after(
            before.scheduled_end_time,
            passed=scheduled_end_time,
            sets_status=status_text is not None or emoji is not None,
        )
        after = StoredStatus(
            before.status_text if status_text is None else status_text,
            before.emoji if emoji is None else emoji,
            end_after,
        )
        _write_status_row(row, after, now)
        changes.append(
            StatusChange(
                away=away,
                status_text=status_text,
                emoji=emoji,
                end_time_changed=not isinstance(scheduled_end_time, Unset)
                or end_after != before.scheduled_end_time,
                scheduled_end_time=end_after,
            )
        )
        _send_user_status_changes_on_commit(
            [(member, after, change) for change in changes], acting_user=acting_user, now=now
        )


def _write_status_row(row: UserStatus, status: StoredStatus, now: datetime) -> None:
    row.timestamp = now
    row.status_text = status.status_text
    row.emoji_name = status.emoji.name
    row.emoji_code = status.emoji.code
    row.reaction_type = status.emoji.reaction_type
    row.scheduled_end_time = status.scheduled_end_time
    row.save()


def _send_user_status_changes_on_commit(
    changes: list[tuple[RealmMember, StoredStatus, StatusChange]],
    *,
    acting_user: AbstractBaseUser | None,
    now: datetime,
) -> None:
    """user_status_changed for each change, in order, after commit; an end is late when
    ``now`` (the moment the action ran at) is more than 2 s past its end time."""

    def send() -> None:
        for member, after, change in changes:
            ended_at = change.ended_at
            user_status_changed.send(
                sender=UserStatus,
                user=member.user,
                member=member,
                realm=member.realm,
                status=format_user_status(
                    after, presence_enabled=member.presence_enabled, now=now, for_owner=True
                ),
                changed={**change.public_fields(), **change.owner_fields()},
                acting_user=None if ended_at is not None else acting_user,
                ended=ended_at is not None,
                late=ended_at is not None and is_late(ended_at, now),
            )

    transaction.on_commit(send)


# Statuses that end per sweep, oldest first; the rest, next sweep.
USER_STATUS_BATCH_SIZE = 1000


def do_clear_due_user_statuses(now: datetime) -> int:
    """End the statuses whose end time has come by ``now``: text and emoji cleared, the end
    time gone, and user_status_changed (hence the clearing user_status event) sent after
    commit, each exactly once however many sweepers run: a row is cleared only if its end time
    is still the one read (and, on PostgreSQL, rows another sweeper or a write holds are
    skipped). Returns how many statuses it ended."""
    due_rows = UserStatus.objects.filter(scheduled_end_time__lte=now)
    # As do_announce_due_status_transitions: a sweep that finds nothing due takes no lock and
    # opens no transaction (the partial index on the end time answers it).
    if not due_rows.exists():
        return 0
    with transaction.atomic(durable=True):
        due = list(
            due_rows.select_for_update(skip_locked=True).order_by("scheduled_end_time")[
                :USER_STATUS_BATCH_SIZE
            ]
        )
        ended: list[tuple[int, StoredStatus]] = []
        for row in due:
            claimed = UserStatus.objects.filter(
                pk=row.pk, scheduled_end_time=row.scheduled_end_time
            ).update(
                timestamp=now,
                status_text="",
                emoji_name="",
                emoji_code="",
                reaction_type=NO_EMOJI.reaction_type,
                scheduled_end_time=None,
            )
            if claimed:
                ended.append((row.user_id, stored_status_of(row)))
        if ended:
            members = {
                member.user_id: member
                for member in RealmMember.objects.filter(
                    user_id__in={user_id for user_id, _status in ended}
                ).select_related("user", "realm")
            }
            _send_user_status_changes_on_commit(
                [
                    (members[user_id], NO_STATUS, ending(status))
                    for user_id, status in ended
                    if user_id in members
                ],
                acting_user=None,
                now=now,
            )
    return len(ended)
