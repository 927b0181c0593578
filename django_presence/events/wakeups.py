"""Waking long polls in this process, and handing them their events in one pass.

A waiting ``GET events`` registers a Waiter under its realm and its queue. A new entry in a
realm's log wakes every waiter of that realm; deleting a queue wakes the waiters of that queue.
Wake-ups may come from any thread (a sync view that wrote presence, the Redis listener thread),
so they reach each waiter's event loop with ``call_soon_threadsafe``: one call per loop, however
many waiters it has.

New log entries are not left for each woken poll to fetch on its own: the deliverer installed by
events.service (``set_deliverer``) runs once per loop and realm, reads the new entries once and
hands them to every waiter that holds a ``snapshot`` of its queue (docs/events.md, "Delivery").
A waiter without one (it is checking its queue right now, or its delivery failed) is simply
woken and re-reads its queue, so a spurious wake-up costs one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .queues import EventQueue

Key = TypeVar("Key", int, str)


class Waiter:
    """One long poll's alarm clock, bound to the event loop that awaits it.

    ``snapshot`` is the queue as the poll last saved or read it, with no events: a deliverer may
    turn it into the answer (``deliver``) as long as the stored queue is still that version.
    ``claimed`` marks a delivery under way: other wake-ups wait for its end (``release``)."""

    __slots__ = (
        "_future",
        "_rewake",
        "_woken",
        "claimed",
        "delivered",
        "loop",
        "queue_id",
        "realm_id",
        "snapshot",
    )

    def __init__(self, realm_id: int, queue_id: str) -> None:
        self.realm_id = realm_id
        self.queue_id = queue_id
        self.loop = asyncio.get_running_loop()
        self.snapshot: EventQueue | None = None
        self.claimed = False
        self.delivered: EventQueue | None = None
        self._rewake = False
        self._woken = False
        self._future: asyncio.Future[None] | None = None

    async def wait(self, timeout: float) -> None:
        """Until woken or ``timeout`` seconds pass; a wake-up that came in meanwhile counts.
        A bare future and a timer: no task per waiting poll."""
        if not self._woken and self.delivered is None and timeout > 0:
            future = self._future = self.loop.create_future()
            timer = self.loop.call_later(timeout, _resolve, future)
            try:
                await future
            finally:
                timer.cancel()
                self._future = None
        self._woken = False

    def deliver(self, queue: EventQueue) -> None:
        """The poll's answer: ``queue``, saved with its new events. On the waiter's loop."""
        self.claimed = False
        self.delivered = queue
        self._set()

    def release(self, *, wake: bool = False) -> None:
        """The end of a delivery that did not answer the poll: it keeps waiting on its snapshot,
        unless ``wake`` or a wake-up came in meanwhile; then it looks for itself."""
        self.claimed = False
        if wake or self._rewake:
            self._rewake = False
            self.snapshot = None
            self._set()

    def wake(self) -> None:
        """Look for yourself: at once, or when the delivery under way ends."""
        if self.claimed:
            self._rewake = True
        else:
            self._set()

    def _set(self) -> None:
        self._woken = True
        if self._future is not None:
            _resolve(self._future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _set_all(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        waiter.wake()


# Hands a realm's new log entries to the given waiters (all of one loop), on that loop.
Deliverer = Callable[[int, list[Waiter]], Awaitable[None]]


def _discard(index: dict[Key, set[Waiter]], key: Key, waiter: Waiter) -> None:
    waiters = index.get(key)
    if waiters is not None:
        waiters.discard(waiter)
        if not waiters:
            del index[key]


class WakeupRegistry:
    """The process's waiting long polls, by realm and by queue; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_realm: dict[int, set[Waiter]] = defaultdict(set)
        self._by_queue: dict[str, set[Waiter]] = defaultdict(set)
        self._deliverer: Deliverer | None = None
        # Delivery tasks under way, kept so that they are not collected before they end.
        self._deliveries: set[asyncio.Task[None]] = set()

    def set_deliverer(self, deliverer: Deliverer | None) -> None:
        self._deliverer = deliverer

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._by_realm[waiter.realm_id].add(waiter)
            self._by_queue[waiter.queue_id].add(waiter)

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            _discard(self._by_realm, waiter.realm_id, waiter)
            _discard(self._by_queue, waiter.queue_id, waiter)

    def wake_realm(self, realm_id: int) -> None:
        """New entries in the realm's log: delivered in one pass per loop, if a deliverer is
        installed, else every waiter of the realm is woken."""
        with self._lock:
            waiters = list(self._by_realm.get(realm_id, ()))
        if self._deliverer is None:
            self._wake(waiters)
            return
        for loop, loop_waiters in _by_loop(waiters).items():
            # A closed loop raises RuntimeError: its polls are over.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._start_delivery, realm_id, loop_waiters)

    def wake_queue(self, queue_id: str) -> None:
        with self._lock:
            waiters = list(self._by_queue.get(queue_id, ()))
        self._wake(waiters)

    def wake_all(self) -> None:
        """After the Redis listener reconnects: wake-ups may have been lost meanwhile."""
        with self._lock:
            waiters = [waiter for waiters in self._by_realm.values() for waiter in waiters]
        self._wake(waiters)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(waiters) for waiters in self._by_realm.values())

    def _start_delivery(self, realm_id: int, waiters: list[Waiter]) -> None:
        deliverer = self._deliverer
        if deliverer is None:
            _set_all(waiters)
            return
        task = asyncio.ensure_future(deliverer(realm_id, waiters))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    @staticmethod
    def _wake(waiters: Iterable[Waiter]) -> None:
        for loop, loop_waiters in _by_loop(waiters).items():
            # A closed loop raises RuntimeError: its polls are over.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_all, loop_waiters)


def _by_loop(waiters: Iterable[Waiter]) -> dict[asyncio.AbstractEventLoop, list[Waiter]]:
    by_loop: dict[asyncio.AbstractEventLoop, list[Waiter]] = defaultdict(list)
    for waiter in waiters:
        by_loop[waiter.loop].append(waiter)
    return by_loop


registry = WakeupRegistry()
