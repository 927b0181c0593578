"""End to end: the unmodified ``zulip`` package registers event queues and long-polls them on the
example project served by uvicorn, in one process (in-process backend) and in two processes
sharing Redis (register and poll on one, the presence write on the other).

Like test_e2e_zulip_client, the servers use their own SQLite file, so the module runs in the
SQLite run only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import zulip

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port

from .e2e_server import SQLITE_RUN_ONLY
from .test_events_redis import REDIS_URL, redis_reachable

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.e2e,
    SQLITE_RUN_ONLY,
]

EVENT_WAIT_SECS = 20  # an event normally arrives within milliseconds
POLL_SETTLE_SECS = 1  # time for a long poll to reach the server before the write
POLLS = 20

MEMBERS = ("watcher", "mover1", "mover2", "mover3", "mover4", "mover5", "mover6")
MEMBERS += ("mover7", "mover8")
# Polls of one queue at once, in the test of superseded polls.
CONCURRENT_POLLS = 60
CONCURRENT_POLLS_TIMEOUT_SECS = 30


def client(account: Account, server: ExampleServer) -> zulip.Client:
    return zulip.Client(
        email=account.email,
        api_key=account.api_key,
        site=server.url,
        config_file=os.devnull,
        client="PresenceEventsE2E/1.0",
    )


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Account]]:
    db_path = tmp_path_factory.mktemp("events") / "events.sqlite3"
    manage(db_path, "migrate", "--verbosity=0")
    return db_path, create_accounts(db_path, dict.fromkeys(MEMBERS, "events"))


@pytest.fixture(scope="module")
def accounts(database: tuple[Path, dict[str, Account]]) -> dict[str, Account]:
    return database[1]


@pytest.fixture(scope="module")
def start_server(
    database: tuple[Path, dict[str, Account]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ExampleServer]]:
    started: list[ExampleServer] = []

    def start(**env: str) -> ExampleServer:
        log_path = tmp_path_factory.mktemp("logs") / "uvicorn.log"
        server = ExampleServer(database[0], free_port(), log_path, asgi=True, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def presence_event(account: Account, event: dict[str, Any]) -> None:
    """``event`` is the legacy presence event of ``account`` coming online, with id 0."""
    timestamp = event["presence"]["website"]["timestamp"]
    assert abs(timestamp - time.time()) < 60
    assert event == {
        "type": "presence",
        "user_id": account.user_id,
        "email": account.email,
        "server_timestamp": event["server_timestamp"],
        "presence": {
            "website": {
                "client": "website",
                "status": "active",
                "timestamp": timestamp,
                "pushable": False,
            }
        },
        "id": 0,
    }


def long_poll_then_write(
    watcher: zulip.Client, writer: zulip.Client, *, poll_on: zulip.Client | None = None
) -> dict[str, Any]:
    """Register on ``watcher``'s server, long-poll (on ``poll_on``'s server, by default the
    same), and while the poll waits let ``writer`` come online. Returns the poll's answer."""
    registered = watcher.register(event_types=["presence"])
    assert registered["result"] == "success", registered
    assert registered["last_event_id"] == -1
    poller = poll_on or watcher
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(
            poller.get_events,
            queue_id=registered["queue_id"],
            last_event_id=registered["last_event_id"],
        )
        time.sleep(POLL_SETTLE_SECS)
        assert writer.update_presence({"status": "active"})["result"] == "success"
        result: dict[str, Any] = answer.result(timeout=EVENT_WAIT_SECS)
    assert result["result"] == "success", result
    # Answered after waiting, so the answer names the queue, as Zulip's does.
    assert result["queue_id"] == registered["queue_id"]
    return result


class _Received(Exception):
    """Ends call_on_each_event, which otherwise loops forever."""


def call_on_each_event_then_write(
    watcher: zulip.Client, writer: zulip.Client
) -> list[dict[str, Any]]:
    """Run ``watcher.call_on_each_event`` in a thread until its first event, with ``writer``
    coming online meanwhile."""
    received: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        received.append(event)
        raise _Received

    def listen() -> None:
        with contextlib.suppress(_Received):
            watcher.call_on_each_event(on_event, event_types=["presence"])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    time.sleep(POLL_SETTLE_SECS)
    assert writer.update_presence({"status": "active"})["result"] == "success"
    thread.join(timeout=EVENT_WAIT_SECS)
    assert not thread.is_alive(), "call_on_each_event received nothing"
    return received


