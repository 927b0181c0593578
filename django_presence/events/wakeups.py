"""Waking long polls in this process.

A waiting ``GET events`` registers a Waiter under its realm and its queue. A new entry in a
realm's log wakes every waiter of that realm; deleting a queue wakes the waiters of that queue.
Wake-ups may come from any thread (a sync view that wrote presence, the Redis listener thread),
so they reach each waiter's event loop with ``call_soon_threadsafe``: one call per loop, however
many waiters it has. A woken waiter re-reads its queue, so a spurious wake-up costs one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import TypeVar

Key = TypeVar("Key", int, str)


class Waiter:
    """One long poll's alarm clock, bound to the event loop that awaits it."""

    def __init__(self, realm_id: int, queue_id: str) -> None:
        self.realm_id = realm_id
        self.queue_id = queue_id
        self.loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Until woken or ``timeout`` seconds pass; a wake-up that came in meanwhile counts."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), timeout)
        self._woken.clear()

    def _set(self) -> None:
        self._woken.set()


def _set_all(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        waiter._set()


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

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._by_realm[waiter.realm_id].add(waiter)
            self._by_queue[waiter.queue_id].add(waiter)

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            _discard(self._by_realm, waiter.realm_id, waiter)
            _discard(self._by_queue, waiter.queue_id, waiter)

    def wake_realm(self, realm_id: int) -> None:
        with self._lock:
            waiters = list(self._by_realm.get(realm_id, ()))
        self._wake(waiters)

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

    @staticmethod
    def _wake(waiters: Iterable[Waiter]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Waiter]] = defaultdict(list)
        for waiter in waiters:
            by_loop[waiter.loop].append(waiter)
        for loop, loop_waiters in by_loop.items():
            # A closed loop raises RuntimeError: its polls are over.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_all, loop_waiters)


registry = WakeupRegistry()
