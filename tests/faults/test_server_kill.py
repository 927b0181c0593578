"""An app server process killed with SIGKILL under write load, and a new one in its place.

The example project runs as a real server process (uvicorn) on a private PostgreSQL cluster
(postgres_server.py) while worker threads send presence reports and settings changes
(presence_load.py). Mid-load the process is killed with SIGKILL, with whatever requests and
transactions it had under way, and a new process is started on the same port and database.

The killed process's database sessions must end with it (no transaction left holding the
realm's sequence lock), the new process must serve every member, and the database must agree
with every acknowledged answer (invariants.py). docs/concurrency.md, "Faults", describes what
clients see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from loopback.example import ExampleServer
from loopback.server import free_port

from .invariants import (
    Stored,
    assert_no_problems,
    envelope_problems,
    lost_write_problems,
    read_stored,
    update_id_problems,
)
from .postgres_server import private_postgres
from .presence_load import (
    BACKDATE_SECS,
    MIN_FREQ_SECS,
    REPORTERS,
    SQLITE_RUN_ONLY,
    TOGGLERS,
    Attempt,
    WriteLoad,
    prepare_example,
)

pytestmark = [pytest.mark.e2e, SQLITE_RUN_ONLY]

DBNAME = "presence_kill"
READY_TIMEOUT_SECS = 20.0
WARMUP_SECS = 1.5
# How long to look for a moment when the process has a database session open.
CATCH_SESSION_SECS = 5.0
KILL_TIMEOUT_SECS = 10.0
# PostgreSQL ends a dead client's sessions as soon as it reads their closed sockets.
SESSIONS_GONE_TIMEOUT_SECS = 10.0
# After the new process answers, each member's requests succeed within this.
RECOVERY_LIMIT_SECS = 10.0
RUN_ON_SECS = 1.5


@dataclass(frozen=True)
class Kill:
    """What happened around one SIGKILL (times from time.time())."""

    attempts: list[Attempt]
    stored: Stored  # once the load had ended
    # Every request made to the killed process, and the database before the new one started:
    # later writes would hide a write lost in the kill.
    attempts_before_restart: list[Attempt]
    stored_at_restart: Stored
    usernames: list[str]
    states_at_kill: list[str]  # of the process's database sessions at the kill
    killed: float  # the killed process has been reaped
    sessions_left: int  # its sessions still on the database, SESSIONS_GONE_TIMEOUT_SECS later
    sessions_gone_secs: float
    replaced: float  # the new process answers
    recovered: float | None  # every member had a request acknowledged since ``replaced``


def session_states(conn: Any) -> list[str]:
    """The states of the sessions on the example's database, other than ``conn``'s own."""
    rows = conn.execute(
        "SELECT state FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [DBNAME],
    ).fetchall()
    return [str(state) for (state,) in rows]


@pytest.fixture(scope="module")
def kill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kill]:
    directory = tmp_path_factory.mktemp("server-kill")
    unused_sqlite = directory / "unused.sqlite3"
    with private_postgres(directory) as postgres:
        env, accounts = prepare_example(postgres, directory, DBNAME)
        port = free_port()
        first = ExampleServer(unused_sqlite, port, directory / "first.log", asgi=True, **env)
        second = None
        try:
            with WriteLoad(first.url, accounts, REPORTERS, TOGGLERS) as load:
                load.wait_until_ready(READY_TIMEOUT_SECS)
                time.sleep(WARMUP_SECS)
                with postgres.connect() as watcher:
                    # Kill while the process is inside a request with the database, if it can
                    # be caught there: a transaction may be under way.
                    deadline = time.monotonic() + CATCH_SESSION_SECS
                    while not (states_at_kill := session_states(watcher)):
                        if time.monotonic() > deadline:
                            break
                    first.process.kill()
                    first.process.wait(timeout=KILL_TIMEOUT_SECS)
                    killed = time.time()
                    # Nothing serves the clients now; PostgreSQL drops the dead sessions.
                    deadline = time.monotonic() + SESSIONS_GONE_TIMEOUT_SECS
                    while (sessions_left := len(session_states(watcher))) and (
                        time.monotonic() < deadline
                    ):
                        time.sleep(0.01)
                    sessions_gone_secs = time.time() - killed
                    # The workers send to a closed port meanwhile: nothing can write.
                    with postgres.connect(DBNAME) as conn:
                        stored_at_restart = read_stored(conn)
                    attempts_before_restart = load.attempts
                # On the same port: the clients' URL does not change.
                second = ExampleServer(
                    unused_sqlite, port, directory / "second.log", asgi=True, **env
                )
                replaced = time.time()
                recovered = load.wait_until_every_member_acknowledged(
                    since=replaced, timeout=RECOVERY_LIMIT_SECS
                )
                time.sleep(RUN_ON_SECS)
        finally:
            first.stop()
            if second is not None:
                second.stop()
        with postgres.connect(DBNAME) as conn:
            stored = read_stored(conn)
    result = Kill(
        attempts=load.attempts,
        stored=stored,
        attempts_before_restart=attempts_before_restart,
        stored_at_restart=stored_at_restart,
        usernames=load.usernames,
        states_at_kill=states_at_kill,
        killed=killed,
        sessions_left=sessions_left,
        sessions_gone_secs=sessions_gone_secs,
        replaced=replaced,
        recovered=recovered,
    )
    print(describe(result))
    yield result


def describe(kill: Kill) -> str:
    attempts = kill.attempts
    unanswered = [a for a in attempts if not a.answered_at_all]
    in_flight = [a for a in unanswered if a.sent < kill.killed]
    recovery = "never" if kill.recovered is None else f"{kill.recovered - kill.replaced:.2f} s"
    _lost, checked_at_restart = lost_writes_at_restart(kill)
    _lost, checked = lost_writes_at_end(kill)
    return (
        f"\n[server kill] {len(attempts)} requests, {len(unanswered)} with no answer "
        f"({len(in_flight)} in flight at the kill); database sessions at the kill: "
        f"{kill.states_at_kill or 'none'}, gone "
        f"{kill.sessions_gone_secs:.2f} s after the kill; no server for "
        f"{kill.replaced - kill.killed:.2f} s; every member served by the new process "
        f"{recovery} after it started; acknowledged writes checked: {checked_at_restart} before "
        f"the new process started, {checked} at the end"
    )


def lost_writes_at_restart(kill: Kill) -> tuple[list[str], int]:
    return lost_write_problems(
        kill.attempts_before_restart,
        kill.stored_at_restart,
        min_freq=MIN_FREQ_SECS,
        backdate=BACKDATE_SECS,
    )


def lost_writes_at_end(kill: Kill) -> tuple[list[str], int]:
    return lost_write_problems(
        kill.attempts, kill.stored, min_freq=MIN_FREQ_SECS, backdate=BACKDATE_SECS
    )


def test_the_killed_process_leaves_no_session(kill: Kill):
    assert kill.sessions_left == 0


def test_every_answer_is_a_success(kill: Kill):
    # The database never went away: no request may fail, only go unanswered.
    assert_no_problems(envelope_problems(kill.attempts), "answers without Zulip's envelope")
    failed = [a for a in kill.attempts if a.answered_at_all and not a.acknowledged]
    assert not failed, failed[:5]


def test_unanswered_only_while_no_process_served(kill: Kill):
    unanswered = [a for a in kill.attempts if not a.answered_at_all]
    assert unanswered, "no request was made while no server process was running"
    # In flight at the kill, or refused until the new process was up.
    late = [a for a in unanswered if a.sent >= kill.replaced]
    assert not late, late[:5]


def test_the_new_process_serves(kill: Kill):
    assert kill.recovered is not None, (
        f"not every member was served within {RECOVERY_LIMIT_SECS} s of the new process"
    )
    after = [a for a in kill.attempts if a.sent >= kill.replaced]
    assert after
    assert all(attempt.acknowledged for attempt in after), [a for a in after if not a.acknowledged][
        :5
    ]


def test_no_acknowledged_write_lost(kill: Kill):
    lost, checked_at_restart = lost_writes_at_restart(kill)
    assert_no_problems(lost, "acknowledged writes lost in the kill")
    lost, checked = lost_writes_at_end(kill)
    assert_no_problems(lost, "acknowledged writes lost")
    assert checked_at_restart > 0
    assert checked > checked_at_restart


def test_update_ids_unique_and_under_the_sequence(kill: Kill):
    problems = update_id_problems(kill.attempts_before_restart, kill.stored_at_restart)
    assert_no_problems(problems, "update id problems before the new process")
    assert_no_problems(update_id_problems(kill.attempts, kill.stored), "update id problems")
    assert None not in [row.last_update_id for row in kill.stored.members.values()]
