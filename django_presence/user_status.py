"""Every user-status rule, in one place (Zulip's user status, and the end time beyond Zulip).
Nothing here reads the database.

- What a stored status is now: a status whose end time has come is no status at all, whether
  or not the timers' sweeper has cleared it yet (StoredStatus.current): reads never show an
  ended status.
- How a status reads (format_user_status): Zulip's keys, each only when set; ``away`` is
  invisible mode, and only for users with a status row, as Zulip; the end time only for its
  owner.
- What a write changes, as the ``user_status`` event tells it (StatusChange): the fields the
  request passed, to everyone who may see the user; the end time, to its owner alone.
- When a write moves the end time (end_time_after): a request that sets a text or an emoji
  without ``scheduled_end_time`` sets a status that does not end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

UNICODE_EMOJI = "unicode_emoji"
REALM_EMOJI = "realm_emoji"
ZULIP_EXTRA_EMOJI = "zulip_extra_emoji"
REACTION_TYPES = (UNICODE_EMOJI, REALM_EMOJI, ZULIP_EXTRA_EMOJI)

# Zulip's limit, in code points, after surrounding white space is stripped.
STATUS_TEXT_MAX_LENGTH = 60
# The last second a datetime holds (9999-12-31 23:59:59 UTC): later end times are refused.
MAX_END_TIMESTAMP = 253_402_300_799

UserStatusDict = dict[str, Any]


@dataclass(frozen=True)
class Emoji:
    """A status emoji: its name as the client sent it (an alias stays an alias), its code and
    its reaction type. The empty emoji (all blank, Unicode) is no emoji."""

    name: str
    code: str
    reaction_type: str


NO_EMOJI = Emoji("", "", UNICODE_EMOJI)


@dataclass(frozen=True)
class StoredStatus:
    """A status row's values."""

    status_text: str
    emoji: Emoji
    scheduled_end_time: datetime | None

    def ended(self, now: datetime) -> bool:
        return self.scheduled_end_time is not None and self.scheduled_end_time <= now

    def current(self, now: datetime) -> StoredStatus:
        """The status as it is at ``now``: nothing once its end time has come."""
        return NO_STATUS if self.ended(now) else self

    @property
    def is_set(self) -> bool:
        """Whether there is anything to show: a text or an emoji."""
        return bool(self.status_text or self.emoji.name)


NO_STATUS = StoredStatus("", NO_EMOJI, None)


def format_user_status(
    status: StoredStatus | None, *, presence_enabled: bool, now: datetime, for_owner: bool
) -> UserStatusDict:
    """A user's status as GET users/<id>/status and register show it: ``away`` (only when
    true), ``status_text``, the three emoji keys, and for the owner ``scheduled_end_time``
    (UNIX seconds), each only when set. ``{}`` for a user with no status row, whatever their
    invisible mode, as Zulip."""
    if status is None:
        return {}
    status = status.current(now)
    result: UserStatusDict = {}
    if not presence_enabled:
        result["away"] = True
    if status.status_text:
        result["status_text"] = status.status_text
    if status.emoji.name:
        result["emoji_name"] = status.emoji.name
        result["emoji_code"] = status.emoji.code
        result["reaction_type"] = status.emoji.reaction_type
    if for_owner and status.scheduled_end_time is not None:
        result["scheduled_end_time"] = int(status.scheduled_end_time.timestamp())
    return result


def shows_in_register(status: StoredStatus, *, presence_enabled: bool, now: datetime) -> bool:
    """Zulip leaves out of register's ``user_status`` the users with nothing to show."""
    return not presence_enabled or status.current(now).is_set


@dataclass(frozen=True)
class StatusChange:
    """What one write did, as its ``user_status`` event tells it: ``away``, ``status_text`` and
    ``emoji`` when the request passed them (None when not), and the end time when the write
    moved it."""

    away: bool | None = None
    status_text: str | None = None
    emoji: Emoji | None = None
    end_time_changed: bool = False
    scheduled_end_time: datetime | None = None
    # Set for the change that ends a status at its end time (the sweeper's, or a write's that
    # found it ended): when it was due.
    ended_at: datetime | None = field(default=None, compare=False)

    def public_fields(self) -> UserStatusDict:
        """The event's fields for everyone who may see the user."""
        fields: UserStatusDict = {}
        if self.away is not None:
            fields["away"] = self.away
        if self.status_text is not None:
            fields["status_text"] = self.status_text
        if self.emoji is not None:
            fields["emoji_name"] = self.emoji.name
            fields["emoji_code"] = self.emoji.code
            fields["reaction_type"] = self.emoji.reaction_type
        return fields

    def owner_fields(self) -> UserStatusDict:
        """The fields the owner's event adds: the end time (null once it has none)."""
        if not self.end_time_changed:
            return {}
        end = self.scheduled_end_time
        return {"scheduled_end_time": None if end is None else int(end.timestamp())}


def ending(status: StoredStatus) -> StatusChange:
    """The change that ends ``status`` at its end time: text and emoji cleared, as a client
    clearing them would, and the end time gone; ``away`` untouched."""
    return StatusChange(
        status_text="",
        emoji=NO_EMOJI,
        end_time_changed=True,
        scheduled_end_time=None,
        ended_at=status.scheduled_end_time,
    )


class Unset:
    """The type of UNSET: a parameter the request did not pass (None means JSON null)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


def end_time_after(
    current: datetime | None,
    *,
    passed: datetime | None | Unset,
    sets_status: bool,
) -> datetime | None:
    """The end time after a write: the one passed (None removes it); else none when the write
    sets a text or an emoji (a new status does not end unless told); else unchanged."""
    if not isinstance(passed, Unset):
        return passed
    return None if sets_status else current
