"""The embedded backend: realm logs and queues in this process's memory.

Right for one server process (``runserver``, a single ASGI worker, tests). With several
processes each has its own queues and sees only the presence changes written through it: use
the Redis backend there.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import NamedTuple

from django_presence.conf import presence_settings
from django_presence.events import queues
from django_presence.events.queues import EventQueue, LogEntry
from django_presence.events.wakeups import registry

from . import MAX_ENTRIES_PER_READ, EventBackend

# How often expired queues and stale realm logs are swept away (Zulip: every minute).
SWEEP_INTERVAL_SECS = 60


class _Logged(NamedTuple):
    position: int
    at: float
    entry: LogEntry


class InProcessBackend(EventBackend):
    """A bounded deque per realm (entries older than the queue timeout are dropped: any queue
    that has not polled since is expired) and one record per queue. Positions come
    from one process-wide counter, so a queue's cursor is simply the counter's value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[int, deque[_Logged]] = {}
        self._last_position = 0
        # Copies: what a caller does to a loaded queue stays out of the store until it saves.
        self._queues: dict[str, EventQueue] = {}
        self._next_sweep = 0.0

    def publish(self, realm_id: int, entry: LogEntry) -> None:
        at = queues.now()
        with self._lock:
            self._last_position += 1
            log = self._logs.setdefault(realm_id, deque())
            log.append(_Logged(self._last_position, at, entry))
            self._trim(log, at)
        registry.wake_realm(realm_id)

    def announce_keys_changed(self) -> None:
        pass  # the queues of this backend live in one process, which has forgotten them

    def create_queue(self, queue: EventQueue) -> None:
        at = queues.now()
        with self._lock:
            self._sweep(at)
            queue.read_pos = str(self._last_position)
            queue.version = 1
            self._queues[queue.queue_id] = queue.copy()

    async def load_queue(self, queue_id: str, *, realm_id: int | None = None) -> EventQueue | None:
        at, timeout = queues.now(), presence_settings.EVENT_QUEUE_TIMEOUT_SECS
        with self._lock:
            stored = self._queues.get(queue_id)
            if stored is None:
                return None
            if stored.expired(at, timeout):
                del self._queues[queue_id]
                return None
            return stored.copy()

    async def save_queue(self, queue: EventQueue) -> bool:
        with self._lock:
            return self._save(queue)

    async def save_queues(self, queues: list[EventQueue]) -> list[bool]:
        with self._lock:
            return [self._save(queue) for queue in queues]

    def _save(self, queue: EventQueue) -> bool:
        stored = self._queues.get(queue.queue_id)
        if stored is None or stored.version != queue.version:
            return False
        queue.version += 1
        self._queues[queue.queue_id] = queue.copy()
        return True

    async def unchanged(self, queue: EventQueue) -> bool:
        with self._lock:
            stored = self._queues.get(queue.queue_id)
            if stored is None or stored.version != queue.version:
                return False
            log = self._logs.get(queue.realm_id)
            return not log or log[-1].position <= int(queue.read_pos)

    async def delete_queue(self, queue: EventQueue) -> None:
        with self._lock:
            self._queues.pop(queue.queue_id, None)
        await self.wake_queue(queue)

    async def wake_queue(self, queue: EventQueue) -> None:
        registry.wake_queue(queue.queue_id)

    async def read_log(self, realm_id: int, after: str) -> list[tuple[str, LogEntry]]:
        after_position = int(after)
        newer: list[tuple[str, LogEntry]] = []
        with self._lock:
            # From the newest end: a poll that is up to date reads one entry, not the log.
            for logged in reversed(self._logs.get(realm_id, ())):
                if logged.position <= after_position:
                    break
                newer.append((str(logged.position), logged.entry))
        newer.reverse()
        return newer[:MAX_ENTRIES_PER_READ]

    async def start_listening(self) -> None:
        """Nothing to do: every wake-up comes from this process."""

    def _trim(self, log: deque[_Logged], at: float) -> None:
        horizon = at - presence_settings.EVENT_QUEUE_TIMEOUT_SECS
        while log and log[0].at < horizon:
            log.popleft()

    def _sweep(self, at: float) -> None:
        """Drop expired queues and logs of realms quiet for longer than the queue timeout.
        Runs with the lock held, at most once per SWEEP_INTERVAL_SECS."""
        if at < self._next_sweep:
            return
        self._next_sweep = at + SWEEP_INTERVAL_SECS
        timeout = presence_settings.EVENT_QUEUE_TIMEOUT_SECS
        for queue_id, queue in list(self._queues.items()):
            if queue.expired(at, timeout):
                del self._queues[queue_id]
        for realm_id, log in list(self._logs.items()):
            self._trim(log, at)
            if not log:
                del self._logs[realm_id]
