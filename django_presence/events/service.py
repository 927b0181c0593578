"""What register, GET events and DELETE events do, on whichever backend is configured.

Views call these and shape nothing else. ``register_event_queue`` is synchronous (it reads the
database); the others are coroutines for the async events view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from django_presence.access import accessible_user_ids, visible_subjects
from django_presence.conf import presence_settings
from django_presence.exceptions import ZulipError
from django_presence.models import RealmMember
from django_presence.queries import get_presence_dict_by_realm

from . import queues
from .backends import EventBackend, get_event_backend
from .queues import (
    CLIENT_LONGPOLL_TIMEOUT_SECS,
    FETCHABLE_EVENT_TYPES,
    BadEventQueueIdError,
    EventQueue,
    LogEntry,
)

logger = logging.getLogger(__name__)

# Saves of a queue that lost a race with another poll of the same queue are retried this often.
MAX_SAVE_ATTEMPTS = 5


def register_event_queue(
    member: RealmMember,
    *,
    event_types: Collection[str] | None,
    fetch_event_types: Collection[str] | None,
    slim_presence: bool,
    simplified_presence_events: bool,
    history_limit_days: int | None,
) -> tuple[str, dict[str, Any]]:
    """Create the member's queue, then fetch the state it asked for: any change committed
    after the queue exists reaches it as an event, so nothing falls between the two.

    ``event_types`` None means every type this server sends; ``fetch_event_types`` None means
    the same as ``event_types``. Returns the queue id and the fetched state, in Zulip's keys."""
    queue = EventQueue.new(
        user_id=member.user_id,
        realm_id=member.realm_id,
        wants_presence=event_types is None or "presence" in event_types,
        slim_presence=slim_presence,
        simplified_presence_events=simplified_presence_events,
    )
    get_event_backend().create_queue(queue)

    if fetch_event_types is None:
        fetch_event_types = FETCHABLE_EVENT_TYPES if event_types is None else event_types
    realm = member.realm
    state: dict[str, Any] = {}
    if "presence" in fetch_event_types:
        presences, last_update_id = get_presence_dict_by_realm(
            realm, member, slim_presence=slim_presence, history_limit_days=history_limit_days
        )
        state["presences"] = presences
        state["server_timestamp"] = time.time()
        state["presence_last_update_id"] = last_update_id
    if "realm" in fetch_event_types:
        state["realm_presence_disabled"] = realm.presence_disabled
        state["server_presence_ping_interval_seconds"] = presence_settings.PING_INTERVAL_SECS
        state["server_presence_offline_threshold_seconds"] = (
            presence_settings.OFFLINE_THRESHOLD_SECS
        )
        state["event_queue_longpoll_timeout_seconds"] = CLIENT_LONGPOLL_TIMEOUT_SECS
    return queue.queue_id, state


@dataclass(frozen=True)
class _Poll:
    """One GET events: what it works on, with the settings it needs read once."""

    backend: EventBackend
    member: RealmMember
    queue_id: str
    # Whether the member may see only some subjects (then one query per read), decided once so
    # that a poll woken by an event needs no thread otherwise.
    limited: bool
    activity_offset_secs: int


async def get_events(
    member: RealmMember, *, queue_id: str, last_event_id: int, dont_block: bool
) -> dict[str, Any]:
    """Acknowledge the events up to ``last_event_id``, then answer with the queue's events at
    once if it has any (or ``dont_block``), else wait for one, or for the long-poll time and
    answer with a heartbeat. Like Zulip, an answer given after waiting also names the queue."""
    poll = _Poll(
        backend=get_event_backend(),
        member=member,
        queue_id=queue_id,
        limited=await sync_to_async(_sees_only_some_users)(member),
        activity_offset_secs=presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS,
    )
    acknowledged: list[ZulipError | None] = []

    async def acknowledge_then_collect(queue: EventQueue) -> bool:
        acknowledged.append(queue.acknowledge(last_event_id))
        queue.last_connected = queues.now()
        if acknowledged[-1] is None:
            await _add_new_entries(poll, queue)
        return True

    queue = await _change_queue(poll, acknowledge_then_collect)
    if acknowledged[-1] is not None:
        raise acknowledged[-1]
    if queue.events or dont_block:
        return {"events": queue.events}

    loop = asyncio.get_running_loop()
    deadline = loop.time() + presence_settings.EVENT_LONG_POLL_SECS
    waited = False
    async with poll.backend.waiting(queue) as waiter:
        while True:
            try:
                # Once more after the waiter exists: nothing published from here on is missed.
                queue = await _collect(poll)
            except BadEventQueueIdError:
                if not waited:
                    raise
                # Deleted while this poll waited: Zulip answers it with what it held.
                return {"events": queue.events, "queue_id": queue_id}
            remaining = deadline - loop.time()
            if queue.events or remaining <= 0:
                break
            await waiter.wait(remaining)
            waited = True
    if not queue.events:
        queue = await _collect(poll, heartbeat=True)
    return {"events": queue.events, "queue_id": queue_id}


async def delete_event_queue(member: RealmMember, queue_id: str) -> None:
    backend = get_event_backend()
    queue = await backend.load_queue(queue_id)
    if queue is None:
        raise BadEventQueueIdError(queue_id)
    if queue.user_id != member.user_id:
        raise ZulipError("You are not authorized to access this queue")
    await backend.delete_queue(queue)


def _sees_only_some_users(member: RealmMember) -> bool:
    return accessible_user_ids(member) is not None


async def _collect(poll: _Poll, *, heartbeat: bool = False) -> EventQueue:
    """Add the queue's new events; with ``heartbeat``, a heartbeat if it still has none."""

    async def collect(queue: EventQueue) -> bool:
        changed = await _add_new_entries(poll, queue)
        if heartbeat and not queue.events:
            queue.add_heartbeat()
            changed = True
        return changed

    return await _change_queue(poll, collect)


async def _add_new_entries(poll: _Poll, queue: EventQueue) -> bool:
    """Turn the realm-log entries past the queue's cursor into its events (only those about
    users the member may see, if the poll is limited). Says whether there were any."""
    entries = await poll.backend.read_log(queue.realm_id, queue.read_pos)
    if entries:
        queue.add_log_entries(
            entries,
            visible_user_ids=await _visible_subjects(poll.member, entries)
            if poll.limited
            else None,
            activity_offset_secs=poll.activity_offset_secs,
        )
    return bool(entries)


async def _visible_subjects(member: RealmMember, entries: list[tuple[str, LogEntry]]) -> set[int]:
    """The subjects of ``entries`` the member may see (one query, in a thread)."""
    subjects = {entry["user_id"] for _position, entry in entries}
    return await sync_to_async(visible_subjects)(member, subjects)


async def _change_queue(poll: _Poll, change: Callable[[EventQueue], Awaitable[bool]]) -> EventQueue:
    """Load the member's queue, apply ``change`` (which says whether it changed anything) and
    save it, from the start again if another poll of the same queue saved first."""
    for _attempt in range(MAX_SAVE_ATTEMPTS):
        queue = await poll.backend.load_queue(poll.queue_id)
        if queue is None or queue.user_id != poll.member.user_id:
            if queue is not None:
                logger.warning(
                    "User %s is not authorized for queue %s", poll.member.user_id, poll.queue_id
                )
            raise BadEventQueueIdError(poll.queue_id)
        if not await change(queue) or await poll.backend.save_queue(queue):
            return queue
    raise RuntimeError(
        f"event queue {poll.queue_id} changed under {MAX_SAVE_ATTEMPTS} saves in a row"
    )
