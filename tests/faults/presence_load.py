"""A bounded presence write load against a server, recording every request and its answer.

Each worker thread is the client of a few members and sends their requests one after another,
as Zulip clients do: reports (POST users/me/presence, "active" or "idle", alternately a ping
and an incremental fetch whose cursor is the update id the last answer carried) and, for the
members that toggle, invisible mode on and off (PATCH settings presence_enabled). A worker
stops when told, after MAX_LOAD_SECS, or after MAX_REQUESTS_PER_WORKER requests, whichever
comes first; every request has a timeout.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests

from loopback.example import Account, create_accounts, manage

from .postgres_server import PostgresServer

# The fault tests bring their own PostgreSQL, whatever database the test run uses: they run
# once, in the SQLite run.
SQLITE_RUN_ONLY = pytest.mark.skipif(
    os.environ.get("PRESENCE_TEST_DATABASE") == "postgres",
    reason="the fault suite starts a PostgreSQL of its own; it runs in the SQLite run",
)

REQUEST_TIMEOUT_SECS = 5.0
# Between two requests of one worker: a few hundred requests a second in all, at most.
PAUSE_SECS = 0.02
MAX_REQUESTS_PER_WORKER = 3000
MAX_LOAD_SECS = 90.0
JOIN_TIMEOUT_SECS = 2 * REQUEST_TIMEOUT_SECS

REPORT = "report"
SETTINGS = "settings"


@dataclass(frozen=True)
class Attempt:
    """One request of the load, and what came back."""

    worker: str
    username: str
    kind: str  # REPORT or SETTINGS
    value: str  # the status reported, or the presence_enabled sent ("true"/"false")
    sent: float  # time.time() just before sending
    answered: float  # time.time() when the answer, or the failure, came
    http_status: int | None = None  # None: no answer at all (refused, reset, timed out)
    content_type: str = ""
    retry_after: str | None = None
    body: Any = None  # the decoded JSON; None when the answer was not JSON
    error: str = ""  # the transport error, or the start of an answer that is not JSON

    @property
    def answered_at_all(self) -> bool:
        return self.http_status is not None

    @property
    def acknowledged(self) -> bool:
        """HTTP 200 with Zulip's success envelope: the server says the request was done."""
        return (
            self.http_status == 200
            and isinstance(self.body, dict)
            and self.body.get("result") == "success"
        )

    @property
    def update_id(self) -> int | None:
        """The presence_last_update_id an acknowledged incremental fetch carried."""
        if not self.acknowledged:
            return None
        update_id = self.body.get("presence_last_update_id")
        return update_id if isinstance(update_id, int) else None


