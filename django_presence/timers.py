"""Work that falls due by time alone, and the sweeper that does it.

Some changes happen with nobody writing: a member goes idle when their last active report ages
past the offline threshold (transitions.py). Each kind of such work is a ``DueWork``, registered
here; ``run_due_work`` does every kind's due work once. Each DueWork claims its due items in the
database (a conditional UPDATE of each item, so that of any number of sweepers, in any number
of processes, exactly one wins each item) and sends its signals after commit.

The sweeper runs ``run_due_work`` every SWEEP_INTERVAL_SECS:

- inside each server process (the default, PRESENCE_TIMERS_IN_PROCESS): a daemon thread,
  started by the process's first request, so runserver and uvicorn need nothing else;
- or in a worker of its own, ``manage.py presence_timers`` (docs/scaling.md), with
  PRESENCE_TIMERS_IN_PROCESS = False on the web processes.

Work that fell due while no sweeper ran is done at the next sweep, with ``late`` set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.core.signals import request_started
from django.db import close_old_connections
from django.utils import timezone

from .conf import presence_settings

logger = logging.getLogger(__name__)

# How often a sweeper looks for due work: well within PROMPTNESS.
SWEEP_INTERVAL_SECS = 0.5
# Due work done within this of its moment is on time; later is ``late``.
PROMPTNESS = timedelta(seconds=2)
# After a failed sweep (the database is down), the next one waits this long.
RETRY_AFTER_FAILURE_SECS = 5.0


class DueWork(Protocol):
    """One kind of work that falls due by time alone."""

    @property
    def name(self) -> str: ...

    def run_due(self, now: datetime) -> int:
        """Do the items due at ``now`` that no other sweeper has done; returns how many."""
        ...


@dataclass(frozen=True)
class FunctionWork:
    """A DueWork made of a name and the function that does it (an action)."""

    name: str
    run: Callable[[datetime], int]

    def run_due(self, now: datetime) -> int:
        return self.run(now)


_works: dict[str, DueWork] = {}


def register(work: DueWork) -> None:
    """Add a kind of due work (by name: registering again replaces it)."""
    _works[work.name] = work


def run_due_work(now: datetime | None = None) -> dict[str, int]:
    """Every registered kind's due work, once: how many items each did."""
    moment = now or timezone.now()
    return {name: work.run_due(moment) for name, work in list(_works.items())}


def is_late(due_at: datetime, now: datetime) -> bool:
    return now - due_at > PROMPTNESS


class Sweeper(threading.Thread):
    """Runs run_due_work every SWEEP_INTERVAL_SECS until stopped; survives database outages."""

    def __init__(self, *, sweep: Callable[[], Any] = run_due_work) -> None:
        super().__init__(name="presence-timers", daemon=True)
        self._sweep = sweep
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            wait = SWEEP_INTERVAL_SECS
            try:
                self._sweep()
            except Exception:
                logger.exception("Presence timers: a sweep failed; retrying")
                wait = RETRY_AFTER_FAILURE_SECS
            finally:
                # A connection broken by an outage is replaced at the next sweep.
                close_old_connections()
            self._stopped.wait(wait)

    def stop(self) -> None:
        self._stopped.set()


_in_process: Sweeper | None = None
_in_process_lock = threading.Lock()


def start_in_process_sweeper(**kwargs: Any) -> None:
    """The request_started receiver: this process's sweeper, started once, unless the host runs
    the sweeper in a worker of its own."""
    global _in_process
    if _in_process is not None or not presence_settings.TIMERS_IN_PROCESS:
        return
    with _in_process_lock:
        if _in_process is None:
            _in_process = Sweeper()
            _in_process.start()


def connect() -> None:
    request_started.connect(start_in_process_sweeper, dispatch_uid="django_presence.timers")
