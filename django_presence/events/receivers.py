"""Feeds presence_changed and user_status_changed into the realm logs of the event queues.
Connected in ``PresenceConfig.ready()``."""

from __future__ import annotations

import logging
from typing import Any

from django_presence.actions import do_record_lost_presence_event
from django_presence.conf import presence_settings
from django_presence.models import RealmMember, UserPresence, UserStatus
from django_presence.queries import has_more_event_recipients_than
from django_presence.signals import presence_changed, user_status_changed

from .backends import get_event_backend
from .queues import LogEntry

logger = logging.getLogger(__name__)

DISPATCH_UID = "django_presence.events.publish_presence_change"
USER_STATUS_DISPATCH_UID = "django_presence.events.publish_user_status_change"


def publish_presence_change(
    sender: type[UserPresence],
    *,
    member: RealmMember,
    presence: dict[str, int],
    server_timestamp: float,
    forced: bool,
    **kwargs: Any,
) -> None:
    """Append the change to its realm's log, once, whatever the number of queues; unless the
    change is not forced and would reach more members than PRESENCE_USER_LIMIT_FOR_EVENTS
    (Zulip's cut-off, which applies to event queues only: host receivers get every change)."""
    if not forced and _too_many_recipients(member):
        return
    entry: LogEntry = {
        "user_id": member.user_id,
        "email": member.email,
        "server_timestamp": server_timestamp,
        "presence": presence,
    }
    try:
        get_event_backend().publish(member.realm_id, entry)
    except Exception:
        # The presence write has committed and must not fail because the event feed is down,
        # but the realm's queues must not miss the change silently either.
        logger.exception("Could not publish the presence event of user %s", member.user_id)
        _record_lost_event(member)


def publish_user_status_change(
    sender: type[UserStatus], *, member: RealmMember, changed: dict[str, Any], **kwargs: Any
) -> None:
    """Append a status change to its realm's log, once, whatever the realm's size (Zulip sends
    user_status events to every member who may see the user); queues.py shapes each queue's
    event, the end time for the owner's only."""
    _publish(member, {"type": "user_status", "user_id": member.user_id, "changed": changed})


def _publish(member: RealmMember, entry: LogEntry) -> None:
    try:
        get_event_backend().publish(member.realm_id, entry)
    except Exception:
        # As for presence: the write has committed, and the realm's queues must not miss the
        # change silently.
        logger.exception("Could not publish the %s event of user %s", entry["type"], member.user_id)
        _record_lost_event(member)


def _too_many_recipients(member: RealmMember) -> bool:
    limit = presence_settings.USER_LIMIT_FOR_EVENTS
    if limit is None:
        return False  # no limit: nothing to count
    return has_more_event_recipients_than(member.realm, member, limit)


def _record_lost_event(member: RealmMember) -> None:
    try:
        do_record_lost_presence_event(member.realm)
    except Exception:
        # The database is down too: nothing more can be done, and this must not fail either.
        logger.exception("Could not record the lost presence event of user %s", member.user_id)


def connect() -> None:
    presence_changed.connect(
        publish_presence_change, sender=UserPresence, dispatch_uid=DISPATCH_UID
    )
    user_status_changed.connect(
        publish_user_status_change, sender=UserStatus, dispatch_uid=USER_STATUS_DISPATCH_UID
    )
