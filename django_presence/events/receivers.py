"""Feeds presence_changed into the realm logs of the event queues. Connected in
``PresenceConfig.ready()``."""

from __future__ import annotations

import logging
from typing import Any

from django_presence.actions import do_record_lost_presence_event
from django_presence.models import RealmMember, UserPresence
from django_presence.signals import presence_changed

from .backends import get_event_backend
from .queues import LogEntry

logger = logging.getLogger(__name__)

DISPATCH_UID = "django_presence.events.publish_presence_change"


def publish_presence_change(
    sender: type[UserPresence],
    *,
    member: RealmMember,
    presence: dict[str, int],
    server_timestamp: float,
    **kwargs: Any,
) -> None:
    """Append the change to its realm's log, once, whatever the number of queues."""
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
