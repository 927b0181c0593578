"""PostgreSQL goes away under write load, and comes back.

The example project runs as a real server process (uvicorn) on a private PostgreSQL cluster
(postgres_server.py) while worker threads send presence reports and settings changes
(presence_load.py). Mid-load the cluster is stopped (fast shutdown) or crashed (SIGKILL of
every PostgreSQL process) and started again a few seconds later; the app server is left alone.
The load pauses over the restart, so that the database is read as the fault left it before
new writes could hide a lost one, and then runs on.

While the database is down every answer must be Zulip's JSON error envelope with HTTP 503 and
a Retry-After header, never an HTML page. Once it is back the same server process must serve
again within a bounded time, and the database must agree with every acknowledged answer
(invariants.py). Each fault runs once, for all the tests of this module; docs/concurrency.md,
"Faults", describes what clients see.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

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
from .postgres_server import PostgresServer, private_postgres
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

DBNAME = "presence_faults"
# Every member's first report (its row) must be acknowledged in this time, before any fault.
READY_TIMEOUT_SECS = 20.0
WARMUP_SECS = 1.5
OUTAGE_SECS = 3.0
# After the database accepts connections again, each member's requests succeed within this.
RECOVERY_LIMIT_SECS = 10.0
RUN_ON_SECS = 1.5
# The server opens a connection per request (CONN_MAX_AGE 0): none may outlive the load.
SESSIONS_GONE_TIMEOUT_SECS = 5.0
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


@dataclass(frozen=True)
class Outage:
    """What happened around one database fault (times from time.time())."""

    fault: str  # "stop" or "crash"
    attempts: list[Attempt]
    stored: Stored  # once the load had ended
    # Every request made before the restart, and the database just after it, before the load
    # resumed: later writes would hide a write lost in the fault.
    attempts_before_restart: list[Attempt]
    stored_at_restart: Stored
    usernames: list[str]
    fault_began: float
    down: float  # the PostgreSQL processes are gone
    restart_began: float  # the load is paused
    up: float  # PostgreSQL accepts connections again
    resumed: float  # the load resumed
    recovered: float | None  # every member had a request acknowledged since ``resumed``
    server_survived: bool
    sessions_left: int  # sessions on the database once the load had stopped

    @property
    def during(self) -> list[Attempt]:
        """The requests sent and answered while PostgreSQL was down."""
        down, back = self.down, self.restart_began
        return [a for a in self.attempts if a.sent >= down and a.answered <= back]


def database_sessions(postgres: PostgresServer) -> int:
    """Sessions on the example's database other than the one asking."""
    with postgres.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [DBNAME],
        ).fetchone()
    return int(row[0])


def sessions_after(postgres: PostgresServer, timeout: float) -> int:
    """The sessions left on the example's database, waiting up to ``timeout`` for none."""
    deadline = time.monotonic() + timeout
    while (count := database_sessions(postgres)) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def status_counts(attempts: list[Attempt]) -> str:
    counts = Counter(str(attempt.http_status or "no answer") for attempt in attempts)
    return ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))


@pytest.fixture(scope="module", params=["stop", "crash"])
def outage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outage]:
    fault = request.param
    directory = tmp_path_factory.mktemp(f"outage-{fault}")
    with private_postgres(directory) as postgres:
        env, accounts = prepare_example(postgres, directory, DBNAME)
        server = ExampleServer(
            directory / "unused.sqlite3", free_port(), directory / "server.log", asgi=True, **env
        )
        try:
            with WriteLoad(server.url, accounts, REPORTERS, TOGGLERS) as load:
                load.wait_until_ready(READY_TIMEOUT_SECS)
                time.sleep(WARMUP_SECS)
                fault_began = time.time()
                if fault == "stop":
                    postgres.stop()
                else:
                    postgres.kill()
                down = time.time()
                time.sleep(OUTAGE_SECS)
                load.pause()
                restart_began = time.time()
                postgres.start()
                up = time.time()
                with postgres.connect(DBNAME) as conn:
                    stored_at_restart = read_stored(conn)
                attempts_before_restart = load.attempts
                load.resume()
                resumed = time.time()
                recovered = load.wait_until_every_member_acknowledged(
                    since=resumed, timeout=RECOVERY_LIMIT_SECS
                )
                time.sleep(RUN_ON_SECS)
            sessions_left = sessions_after(postgres, SESSIONS_GONE_TIMEOUT_SECS)
            server_survived = server.process.poll() is None
        finally:
            server.stop()
        with postgres.connect(DBNAME) as conn:
            stored = read_stored(conn)
    result = Outage(
        fault=fault,
        attempts=load.attempts,
        stored=stored,
        attempts_before_restart=attempts_before_restart,
        stored_at_restart=stored_at_restart,
        usernames=load.usernames,
        fault_began=fault_began,
        down=down,
        restart_began=restart_began,
        up=up,
        resumed=resumed,
        recovered=recovered,
        server_survived=server_survived,
        sessions_left=sessions_left,
    )
    print(describe(result))
    yield result


