"""What register, GET events and DELETE events do, on whichever backend is configured.

Views call these and shape nothing else. ``register_event_queue`` is synchronous (it reads the
database); the others are coroutines for the async events view.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from django_presence.access import accessible_user_ids, visible_subjects
from django_presence.conf import presence_settings
from django_presence.exceptions import ZulipError
from django_presence.models import RealmMember
from django_presence.queries import (
    get_presence_dict_by_realm,
    get_user_status_dict,
    loaded_lost_event_count,
    lost_event_count,
)

from . import queues
from .backends import EventBackend, get_event_backend
from .queues import (
    CLIENT_LONGPOLL_TIMEOUT_SECS,
    FETCHABLE_EVENT_TYPES,
    BadEventQueueIdError,
    EventQueue,
    LogEntry,
    Shapes,
)
from .wakeups import Waiter, registry

logger = logging.getLogger(__name__)

# A poll whose save of the queue lost a race with another poll of the same queue tries again
# after a random pause of up to this long, doubled after each loss up to the maximum.
SAVE_RETRY_FIRST_PAUSE_SECS = 0.002
SAVE_RETRY_MAX_PAUSE_SECS = 0.05
# A poll whose delivery is under way past its deadline checks again this often.
CLAIM_PAUSE_SECS = 0.05


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
        events_lost=lost_event_count(member.realm),
        wants_user_status=event_types is None or "user_status" in event_types,
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
    if "user_status" in fetch_event_types:
        state["user_status"] = get_user_status_dict(realm, member, now=timezone.now())
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
    # The realm's count of lost presence events now: a queue registered at a lower count may
    # have missed one.
    events_lost: int


@dataclass
class _Connection:
    """What connecting a GET events to its queue found, over the attempts the save took."""

    error: ZulipError | None = None
    # The poll's number in the queue: it is the current poll until a newer one connects.
    number: int = 0
    # Whether some attempt found an older poll waiting, which must then be told to answer.
    wake_older: bool = False


class _Superseded(Exception):
    """A newer GET events has connected to the queue."""


def sees_only_some_users(member: RealmMember) -> bool:
    """Whether the member's events must be filtered by access (a query per read); synchronous:
    the events view asks it with the rest of its synchronous steps."""
    return accessible_user_ids(member) is not None


async def get_events(
    member: RealmMember,
    *,
    queue_id: str,
    last_event_id: int,
    dont_block: bool,
    limited: bool | None = None,
) -> dict[str, Any]:
    """Acknowledge the events up to ``last_event_id``, then answer with the queue's events at
    once if it has any (or ``dont_block``), else wait for one, or for the long-poll time and
    answer with a heartbeat. Like Zulip, an answer given after waiting also names the queue,
    and a newer poll of the same queue supersedes a waiting one, which answers with no events.
    ``limited`` is ``sees_only_some_users(member)`` if the caller knows it already."""
    if limited is None:
        limited = await sync_to_async(sees_only_some_users)(member)
    poll = _Poll(
        backend=get_event_backend(),
        member=member,
        queue_id=queue_id,
        limited=limited,
        activity_offset_secs=presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS,
        events_lost=await _lost_event_count(member),
    )
    connection = _Connection()

    async def connect(queue: EventQueue) -> bool:
        connection.error = queue.acknowledge(last_event_id)
        queue.last_connected = queues.now()
        if connection.error is None:
            # As in Zulip, a poll whose acknowledgement fails supersedes nothing.
            connection.wake_older |= queue.poll_waiting
            await _add_new_entries(poll, queue)
            connection.number = queue.connect_poll(waiting=not queue.events and not dont_block)
        return True

    queue = await _change_queue(poll, connect)
    if connection.error is not None:
        raise connection.error
    if connection.wake_older:
        await poll.backend.wake_queue(queue)
    if queue.events or dont_block:
        return {"events": queue.events}

    loop = asyncio.get_running_loop()
    deadline = loop.time() + presence_settings.EVENT_LONG_POLL_SECS
    async with poll.backend.waiting(queue) as waiter:
        # Once more after the waiter exists, so that nothing published from here on is missed:
        # if neither the queue nor the log moved meanwhile, the queue as saved is the snapshot
        # a delivery works from; else the poll looks for itself.
        if not poll.limited and await poll.backend.unchanged(queue):
            waiter.snapshot = queue
        else:
            waiter.wake()
        while True:
            remaining = deadline - loop.time()
            # A delivery under way answers the poll or wakes it, even past the deadline.
            await waiter.wait(max(remaining, CLAIM_PAUSE_SECS) if waiter.claimed else remaining)
            if waiter.delivered is not None:
                return {"events": waiter.delivered.events, "queue_id": queue_id}
            if waiter.claimed:
                continue
            waiter.snapshot = None
            remaining = deadline - loop.time()
            try:
                queue = await _collect(poll, connection.number, heartbeat=remaining <= 0)
            except BadEventQueueIdError:
                # Deleted while this poll waited: Zulip answers it with what it held.
                return {"events": queue.events, "queue_id": queue_id}
            except _Superseded:
                # Whatever the queue holds now is the newer poll's to hand out.
                return {"events": [], "queue_id": queue_id}
            if queue.events:
                return {"events": queue.events, "queue_id": queue_id}
            if not poll.limited:
                waiter.snapshot = queue


async def deliver(realm_id: int, waiters: list[Waiter]) -> None:
    """Hand the realm's new log entries to the waiting polls of this event loop in one pass:
    the log is read once per distinct cursor, each distinct event is built once, every queue is
    saved at once (one round trip with Redis), and each poll is handed its answer. A poll whose
    queue changed since its snapshot (a newer poll, a deletion) is woken to look for itself."""
    backend = get_event_backend()
    by_cursor: dict[str, list[Waiter]] = {}
    for waiter in waiters:
        if waiter.claimed or waiter.delivered is not None:
            continue
        if waiter.snapshot is None:
            waiter.wake()
            continue
        waiter.claimed = True
        by_cursor.setdefault(waiter.snapshot.read_pos, []).append(waiter)
    if not by_cursor:
        return
    offset = presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS
    taken: list[Waiter] = []
    answers: list[EventQueue] = []
    try:
        for cursor, group in by_cursor.items():
            entries = await backend.read_log(realm_id, cursor)
            shapes: Shapes = {}
            for waiter in group:
                snapshot = waiter.snapshot
                assert snapshot is not None
                if not entries:
                    # Nothing new for this cursor (a wake-up already served): keep waiting.
                    waiter.release()
                    continue
                answer = snapshot.copy()
                answer.add_log_entries(
                    entries, visible_user_ids=None, activity_offset_secs=offset, shapes=shapes
                )
                if answer.events:
                    # This answer hands them out: the next poll finds no poll to wake.
                    answer.poll_waiting = False
                    taken.append(waiter)
                    answers.append(answer)
                else:
                    # Entries it does not subscribe to: only its cursor moves, at its next poll.
                    waiter.release()
        saved = await backend.save_queues(answers)
    except BaseException as exc:
        # Redis failed (or the loop is closing): every poll looks for itself, and meets the
        # error there, in its own answer.
        for group in by_cursor.values():
            for waiter in group:
                if waiter.claimed:
                    waiter.release(wake=True)
        if not isinstance(exc, Exception):
            raise
        logger.info(
            "Presence events: a delivery failed; the polls read their queues", exc_info=True
        )
        return
    for waiter, answer, ok in zip(taken, answers, saved, strict=True):
        if ok:
            waiter.deliver(answer)
        else:
            waiter.release(wake=True)


registry.set_deliverer(deliver)


async def delete_event_queue(member: RealmMember, queue_id: str) -> None:
    backend = get_event_backend()
    queue = await backend.load_queue(queue_id)
    if queue is None:
        raise BadEventQueueIdError(queue_id)
    if queue.user_id != member.user_id:
        raise ZulipError("You are not authorized to access this queue")
    await backend.delete_queue(queue)


async def _lost_event_count(member: RealmMember) -> int:
    """From the sequence row authentication loaded with the member, else in a thread."""
    loaded = loaded_lost_event_count(member.realm)
    if loaded is None:
        return await sync_to_async(lost_event_count)(member.realm)
    return loaded


async def _collect(poll: _Poll, number: int, *, heartbeat: bool) -> EventQueue:
    """Add the queue's new events; with ``heartbeat``, a heartbeat if it still has none.
    Raises _Superseded, changing nothing, once the poll ``number`` is no longer the current one."""

    async def collect(queue: EventQueue) -> bool:
        if queue.current_poll != number:
            raise _Superseded
        changed = await _add_new_entries(poll, queue)
        if heartbeat and not queue.events:
            queue.add_heartbeat()
            changed = True
        if queue.events:
            # This poll answers with them: the next one finds no poll to wake.
            queue.poll_waiting = False
        return changed

    return await _change_queue(poll, collect)


async def _add_new_entries(poll: _Poll, queue: EventQueue) -> bool:
    """Turn the realm-log entries past the queue's cursor into its events (only those about
    users the member may see, if the poll is limited). Says whether there were any."""
    if queue.log_head is not None and queue.log_head == queue.read_pos:
        return False  # the backend saw the log's head when it loaded the queue: nothing new
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
    """Load the member's queue, apply ``change`` (which says whether it changed anything, or
    raises to give up) and save it; from the start again, after a short random pause, if
    another poll of the same queue saved first. Every lost save is another poll's won one (or
    the queue is gone, which the next load finds), so this ends."""
    pause_secs = SAVE_RETRY_FIRST_PAUSE_SECS
    while True:
        queue = await poll.backend.load_queue(poll.queue_id, realm_id=poll.member.realm_id)
        if queue is None or queue.user_id != poll.member.user_id:
            if queue is not None:
                logger.warning(
                    "User %s is not authorized for queue %s", poll.member.user_id, poll.queue_id
                )
            raise BadEventQueueIdError(poll.queue_id)
        if queue.events_lost != poll.events_lost:
            # The queue may have missed an event: its client must register again.
            raise BadEventQueueIdError(poll.queue_id)
        if not await change(queue) or await poll.backend.save_queue(queue):
            return queue
        # At random, so that polls that lost together do not collide again.
        await asyncio.sleep(random.uniform(0, pause_secs))
        pause_secs = min(2 * pause_secs, SAVE_RETRY_MAX_PAUSE_SECS)
