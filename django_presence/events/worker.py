"""The thread that runs the synchronous steps (authentication, permission, rate limit) of the
long polls that django-presence's ASGI application serves itself (events/asgi.py).

asgiref's ``sync_to_async`` costs tens of microseconds per call and wakes a thread for each;
when a thousand clients poll again at once after an event, that is most of the work. Here the
steps queue up for one thread, which runs them back to back and hands the results back to each
event loop in batches: one wake-up of the loop per batch, and one database connection for the
thread, released once it has been idle for IDLE_RELEASE_SECS (unless CONN_MAX_AGE keeps it) or
at once after a failure. Opening a connection costs more than a poll's authentication query.

Only for requests that have no outer synchronous context: a request served through Django's
handler (runserver, the test client) keeps ``sync_to_async``, whose thread shares that context's
database connection and transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Results handed back to a loop at once, at most: the first polls of a burst need not wait for
# the last ones to be authenticated.
BATCH = 32
# The thread's database connection outlives a burst of polls by this much.
IDLE_RELEASE_SECS = 1.0

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_Result = tuple["asyncio.Future[Any]", Any, BaseException | None]


def release_connections() -> None:
    """A long poll has no more use for the database: unless the host keeps connections
    (CONN_MAX_AGE), release them, as Django's close_old_connections does at the end of a
    request; a connection inside a transaction (tests) stays."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _release_quietly() -> None:
    """release_connections, for the worker: whatever it meets (a database that is down), the
    thread must live on, or every long poll after it would wait for nothing."""
    try:
        release_connections()
    except Exception:
        logger.warning("Presence events: could not release a database connection", exc_info=True)


def _settle(results: list[_Result]) -> None:
    for future, value, error in results:
        if future.done():
            continue  # the poll is gone (cancelled)
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class SyncWorker:
    """One daemon thread, started on first use, that runs submitted callables in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def run(self, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ensure_thread()
        self._jobs.put((function, future, loop))
        return await future

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="presence-events-sync", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                job: _Job | None = self._jobs.get(timeout=IDLE_RELEASE_SECS)
            except queue.Empty:
                _release_quietly()
                job = self._jobs.get()
            done: dict[asyncio.AbstractEventLoop, list[_Result]] = defaultdict(list)
            count = 0
            while job is not None:
                function, future, loop = job
                try:
                    done[loop].append((future, function(), None))
                except BaseException as error:  # handed to the poll, which answers it
                    done[loop].append((future, None, error))
                    # The connection may be broken (the database restarted): a new one next.
                    _release_quietly()
                count += 1
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    job = None
                if job is None or count % BATCH == 0:
                    for target, results in done.items():
                        # A closed loop raises RuntimeError: its polls are over.
                        with contextlib.suppress(RuntimeError):
                            target.call_soon_threadsafe(_settle, results)
                    done = defaultdict(list)


worker = SyncWorker()
