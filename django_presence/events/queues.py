"""An event queue as Zulip clients see it, as plain data: no I/O here.

A queue numbers its events 0, 1, 2, ... (register answers ``last_event_id: -1``). It holds only
the events it has handed out that the client has not acknowledged yet; presence events enter it
when a poll reads the realm's log past the queue's cursor, ``read_pos``. Nothing is copied into
a queue when a presence changes: the realm's log holds each change once (docs/events.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from django_presence.exceptions import ZulipError
from django_presence.formatting import LEGACY_CLIENT_NAME
from django_presence.status import legacy_status

# What the receivers write to a realm's log: for presence_changed user_id, email,
# server_timestamp and presence (the modern entry); for user_status_changed type
# ("user_status"), user_id and changed (the fields of the owner's event).
LogEntry = dict[str, Any]
Event = dict[str, Any]
# Events without their id, by log position and shape (simplified_presence_events,
# slim_presence): a delivery to many queues builds each distinct event once.
Shapes = dict[tuple[str, bool, bool], Event]

# The event types a queue can subscribe to, and those register can fetch the state of.
SUBSCRIBABLE_EVENT_TYPES = frozenset({"presence", "user_status", "heartbeat"})
FETCHABLE_EVENT_TYPES = frozenset({"presence", "realm", "user_status"})
# The one field of a user_status event that only the user's own queues get.
OWNER_ONLY_STATUS_FIELDS = frozenset({"scheduled_end_time"})

# The timeout the zulip package uses for GET events, sent to clients in register as Zulip's
# event_queue_longpoll_timeout_seconds; a long poll must answer well before it.
CLIENT_LONGPOLL_TIMEOUT_SECS = 90


def now() -> float:
    """Wall-clock seconds; queues record when their client last connected in these."""
    return time.time()


class BadEventQueueIdError(ZulipError):
    """Zulip's answer for a queue that does not exist (any more) or belongs to someone else:
    clients re-register when they get it."""

    def __init__(self, queue_id: str) -> None:
        super().__init__(
            f"Bad event queue ID: {queue_id}",
            code="BAD_EVENT_QUEUE_ID",
            extra={"queue_id": queue_id},
        )


def _datetime(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


@dataclass
class EventQueue:
    """One client's queue. ``version`` is not part of the stored data: backends use it to
    refuse a write based on a stale read (two polls of the same queue at once)."""

    queue_id: str
    user_id: int
    realm_id: int
    wants_presence: bool
    slim_presence: bool
    simplified_presence_events: bool
    last_connected: float
    # Position in the realm's log of the newest entry this queue has looked at (backend-defined).
    read_pos: str = ""
    # The realm's count of presence events that could not be published, when the queue was
    # registered: once it has grown, the queue may have missed one (docs/events.md).
    events_lost: int = 0
    newest_pruned_id: int = -1
    next_event_id: int = 0
    events: list[Event] = field(default_factory=list)
    # The number of the GET events that connected last, and whether it waits for events: as in
    # Zulip, a newer poll supersedes it, and a superseded poll answers at once.
    current_poll: int = 0
    poll_waiting: bool = False
    version: int = 0
    wants_user_status: bool = False
    # Not stored either: the position of the newest entry of the realm's log when the queue was
    # loaded, if the backend looked at it (then a poll with nothing new reads no log).
    log_head: str | None = None

    @classmethod
    def new(
        cls,
        *,
        user_id: int,
        realm_id: int,
        wants_presence: bool,
        slim_presence: bool,
        simplified_presence_events: bool,
        events_lost: int = 0,
        wants_user_status: bool = False,
    ) -> EventQueue:
        return cls(
            queue_id=str(uuid.uuid4()),
            user_id=user_id,
            realm_id=realm_id,
            wants_presence=wants_presence,
            slim_presence=slim_presence,
            simplified_presence_events=simplified_presence_events,
            last_connected=now(),
            events_lost=events_lost,
            wants_user_status=wants_user_status,
        )

    def to_json(self) -> str:
        # A shallow copy: dataclasses.asdict deep-copies the events, at many times the cost.
        data = dict(vars(self))
        del data["version"], data["log_head"]
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, raw: str | bytes, version: int) -> EventQueue:
        return cls(**orjson.loads(raw), version=version)

    def copy(self) -> EventQueue:
        """An independent copy (events are never changed once made, so they are shared)."""
        # Field by field, not dataclasses.replace, which goes through __init__ and costs several
        # times as much: queues are copied at every load and save of the in-process backend.
        clone = object.__new__(EventQueue)
        clone.__dict__.update(self.__dict__)
        clone.events = list(self.events)
        clone.log_head = None
        return clone

    def expired(self, at: float, timeout_secs: int) -> bool:
        return at - self.last_connected >= timeout_secs

    def acknowledge(self, last_event_id: int) -> ZulipError | None:
        """Drop the events up to ``last_event_id``, as Zulip does. Returns Zulip's error when
        the id is older than what was already dropped or was never in the queue; like Zulip, the
        events up to it are dropped all the same, so the caller saves the queue either way."""
        if last_event_id < self.newest_pruned_id:
            return ZulipError(f"An event newer than {last_event_id} has already been pruned!")
        while self.events and self.events[0]["id"] <= last_event_id:
            self.newest_pruned_id = self.events.pop(0)["id"]
        if last_event_id != self.newest_pruned_id:
            return ZulipError(f"Event {last_event_id} was not in this queue")
        return None

    def connect_poll(self, *, waiting: bool) -> int:
        """Make a new GET events the queue's current poll; returns its number."""
        self.current_poll += 1
        self.poll_waiting = waiting
        return self.current_poll

    def add_log_entries(
        self,
        entries: Iterable[tuple[str, LogEntry]],
        *,
        visible_user_ids: Container[int] | None,
        activity_offset_secs: int,
        shapes: Shapes | None = None,
    ) -> None:
        """Turn the realm-log entries past ``read_pos`` into this queue's events, skipping the
        subjects the owner may not see (``None``: sees everyone), and move the cursor. Events
        already built for another queue of the same shape are taken from ``shapes``."""
        if shapes is None:
            shapes = {}
        for position, entry in entries:
            self.read_pos = position
            is_status = entry.get("type") == "user_status"
            if not (self.wants_user_status if is_status else self.wants_presence):
                continue
            if visible_user_ids is not None and entry["user_id"] not in visible_user_ids:
                continue
            if is_status:
                if (event := self._user_status_event(entry)) is not None:
                    self.events.append(event)
                continue
            key = (position, self.simplified_presence_events, self.slim_presence)
            body = shapes.get(key)
            if body is None:
                body = shapes[key] = self._presence_event_body(entry, activity_offset_secs)
            # Shared by every queue of the shape; the id, last as in Zulip, is the queue's own.
            self.events.append({**body, "id": self._take_event_id()})

    def add_heartbeat(self) -> None:
        """Zulip's answer to a long poll that saw nothing: an event of its own, with an id."""
        self.events.append({"type": "heartbeat", "id": self._take_event_id()})

    def _take_event_id(self) -> int:
        event_id = self.next_event_id
        self.next_event_id += 1
        return event_id

    def _user_status_event(self, entry: LogEntry) -> Event | None:
        """Zulip's user_status event; the end time only in the user's own queues, and no event
        for the others when the change moved nothing else."""
        changed: dict[str, Any] = entry["changed"]
        if entry["user_id"] != self.user_id:
            changed = {k: v for k, v in changed.items() if k not in OWNER_ONLY_STATUS_FIELDS}
            if not changed:
                return None
        event: Event = {"type": "user_status", "user_id": entry["user_id"], **changed}
        event["id"] = self._take_event_id()
        return event

    def _presence_event_body(self, entry: LogEntry, activity_offset_secs: int) -> Event:
        """The three shapes of Zulip's presence event, without the id: modern for queues that
        declared simplified_presence_events, else legacy, without ``email`` for slim_presence
        queues."""
        user_id: int = entry["user_id"]
        presence: dict[str, int] = entry["presence"]
        if self.simplified_presence_events:
            return {"type": "presence", "presences": {str(user_id): presence}}
        status, timestamp = legacy_status(
            _datetime(presence["active_timestamp"]),
            _datetime(presence["idle_timestamp"]),
            activity_offset_secs,
        )
        event: Event = {"type": "presence", "user_id": user_id}
        if not self.slim_presence:
            event["email"] = entry["email"]
        event["server_timestamp"] = entry["server_timestamp"]
        event["presence"] = {
            LEGACY_CLIENT_NAME: {
                "client": LEGACY_CLIENT_NAME,
                "status": status,
                "timestamp": timestamp,
                "pushable": False,
            }
        }
        return event