class LoadWorker(threading.Thread):
    """The client of ``members`` (username, account), one request at a time; sends nothing
    while ``go`` is clear. Keeps its own exception (a bug in the test, never a failed request)
    for the load to raise."""

    def __init__(
        self,
        name: str,
        url: str,
        members: Sequence[tuple[str, Account]],
        *,
        toggles: bool,
        stop: threading.Event,
        go: threading.Event,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.members = list(members)
        self.toggles = toggles
        self.stop_event = stop
        self.go = go
        # Set whenever no request of this worker is under way.
        self.idle = threading.Event()
        self.idle.set()
        self.attempts: list[Attempt] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
        finally:
            self.idle.set()

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECS
        cursors = {username: -1 for username, _account in self.members}
        counts = dict.fromkeys(cursors, 0)
        number = 0
        with requests.Session() as session:
            while number < MAX_REQUESTS_PER_WORKER:
                if self.stop_event.is_set() or time.monotonic() > deadline:
                    return
                if not self._may_send():
                    self.go.wait(PAUSE_SECS)
                    continue
                username, account = self.members[number % len(self.members)]
                number += 1
                step = counts[username]
                counts[username] += 1
                try:
                    attempt = self._request(session, username, account, step, cursors[username])
                finally:
                    self.idle.set()
                if attempt.update_id is not None:
                    cursors[username] = attempt.update_id
                with self._lock:
                    self.attempts.append(attempt)
                self.stop_event.wait(PAUSE_SECS)

    def _may_send(self) -> bool:
        """Whether the load is not paused; if so the worker is busy until it sets ``idle``.
        Checked again once busy, so a pause never misses a request about to start."""
        if not self.go.is_set():
            return False
        self.idle.clear()
        if self.go.is_set():
            return True
        self.idle.set()
        return False

    def _request(
        self, session: requests.Session, username: str, account: Account, step: int, cursor: int
    ) -> Attempt:
        """The member's request number ``step``. A toggling member goes invisible, reports,
        comes back and reports again, over and over; the others report "active" twice and
        "idle" once, alternately as a ping and as an incremental fetch."""
        if self.toggles and step % 2 == 0:
            kind, value = SETTINGS, "false" if step % 4 == 0 else "true"
            method, path, data = "PATCH", "settings", {"presence_enabled": value}
        else:
            kind, value = REPORT, "idle" if step % 3 == 2 else "active"
            method, path = "POST", "users/me/presence"
            data = {"status": value}
            if step % 2:
                data["ping_only"] = "true"
            else:
                data["last_update_id"] = str(cursor)
        sent = time.time()
        try:
            response = session.request(
                method,
                f"{self.url}/api/v1/{path}",
                data=data,
                headers={"Authorization": account.authorization},
                timeout=REQUEST_TIMEOUT_SECS,
            )
        except requests.RequestException as exc:
            return Attempt(
                worker=self.name,
                username=username,
                kind=kind,
                value=value,
                sent=sent,
                answered=time.time(),
                error=f"{type(exc).__name__}: {exc}",
            )
        answered = time.time()
        try:
            body, error = response.json(), ""
        except ValueError:
            body, error = None, response.text[:200]
        return Attempt(
            worker=self.name,
            username=username,
            kind=kind,
            value=value,
            sent=sent,
            answered=answered,
            http_status=response.status_code,
            content_type=response.headers.get("Content-Type", ""),
            retry_after=response.headers.get("Retry-After"),
            body=body,
            error=error,
        )


class WriteLoad:
    """Worker threads sending presence writes to ``url`` while the ``with`` block runs: one
    worker per group of ``reporters``, and one for the ``togglers``."""

    def __init__(
        self,
        url: str,
        accounts: dict[str, Account],
        reporters: Sequence[Sequence[str]],
        togglers: Sequence[str],
    ) -> None:
        self.stop_event = threading.Event()
        self.go = threading.Event()
        self.go.set()
        groups = [(f"reporter-{n}", list(group), False) for n, group in enumerate(reporters)]
        if togglers:
            groups.append(("toggler", list(togglers), True))
        self.workers = [
            LoadWorker(
                name,
                url,
                [(username, accounts[username]) for username in usernames],
                toggles=toggles,
                stop=self.stop_event,
                go=self.go,
            )
            for name, usernames, toggles in groups
        ]
        self.usernames = [username for _name, usernames, _t in groups for username in usernames]
        self.started = 0.0

    def __enter__(self) -> WriteLoad:
        self.started = time.time()
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_event.set()
        for worker in self.workers:
            worker.join(timeout=JOIN_TIMEOUT_SECS)
        stuck = [worker.name for worker in self.workers if worker.is_alive()]
        if exc_type is None:
            assert not stuck, f"load workers still running after the stop: {stuck}"
            for worker in self.workers:
                if worker.error is not None:
                    raise worker.error

    def pause(self) -> None:
        """Stop sending, and wait for the requests under way to end."""
        self.go.clear()
        for worker in self.workers:
            assert worker.idle.wait(JOIN_TIMEOUT_SECS), f"{worker.name} did not pause"

    def resume(self) -> None:
        self.go.set()

    @property
    def attempts(self) -> list[Attempt]:
        """Every request so far, in the order sent."""
        return sorted(
            (attempt for worker in self.workers for attempt in worker.snapshot()),
            key=lambda attempt: attempt.sent,
        )

    def wait_until_ready(self, timeout: float) -> None:
        """Wait until every member has had a request acknowledged (its row exists)."""
        ready = self.wait_until_every_member_acknowledged(since=self.started, timeout=timeout)
        assert ready, f"not every member served in {timeout} s; last: {self.attempts[-5:]}"

    def wait_until_every_member_acknowledged(self, *, since: float, timeout: float) -> float | None:
        """Wait until each member has an acknowledged request sent at or after ``since``;
        returns when the last of those first acknowledgements came (time.time()), or None
        when ``timeout`` seconds went by first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first: dict[str, float] = {}
            for attempt in self.attempts:
                if attempt.acknowledged and attempt.sent >= since:
                    first.setdefault(attempt.username, attempt.answered)
            if len(first) == len(self.usernames):
                return max(first.values())
            for worker in self.workers:
                if worker.error is not None:
                    raise worker.error
            time.sleep(0.05)
        return None


# The example project as the fault tests run it ---------------------------------------------

# One realm: four workers report for two members each, a fifth toggles invisible mode for one.
REALM = "faults"
REPORTERS = [[f"reporter{worker}-{n}" for n in range(2)] for worker in range(4)]
TOGGLERS = ["toggler"]
# The app's write throttle, down from 55 s so that the members' rows are written about every
# second and "no acknowledged write lost" is checked to within a second.
MIN_FREQ_SECS = 1
EXAMPLE_SETTINGS = {
    "EXAMPLE_PRESENCE_UPDATE_MIN_FREQ_SECONDS": str(MIN_FREQ_SECS),
    # Each member sends several requests a second, far above a client's 200 a minute.
    "EXAMPLE_PRESENCE_API_RATE": "1000000/min",
}
# INVISIBLE_BACKDATE_SECS with the example's settings: offline threshold + throttle + 10.
BACKDATE_SECS = 200 + MIN_FREQ_SECS + 10


def prepare_example(
    postgres: PostgresServer, directory: Path, dbname: str = "presence_faults"
) -> tuple[dict[str, str], dict[str, Account]]:
    """A migrated database for the example project on ``postgres``, with the load's members
    and their API keys. Returns the environment of the example's processes and the accounts."""
    postgres.create_database(dbname)
    env = {**postgres.example_env(dbname), **EXAMPLE_SETTINGS}
    unused_sqlite = directory / "unused.sqlite3"
    manage(unused_sqlite, "migrate", "--verbosity=0", **env)
    usernames = [username for group in REPORTERS for username in group] + TOGGLERS
    accounts = create_accounts(unused_sqlite, dict.fromkeys(usernames, REALM), **env)
    return env, accounts