def describe(outage: Outage) -> str:
    attempts, during = outage.attempts, outage.during
    recovered = outage.recovered
    recovery = "never" if recovered is None else f"{recovered - outage.resumed:.2f} s"
    _lost, checked_at_restart = lost_writes_at_restart(outage)
    _lost, checked = lost_writes_at_end(outage)
    return (
        f"\n[{outage.fault}] {len(attempts)} requests ({status_counts(attempts)}); "
        f"fault {outage.down - outage.fault_began:.2f} s, database down "
        f"{outage.restart_began - outage.down:.2f} s, start {outage.up - outage.restart_began:.2f}"
        f" s; {len(during)} requests while down ({status_counts(during)}); every member served "
        f"again {recovery} after the load resumed; acknowledged writes checked: "
        f"{checked_at_restart} at the restart, {checked} at the end"
    )


def lost_writes_at_restart(outage: Outage) -> tuple[list[str], int]:
    return lost_write_problems(
        outage.attempts_before_restart,
        outage.stored_at_restart,
        min_freq=MIN_FREQ_SECS,
        backdate=BACKDATE_SECS,
    )


def lost_writes_at_end(outage: Outage) -> tuple[list[str], int]:
    return lost_write_problems(
        outage.attempts, outage.stored, min_freq=MIN_FREQ_SECS, backdate=BACKDATE_SECS
    )


def unavailable_problems(attempts: list[Attempt]) -> list[str]:
    """Error answers that are not a 503 SERVICE_UNAVAILABLE with a Retry-After in seconds."""
    problems = []
    for attempt in attempts:
        if not attempt.answered_at_all or attempt.acknowledged:
            continue
        body = attempt.body if isinstance(attempt.body, dict) else {}
        retry_after = attempt.retry_after or ""
        if (
            attempt.http_status != 503
            or body.get("code") != SERVICE_UNAVAILABLE
            or not retry_after.isdigit()
            or int(retry_after) < 1
        ):
            shown = attempt.body if attempt.body is not None else attempt.error
            problems.append(
                f"sent at {attempt.sent:.3f}: HTTP {attempt.http_status}, Retry-After "
                f"{attempt.retry_after!r}, {attempt.content_type!r}: {shown!r}"
            )
    return problems


def test_every_request_is_answered(outage: Outage):
    assert outage.during, "no request was made while the database was down"
    unanswered = [a for a in outage.attempts if not a.answered_at_all]
    assert not unanswered, unanswered[:5]


def test_every_answer_is_a_json_envelope(outage: Outage):
    problems = envelope_problems(outage.attempts)
    assert_no_problems(problems, "answers without Zulip's JSON envelope")


def test_database_down_is_503_with_retry_after(outage: Outage):
    assert outage.during, "no request was made while the database was down"
    assert_no_problems(unavailable_problems(outage.during), "outage answers other than a 503")
    # The requests that straddled the fault or the restart succeeded or got the same 503.
    assert_no_problems(unavailable_problems(outage.attempts), "error answers other than a 503")


def test_served_again_by_the_same_process(outage: Outage):
    assert outage.server_survived, "the server process died"
    assert outage.recovered is not None, (
        f"not every member was served within {RECOVERY_LIMIT_SECS} s of the database's return"
    )
    # Nothing sticks: once a member's request succeeded again, so did all the next ones.
    for username in outage.usernames:
        own = [a for a in outage.attempts if a.username == username and a.sent >= outage.resumed]
        first = next(n for n, attempt in enumerate(own) if attempt.acknowledged)
        failed = [attempt for attempt in own[first:] if not attempt.acknowledged]
        assert not failed, (username, failed[:5])
    # And no connection outlived its request, the failed ones included.
    assert outage.sessions_left == 0


def test_no_acknowledged_write_lost(outage: Outage):
    lost, checked_at_restart = lost_writes_at_restart(outage)
    assert_no_problems(lost, "acknowledged writes lost in the fault")
    lost, checked = lost_writes_at_end(outage)
    assert_no_problems(lost, "acknowledged writes lost")
    assert checked_at_restart > 0
    assert checked > checked_at_restart


def test_update_ids_unique_and_under_the_sequence(outage: Outage):
    problems = update_id_problems(outage.attempts_before_restart, outage.stored_at_restart)
    assert_no_problems(problems, "update id problems at the restart")
    assert_no_problems(update_id_problems(outage.attempts, outage.stored), "update id problems")
    ids = [row.last_update_id for row in outage.stored.members.values()]
    assert None not in ids, "a member has no presence row"