# One process, in-process backend -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ExampleServer]) -> ExampleServer:
    return start_server()


def test_get_events_receives_a_presence_event(server, accounts):
    result = long_poll_then_write(
        client(accounts["watcher"], server), client(accounts["mover1"], server)
    )
    (event,) = result["events"]
    presence_event(accounts["mover1"], event)


def test_call_on_each_event_receives_a_presence_event(server, accounts):
    received = call_on_each_event_then_write(
        client(accounts["watcher"], server), client(accounts["mover2"], server)
    )
    (event,) = received
    presence_event(accounts["mover2"], event)


def test_a_deleted_queue_is_a_bad_event_queue_id(server, accounts):
    watcher = client(accounts["watcher"], server)
    queue_id = watcher.register(event_types=["presence"])["queue_id"]
    assert watcher.deregister(queue_id) == {"result": "success", "msg": ""}
    assert watcher.get_events(queue_id=queue_id, last_event_id=-1) == {
        "result": "error",
        "msg": f"Bad event queue ID: {queue_id}",
        "code": "BAD_EVENT_QUEUE_ID",
        "queue_id": queue_id,
    }


def test_an_ordinary_refresh_sends_nothing(server, accounts):
    watcher, mover = client(accounts["watcher"], server), client(accounts["mover5"], server)
    assert mover.update_presence({"status": "active"})["result"] == "success"
    registered = watcher.register(event_types=["presence"])
    # Seconds after the first report, this one is a mere refresh.
    assert mover.update_presence({"status": "active"})["result"] == "success"
    assert watcher.get_events(
        queue_id=registered["queue_id"], last_event_id=-1, dont_block=True
    ) == {"result": "success", "msg": "", "events": []}


def server_threads(server: ExampleServer) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_waiting_polls_hold_no_thread(server, accounts):
    """Twenty long polls waiting at once: the server process does not grow a thread each."""
    watcher = client(accounts["watcher"], server)
    registered = [watcher.register(event_types=["presence"]) for _ in range(POLLS)]
    with ThreadPoolExecutor(max_workers=POLLS) as pool:
        answers = [
            pool.submit(watcher.get_events, queue_id=queue["queue_id"], last_event_id=-1)
            for queue in registered
        ]
        time.sleep(POLL_SETTLE_SECS * 2)
        threads_while_waiting = server_threads(server)
        mover = client(accounts["mover6"], server)
        assert mover.update_presence({"status": "active"})["result"] == "success"
        results = [answer.result(timeout=EVENT_WAIT_SECS) for answer in answers]
    assert threads_while_waiting < POLLS // 2
    for result in results:
        (event,) = result["events"]
        presence_event(accounts["mover6"], event)


# Two processes sharing Redis -----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_servers(
    start_server: Callable[..., ExampleServer],
) -> Iterator[tuple[ExampleServer, ExampleServer]]:
    if not redis_reachable():
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (set PRESENCE_TEST_REDIS_URL)")
    prefix = f"presence-e2e-{uuid.uuid4().hex[:12]}"
    env = {"EXAMPLE_EVENT_REDIS_URL": REDIS_URL, "EXAMPLE_EVENT_REDIS_KEY_PREFIX": prefix}
    yield start_server(**env), start_server(**env)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_a_write_on_one_process_reaches_a_long_poll_on_the_other(redis_servers, accounts):
    first, second = redis_servers
    result = long_poll_then_write(
        client(accounts["watcher"], first), client(accounts["mover3"], second)
    )
    (event,) = result["events"]
    presence_event(accounts["mover3"], event)


def test_call_on_each_event_across_processes(redis_servers, accounts):
    first, second = redis_servers
    received = call_on_each_event_then_write(
        client(accounts["watcher"], first), client(accounts["mover4"], second)
    )
    (event,) = received
    presence_event(accounts["mover4"], event)


def test_a_queue_registered_on_one_process_is_polled_on_the_other(redis_servers, accounts):
    first, second = redis_servers
    registered = client(accounts["watcher"], first).register(event_types=["presence"])
    on_second = client(accounts["watcher"], second)
    assert on_second.get_events(
        queue_id=registered["queue_id"], last_event_id=-1, dont_block=True
    ) == {"result": "success", "msg": "", "events": []}
    assert on_second.deregister(registered["queue_id"]) == {"result": "success", "msg": ""}
    gone = client(accounts["watcher"], first).get_events(
        queue_id=registered["queue_id"], last_event_id=-1
    )
    assert gone["code"] == "BAD_EVENT_QUEUE_ID"


