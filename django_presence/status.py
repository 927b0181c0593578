"""Every presence status rule, in one place. Nothing here reads the database.

- What a client reports: ``active`` or ``idle`` (REPORTED_STATUSES).
- The status at a moment, from the two timestamps: ``active`` if the last active report is
  younger than PRESENCE_OFFLINE_THRESHOLD_SECS, else ``idle`` if the last connection is, else
  ``offline`` (presence_status; presence_status_q says the same in SQL). The admin, the
  directory, its filters and the badge use it; presence-dot.js mirrors it, and
  tests/test_status.py runs both on one table of cases.
- When the status changes by time alone, and every such change up to a moment
  (next_status_change, transitions_by_time): what presence_status_changed announces.
- Zulip's legacy status: ``active`` (at the last active report) when that report is within
  LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS of the last connection, else ``idle`` (at the last
  connection) (legacy_status), and in the single-user answer ``offline`` once that timestamp
  is older than the offline threshold (aggregated_status).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from .conf import presence_settings

ACTIVE = "active"
IDLE = "idle"
OFFLINE = "offline"
REPORTED_STATUSES = (ACTIVE, IDLE)
STATUSES = (ACTIVE, IDLE, OFFLINE)


def online_cutoff(now: datetime) -> datetime:
    """Timestamps after this moment are recent enough to count at ``now``."""
    return now - timedelta(seconds=presence_settings.OFFLINE_THRESHOLD_SECS)


def presence_status(
    last_active: datetime | None, last_connected: datetime | None, now: datetime
) -> str:
    """What the Zulip web app would show at ``now``. A NULL timestamp counts as never."""
    cutoff = online_cutoff(now)
    if last_active is not None and last_active > cutoff:
        return ACTIVE
    if last_connected is not None and last_connected > cutoff:
        return IDLE
    return OFFLINE


def next_status_change(
    last_active: datetime | None, last_connected: datetime | None, after: datetime
) -> datetime | None:
    """The first moment after ``after`` at which presence_status changes by time alone (a
    timestamp ageing past the offline threshold); None once nothing is left to age (offline)."""
    threshold = timedelta(seconds=presence_settings.OFFLINE_THRESHOLD_SECS)
    ends = [moment + threshold for moment in (last_active, last_connected) if moment is not None]
    ahead = [end for end in ends if end > after]
    return min(ahead) if ahead else None


@dataclass(frozen=True)
class Transition:
    """A change of presence_status: from ``old`` to ``new`` at the moment ``at``."""

    old: str
    new: str
    at: datetime


def transitions_by_time(
    status: str,
    changes_at: datetime | None,
    last_active: datetime | None,
    last_connected: datetime | None,
    until: datetime,
) -> tuple[list[Transition], str, datetime | None]:
    """The transitions time alone makes from ``status`` (with its next change due at
    ``changes_at``) up to ``until``, all of them when several fell due; then the status at
    ``until`` and when it changes next."""
    transitions: list[Transition] = []
    while changes_at is not None and changes_at <= until:
        new = presence_status(last_active, last_connected, changes_at)
        if new != status:
            transitions.append(Transition(status, new, changes_at))
            status = new
        changes_at = next_status_change(last_active, last_connected, changes_at)
    return transitions, status, changes_at


def presence_status_q(status: str, now: datetime, *, path: str = "") -> Q:
    """The filter selecting the presence rows :func:`presence_status` gives ``status``.

    ``path`` is the relation from the filtered model to UserPresence (for example
    ``"members__user__presence"``); through it, a missing row has no status at all."""

    def field(name: str) -> str:
        return f"{path}__{name}" if path else name

    cutoff = online_cutoff(now)
    not_active = Q(**{field("last_active_time__isnull"): True}) | Q(
        **{field("last_active_time__lte"): cutoff}
    )
    if status == ACTIVE:
        return Q(**{field("last_active_time__gt"): cutoff})
    if status == IDLE:
        return not_active & Q(**{field("last_connected_time__gt"): cutoff})
    if status == OFFLINE:
        offline = not_active & (
            Q(**{field("last_connected_time__isnull"): True})
            | Q(**{field("last_connected_time__lte"): cutoff})
        )
        # Through a relation, NULL timestamps may mean "no row": that is not offline.
        return offline & Q(**{f"{path}__isnull": False}) if path else offline
    raise ValueError(f"unknown presence status {status!r}")


def legacy_status(
    last_active: datetime, last_connected: datetime, activity_offset_secs: int
) -> tuple[str, int]:
    """Zulip's rule for legacy output: the status and its timestamp (UNIX seconds)."""
    return legacy_status_at(
        last_active.timestamp(), last_connected.timestamp(), activity_offset_secs
    )


def legacy_status_at(
    active_at: float, connected_at: float, activity_offset_secs: int
) -> tuple[str, int]:
    """legacy_status on UNIX seconds as ``datetime.timestamp()`` gives them."""
    if active_at + activity_offset_secs >= connected_at:
        return ACTIVE, int(active_at)
    return IDLE, int(connected_at)


def aggregated_status(status: str, timestamp: int, now: datetime) -> str:
    """The single-user answer's aggregated status: the legacy status, or ``offline`` once its
    timestamp is older than the offline threshold."""
    if now.timestamp() - timestamp > presence_settings.OFFLINE_THRESHOLD_SECS:
        return OFFLINE
    return status
