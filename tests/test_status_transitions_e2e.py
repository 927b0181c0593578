"""presence_status_changed in real server processes, with the sweeper they start themselves: the
example project with a 23 s offline threshold (ping 1 s, writes at most every 2 s) and the demo
app's receiver, which appends each transition to a file (EXAMPLE_TRANSITIONS_LOG).

A member reports active, then idle 3 s later, then nothing: the receiver must see active ->
idle 23 s after the active report and idle -> offline 23 s after the idle one, each once and
within 2 s. In one process on SQLite; in two processes on one PostgreSQL database, which also
stop together and restart after another member's transition fell due: it comes late."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port

from .e2e_server import SQLITE_RUN_ONLY
from .example_postgres import REQUIRES_POSTGRES

# Once per CI run: the PostgreSQL test makes a database of its own whatever the run's database.
pytestmark = [pytest.mark.e2e, pytest.mark.once, SQLITE_RUN_ONLY]

THRESHOLD = 23
PROMPTNESS = 2.0  # seconds: the guarantee
TIMEOUT = 10  # seconds, for every request

SHORT_TIMES = {
    "EXAMPLE_PRESENCE_OFFLINE_THRESHOLD_SECS": str(THRESHOLD),
    "EXAMPLE_PRESENCE_PING_INTERVAL_SECS": "1",
    "EXAMPLE_PRESENCE_UPDATE_MIN_FREQ_SECONDS": "2",
}


def report(url: str, account: Account, status: str) -> float:
    """A presence report; returns the moment it was made (between request and answer)."""
    before = time.time()
    response = requests.post(
        f"{url}/api/v1/users/me/presence",
        data={"status": status, "ping_only": "true"},
        auth=(account.email, account.api_key),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return (before + time.time()) / 2


def read_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait_for(log: Path, user_id: int, count: int, deadline: float) -> list[dict[str, Any]]:
    """The transitions of ``user_id`` once there are ``count`` (or at ``deadline``), and a
    second more, so that a duplicate would show."""
    while time.time() < deadline:
        if len([line for line in read_log(log) if line["user_id"] == user_id]) >= count:
            break
        time.sleep(0.2)
    time.sleep(1)
    return [line for line in read_log(log) if line["user_id"] == user_id]


def assert_active_then_idle_then_offline(
    lines: list[dict[str, Any]], active_at: float, idle_at: float
) -> None:
    assert [(line["old"], line["new"]) for line in lines] == [
        ("offline", "active"),
        ("active", "idle"),
        ("idle", "offline"),
    ]
    came, went_idle, went_offline = lines
    # Made by the reports, at their moments (to the precision of the round trip).
    assert abs(came["at"] - active_at) < 1
    # Made by time alone, at the moments the rule says, and sent within 2 s of them.
    assert abs(went_idle["at"] - (active_at + THRESHOLD)) < 1
    assert abs(went_offline["at"] - (idle_at + THRESHOLD)) < 1
    for line in lines:
        assert 0 <= line["sent_at"] - line["at"] < PROMPTNESS, line
        assert line["late"] is False


@contextmanager
def servers(db_path: Path, log_dir: Path, count: int, **env: str) -> Iterator[list[ExampleServer]]:
    started: list[ExampleServer] = []
    try:
        for number in range(count):
            log_path = log_dir / f"server-{number}-{time.time():.0f}.log"
            started.append(ExampleServer(db_path, free_port(), log_path, **env))
        yield started
    finally:
        for server in started:
            server.stop()


def test_transitions_in_one_process(tmp_path: Path) -> None:
    db_path = tmp_path / "example.sqlite3"
    log = tmp_path / "transitions.jsonl"
    env = {**SHORT_TIMES, "EXAMPLE_TRANSITIONS_LOG": str(log)}
    manage(db_path, "migrate", "--verbosity=0")
    alice = create_accounts(db_path, {"alice": "transitions"})["alice"]
    with servers(db_path, tmp_path, 1, **env) as (server,):
        active_at = report(server.url, alice, "active")
        time.sleep(3)
        idle_at = report(server.url, alice, "idle")
        lines = wait_for(log, alice.user_id, 3, idle_at + THRESHOLD + 5)
    assert_active_then_idle_then_offline(lines, active_at, idle_at)


@REQUIRES_POSTGRES
def test_transitions_across_two_processes_and_a_restart(
    tmp_path: Path, example_pg_database: str
) -> None:
    unused_sqlite = tmp_path / "unused.sqlite3"
    log = tmp_path / "transitions.jsonl"
    env = {
        **SHORT_TIMES,
        "EXAMPLE_TRANSITIONS_LOG": str(log),
        "EXAMPLE_PG_NAME": example_pg_database,
    }
    manage(unused_sqlite, "migrate", "--verbosity=0", **env)
    accounts = create_accounts(unused_sqlite, {"alice": "pair", "bob": "pair"}, **env)
    alice, bob = accounts["alice"], accounts["bob"]
    with servers(unused_sqlite, tmp_path, 2, **env) as (first, second):
        active_at = report(first.url, alice, "active")
        time.sleep(3)
        idle_at = report(second.url, alice, "idle")
        time.sleep(4)
        bob_at = report(second.url, bob, "active")
        lines = wait_for(log, alice.user_id, 3, idle_at + THRESHOLD + 5)
        # Both processes swept all along; each transition was sent by one of them, once.
        assert_active_then_idle_then_offline(lines, active_at, idle_at)
    # Both processes are down when bob's active report ages out.
    assert time.time() < bob_at + THRESHOLD
    time.sleep(bob_at + THRESHOLD + 3 - time.time())
    restarted_at = time.time()
    with servers(unused_sqlite, tmp_path, 1, **env):
        bob_lines = wait_for(log, bob.user_id, 2, restarted_at + 10)
    assert [(line["old"], line["new"], line["late"]) for line in bob_lines] == [
        ("offline", "active", False),
        ("active", "offline", True),
    ]
    assert abs(bob_lines[1]["at"] - (bob_at + THRESHOLD)) < 1
    # Sent at the restart: the server's first request started its sweeper.
    assert 0 <= bob_lines[1]["sent_at"] - restarted_at < 10