# Many polls of one queue at once -------------------------------------------------------------


async def concurrent_polls_then_write(
    servers: list[ExampleServer], watcher: Account, mover: Account
) -> tuple[list[tuple[int, dict[str, Any]]], tuple[int, dict[str, Any]]]:
    """CONCURRENT_POLLS long polls of one queue, spread over ``servers``; once all but one
    have answered (each newer poll supersedes the waiting one), ``mover`` comes online. Returns
    the (status, body) of the superseded polls and of the last one. Bounded in time."""
    headers = {"Authorization": watcher.authorization}
    timeout = aiohttp.ClientTimeout(total=CONCURRENT_POLLS_TIMEOUT_SECS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(
            f"{servers[0].url}/api/v1/register",
            data={"event_types": '["presence"]'},
            headers=headers,
        ) as response:
            queue_id = (await response.json())["queue_id"]

        async def get(server: ExampleServer) -> tuple[int, dict[str, Any]]:
            params = {"queue_id": queue_id, "last_event_id": "-1"}
            url = f"{server.url}/api/v1/events"
            async with session.get(url, params=params, headers=headers) as response:
                return response.status, await response.json()

        polls = [
            asyncio.create_task(get(servers[index % len(servers)]))
            for index in range(CONCURRENT_POLLS)
        ]
        try:
            deadline = time.monotonic() + CONCURRENT_POLLS_TIMEOUT_SECS
            while sum(poll.done() for poll in polls) < CONCURRENT_POLLS - 1:
                assert time.monotonic() < deadline, "the superseded polls did not all answer"
                await asyncio.sleep(0.05)
            (newest,) = [poll for poll in polls if not poll.done()]
            async with session.post(
                f"{servers[-1].url}/api/v1/users/me/presence",
                data={"status": "active"},
                headers={"Authorization": mover.authorization},
            ) as response:
                assert response.status == 200, await response.text()
            last = await asyncio.wait_for(newest, EVENT_WAIT_SECS)
            return [poll.result() for poll in polls if poll is not newest], last
        finally:
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)


@pytest.mark.parametrize("backend", ["in_process", "redis"])
def test_many_polls_of_one_queue_all_succeed_and_the_newest_gets_the_event(
    backend, request, accounts
):
    """All at once on one queue: never an error; every poll but the newest answers at once
    with no events, and the newest gets the presence event when it comes."""
    if backend == "in_process":
        servers = [request.getfixturevalue("server")]
        mover = accounts["mover7"]
    else:
        servers = list(request.getfixturevalue("redis_servers"))
        mover = accounts["mover8"]
    superseded, (status, body) = asyncio.run(
        concurrent_polls_then_write(servers, accounts["watcher"], mover)
    )
    queue_id = body.get("queue_id")
    assert [status for status, _body in superseded] == [200] * (CONCURRENT_POLLS - 1)
    for _status, answer in superseded:
        assert answer == {"result": "success", "msg": "", "events": [], "queue_id": queue_id}
    assert status == 200, body
    (event,) = body["events"]
    presence_event(mover, event)


# The load test, small --------------------------------------------------------------------------


LOAD_TEST_QUEUES = 50
LOAD_TEST_TIMEOUT_SECS = 600


def test_the_load_test_runs(tmp_path):
    """bench/events_load.py with 50 queues and two rounds: in each, every poll gets exactly the
    presence event of that round's member, with the next id (checked inside the run). No timing
    assertion: the figures are the benchmark's business. Run as the program it is, so that the
    tests import nothing from bench/."""
    output = tmp_path / "events.json"
    command = [sys.executable, "-m", "bench.events_load", "--queues", str(LOAD_TEST_QUEUES)]
    done = subprocess.run(
        [*command, "--rounds", "2", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=LOAD_TEST_TIMEOUT_SECS,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    results = json.loads(output.read_text())
    backends = ["in_process", "redis"] if redis_reachable() else ["in_process"]
    assert [scenario["backend"] for scenario in results["scenarios"]] == backends
    for scenario in results["scenarios"]:
        assert scenario["delivered"] == 2 * LOAD_TEST_QUEUES
        assert len(scenario["rounds"]) == 2
