"""A real server process (the example project on uvicorn, Redis event backend) while its private
Redis (redis_server.py) dies and comes back: what Zulip clients get over HTTP.

- A long poll that is waiting when Redis dies answers within seconds with Zulip's 503 envelope,
  as do register and GET events while Redis is down; presence reports still succeed.
- After Redis restarts, the server process's first requests succeed, although its pooled
  connections were closed by the old server, and long polls are woken again.
- A queue restored from Redis' dump after an event could not be published is a
  BAD_EVENT_QUEUE_ID; registering again fetches a state that has the missed change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port
from tests.e2e_server import SQLITE_RUN_ONLY

from .redis_server import RedisServer, started_private_redis

pytestmark = [pytest.mark.e2e, SQLITE_RUN_ONLY]

MEMBERS = ("watcher", "mover1", "mover2", "mover3", "mover4")
REQUEST_TIMEOUT_SECS = 15  # a long poll answers well within it here
PROMPT_SECS = 4  # as in test_redis_faults: a few seconds, far from the long poll
POLL_SETTLE_SECS = 0.5  # for a long poll to reach the server before what should end it


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with started_private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def site(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ExampleServer, dict[str, Account]]]:
    directory = tmp_path_factory.mktemp("redis-faults")
    db_path = directory / "example.sqlite3"
    manage(db_path, "migrate", "--verbosity=0")
    accounts = create_accounts(db_path, dict.fromkeys(MEMBERS, "faults"))
    server = ExampleServer(
        db_path,
        free_port(),
        directory / "uvicorn.log",
        asgi=True,
        EXAMPLE_EVENT_REDIS_URL=redis_server.url,
        EXAMPLE_EVENT_REDIS_KEY_PREFIX="faults",
    )
    try:
        yield server, accounts
    finally:
        server.stop()


@pytest.fixture
def redis_up(redis_server: RedisServer) -> RedisServer:
    """The module's Redis, running whatever the previous test left."""
    if not redis_server.running:
        redis_server.start()
    return redis_server


class Api:
    """Zulip's endpoints on the example server, as one member."""

    def __init__(self, server: ExampleServer, account: Account) -> None:
        self.url = f"{server.url}/api/v1"
        self.headers = {"Authorization": account.authorization}

    def register(self, **params: str) -> requests.Response:
        return requests.post(
            f"{self.url}/register",
            data={"event_types": '["presence"]', **params},
            headers=self.headers,
            timeout=REQUEST_TIMEOUT_SECS,
        )

    def events(self, queue_id: str, **params: str) -> requests.Response:
        return requests.get(
            f"{self.url}/events",
            params={"queue_id": queue_id, "last_event_id": "-1", **params},
            headers=self.headers,
            timeout=REQUEST_TIMEOUT_SECS,
        )

    def come_online(self) -> requests.Response:
        return requests.post(
            f"{self.url}/users/me/presence",
            data={"status": "active"},
            headers=self.headers,
            timeout=REQUEST_TIMEOUT_SECS,
        )


def ok(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["result"], body["msg"]) == ("success", "")
    return body


def service_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) > 0


def timed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_through_a_redis_outage(site, redis_up):
    server, accounts = site
    watcher = Api(server, accounts["watcher"])
    queue_id = ok(watcher.register())["queue_id"]
    redis_up.save()  # what the restart will find: this queue, and no later entry

    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(timed, lambda: watcher.events(queue_id))
        time.sleep(POLL_SETTLE_SECS)
        redis_up.kill()
        seconds, response = waiting.result(timeout=REQUEST_TIMEOUT_SECS)
    service_unavailable(response)
    assert seconds < POLL_SETTLE_SECS + PROMPT_SECS

    mover = accounts["mover1"]
    seconds, response = timed(Api(server, mover).come_online)
    ok(response)
    assert seconds < PROMPT_SECS
    for request in (watcher.register, lambda: watcher.events(queue_id)):
        seconds, response = timed(request)
        service_unavailable(response)
        assert seconds < PROMPT_SECS

    redis_up.start()
    response = watcher.events(queue_id)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "BAD_EVENT_QUEUE_ID"
    presences = ok(watcher.register(slim_presence="true"))["presences"]
    assert str(mover.user_id) in presences


def test_the_first_requests_after_a_redis_restart_succeed(site, redis_up):
    server, accounts = site
    watcher = Api(server, accounts["watcher"])
    # The server process's connections to Redis, sync and async, are open and pooled.
    queue_id = ok(watcher.register())["queue_id"]
    ok(watcher.events(queue_id, dont_block="true"))
    ok(Api(server, accounts["mover2"]).come_online())

    redis_up.restart()  # empty: nothing saved

    queue_id = ok(watcher.register())["queue_id"]
    assert ok(watcher.events(queue_id, dont_block="true"))["events"] == []
    mover = accounts["mover3"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(watcher.events, queue_id)
        time.sleep(POLL_SETTLE_SECS)
        ok(Api(server, mover).come_online())
        body = ok(waiting.result(timeout=REQUEST_TIMEOUT_SECS))
    assert [event["user_id"] for event in body["events"]] == [mover.user_id]
