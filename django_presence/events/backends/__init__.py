"""Where realm logs and queue records live. ``PRESENCE_EVENT_BACKEND`` names the class:

- ``django_presence.events.backends.in_process.InProcessBackend`` (the default): this process's
  memory. One server process only: ``runserver``, a single ASGI worker, tests.
- ``django_presence.events.backends.redis.RedisBackend``: Redis, shared by every server process
  on every host (docs/events.md).

The signal receiver and the register view are synchronous and call ``publish`` and
``create_queue``; the events view is asynchronous and calls the rest.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.utils.module_loading import import_string

from django_presence.conf import presence_settings
from django_presence.events.queues import EventQueue, LogEntry
from django_presence.events.wakeups import Waiter, registry

# At most this many realm-log entries are turned into events per read; a queue that is further
# behind gets the rest on its next poll.
MAX_ENTRIES_PER_READ = 1000


class EventBackend(ABC):
    """Storage of realm logs and queues. Queues are saved with optimistic concurrency: a save
    succeeds only if the queue's ``version`` is still the stored one, then bumps it."""

    @abstractmethod
    def publish(self, realm_id: int, entry: LogEntry) -> None:
        """Append ``entry`` to the realm's log once, and wake the realm's long polls."""

    @abstractmethod
    def announce_keys_changed(self) -> None:
        """Tell the other server processes to forget the API keys they remember
        (recent_keys.py)."""

    @abstractmethod
    def create_queue(self, queue: EventQueue) -> None:
        """Store a new queue whose cursor is the end of its realm's log."""

    @abstractmethod
    async def load_queue(self, queue_id: str, *, realm_id: int | None = None) -> EventQueue | None:
        """The queue, or None if it does not exist or has expired. With ``realm_id`` (the
        owner's realm), a backend whose log reads cost a round trip may fill in ``log_head``
        in the same one."""

    @abstractmethod
    async def save_queue(self, queue: EventQueue) -> bool:
        """Store ``queue`` unless it changed (or vanished) since it was loaded."""

    async def save_queues(self, queues: list[EventQueue]) -> list[bool]:
        """``save_queue`` for each queue, at once where the backend can (one delivery's)."""
        return [await self.save_queue(queue) for queue in queues]

    @abstractmethod
    async def unchanged(self, queue: EventQueue) -> bool:
        """Whether the stored queue is still ``queue``'s version and its realm's log has no
        entry past its cursor: then a poll may wait on it as it is."""

    @abstractmethod
    async def delete_queue(self, queue: EventQueue) -> None:
        """Remove the queue and wake a long poll waiting on it."""

    @abstractmethod
    async def wake_queue(self, queue: EventQueue) -> None:
        """Wake the long polls waiting on the queue, in every server process."""

    @abstractmethod
    async def read_log(self, realm_id: int, after: str) -> list[tuple[str, LogEntry]]:
        """The realm's log entries after position ``after``, oldest first, at most
        MAX_ENTRIES_PER_READ."""

    @abstractmethod
    async def start_listening(self) -> None:
        """Make sure that wake-ups published by other processes reach this one."""

    @asynccontextmanager
    async def waiting(self, queue: EventQueue) -> AsyncIterator[Waiter]:
        """A Waiter that new entries of the queue's realm (or the queue's deletion) wake."""
        waiter = Waiter(queue.realm_id, queue.queue_id)
        registry.add(waiter)
        try:
            # Counted as waiting first: a subscriber that ends when no poll waits does so
            # before this looks for it, or not at all.
            await self.start_listening()
            yield waiter
        finally:
            registry.remove(waiter)


_backends: dict[str, EventBackend] = {}
_backends_lock = threading.Lock()


def get_event_backend() -> EventBackend:
    """The process's instance of the configured backend (in-process state must be shared)."""
    path = presence_settings.EVENT_BACKEND
    backend = _backends.get(path)
    if backend is None:
        with _backends_lock:
            backend = _backends.get(path)
            if backend is None:
                backend = _backends[path] = import_string(path)()
    return backend
