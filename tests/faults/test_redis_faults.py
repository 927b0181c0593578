"""The Redis event backend when its Redis server fails, against a private redis-server
(tests/faults/redis_server.py) that the tests kill, freeze and restart:

- presence writes succeed while Redis is down, and the event they could not publish is counted;
- register and GET events fail within seconds, and so does a poll that was already waiting;
- after a restart the first commands succeed, on connections that Redis had closed;
- a queue that may have missed an event (published while Redis was down, or lost with a restart
  from an older dump) answers BAD_EVENT_QUEUE_ID at its next poll.

The service raises Redis' own error, and the HTTP answer is Zulip's 503 envelope with a
Retry-After header (django_presence/exceptions.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from django_presence.events.backends import get_event_backend
from django_presence.events.backends.redis import (
    LISTENER_PING_SECS,
    SOCKET_TIMEOUT_SECS,
    RedisBackend,
)
from django_presence.events.queues import EventQueue
from django_presence.events.service import get_events, register_event_queue
from django_presence.models import PresenceSequence, RealmMember
from tests.api_utils import post_presence, success
from tests.events_utils import after, log_entry, register, register_queue
from tests.events_utils import get_events as http_get_events

from .redis_server import RedisServer, private_redis_fixture  # noqa: F401

pytestmark = pytest.mark.django_db

LONG_POLL_SECS = 30  # a poll that answers sooner than this was told to
# "Promptly": the error comes within a few seconds (a killed server is refused at once, a hung
# one times out), far from the long poll.
PROMPT_SECS = 4
# A poll waiting when Redis hangs learns it when the subscriber's PING goes unanswered, then its
# own read times out.
HUNG_WAITING_SECS = LISTENER_PING_SECS * 2 + SOCKET_TIMEOUT_SECS * 2 + 1


@pytest.fixture
def events_redis(private_redis: RedisServer, settings) -> RedisServer:
    """The private Redis, as the event backend's server."""
    settings.PRESENCE_EVENT_BACKEND = "django_presence.events.backends.redis.RedisBackend"
    settings.PRESENCE_EVENT_REDIS_URL = private_redis.url
    settings.PRESENCE_EVENT_REDIS_KEY_PREFIX = "faults"
    settings.PRESENCE_EVENT_LONG_POLL_SECS = LONG_POLL_SECS
    return private_redis


@pytest.fixture
def backend(events_redis: RedisServer) -> RedisBackend:
    backend = get_event_backend()
    assert isinstance(backend, RedisBackend)
    return backend


@pytest.fixture
def member(make_member) -> RealmMember:
    return make_member()


@pytest.fixture
def client(member, api_client_for) -> Any:
    return api_client_for(member)


@pytest.fixture
def come_online(make_member, api_client_for, django_capture_on_commit_callbacks) -> Any:
    """A new member of the realm reports "active", with on-commit signals delivered; returns
    the member."""

    def report() -> RealmMember:
        mover = make_member()
        with django_capture_on_commit_callbacks(execute=True):
            success(post_presence(api_client_for(mover), status="active"))
        return mover

    return report


@contextmanager
def within(seconds: float) -> Iterator[None]:
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f} s"


def register_service_queue(member: RealmMember) -> str:
    queue_id, _state = register_event_queue(
        member,
        event_types=["presence"],
        fetch_event_types=[],
        slim_presence=False,
        simplified_presence_events=False,
        history_limit_days=None,
    )
    return queue_id


def long_poll(member: RealmMember, queue_id: str) -> dict[str, Any]:
    return asyncio.run(get_events(member, queue_id=queue_id, last_event_id=-1, dont_block=False))


def events_lost(member: RealmMember) -> int:
    return PresenceSequence.objects.get(realm=member.realm).events_lost


def service_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.content
    assert response.json() == {
        "result": "error",
        "msg": "Service temporarily unavailable: the event server (Redis) cannot be reached",
        "code": "SERVICE_UNAVAILABLE",
    }
    assert int(response["Retry-After"]) > 0


def bad_event_queue_id(response: Any, queue_id: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "BAD_EVENT_QUEUE_ID"
    assert response.json()["queue_id"] == queue_id


# Redis down ---------------------------------------------------------------------------------


def test_presence_writes_succeed_while_redis_is_down(events_redis, member, come_online, caplog):
    events_redis.kill()
    with within(PROMPT_SECS):
        mover = come_online()
    assert f"Could not publish the presence event of user {mover.user_id}" in caplog.text
    assert events_lost(member) == 1


def test_register_and_get_events_fail_promptly_while_redis_is_down(events_redis, member, client):
    queue_id = register_queue(client)
    events_redis.kill()
    with within(PROMPT_SECS), pytest.raises(redis.ConnectionError):
        register_service_queue(member)
    with within(PROMPT_SECS), pytest.raises(redis.ConnectionError):
        long_poll(member, queue_id)
    with within(PROMPT_SECS):
        service_unavailable(register(client, event_types=["presence"]))
    with within(PROMPT_SECS):
        service_unavailable(http_get_events(client, queue_id=queue_id, last_event_id=-1))


def test_register_and_get_events_fail_promptly_when_redis_hangs(events_redis, member):
    queue_id = register_service_queue(member)
    events_redis.pause()
    with within(SOCKET_TIMEOUT_SECS + 2), pytest.raises(redis.TimeoutError):
        register_service_queue(member)
    with within(SOCKET_TIMEOUT_SECS + 2), pytest.raises(redis.TimeoutError):
        long_poll(member, queue_id)


def test_a_waiting_poll_answers_promptly_when_redis_dies(events_redis, member, client):
    queue_id = register_queue(client)
    with after(0.5, events_redis.kill), within(0.5 + PROMPT_SECS):
        response = http_get_events(client, queue_id=queue_id, last_event_id=-1)
    service_unavailable(response)


def test_a_waiting_poll_answers_promptly_when_redis_hangs(events_redis, member):
    queue_id = register_service_queue(member)
    with (
        after(0.5, events_redis.pause),
        within(0.5 + HUNG_WAITING_SECS),
        pytest.raises(redis.TimeoutError),
    ):
        long_poll(member, queue_id)


# Redis back ---------------------------------------------------------------------------------


def new_queue(realm_id: int) -> EventQueue:
    return EventQueue.new(
        user_id=1,
        realm_id=realm_id,
        wants_presence=True,
        slim_presence=True,
        simplified_presence_events=True,
    )


def test_the_first_commands_after_a_restart_succeed(events_redis, backend):
    """In one event loop, as in a server process: every command the backend sends works on the
    first try after Redis restarted, although its pooled connections were closed by the old
    server (and the compare-and-set script is no longer cached), and the subscriber is back."""

    async def scenario() -> None:
        before = new_queue(realm_id=1)
        backend.create_queue(before)
        loaded = await backend.load_queue(before.queue_id)
        assert loaded is not None and await backend.save_queue(loaded)
        backend.publish(1, log_entry(1))
        async with backend.waiting(before):
            pass

        events_redis.restart()

        queue = new_queue(realm_id=1)
        backend.create_queue(queue)
        loaded = await backend.load_queue(queue.queue_id)
        assert loaded is not None
        loaded.add_heartbeat()
        assert await backend.save_queue(loaded)
        backend.publish(1, log_entry(2))
        assert [e["user_id"] for _p, e in await backend.read_log(1, queue.read_pos)] == [2]
        async with backend.waiting(queue) as waiter:
            started = time.monotonic()
            with after(0.2, lambda: backend.publish(1, log_entry(3))):
                await waiter.wait(PROMPT_SECS)
            assert time.monotonic() - started < PROMPT_SECS
        await backend.delete_queue(loaded)
        assert await backend.load_queue(queue.queue_id) is None

    asyncio.run(scenario())


def test_a_queue_that_survived_a_restart_from_its_dump_is_a_bad_event_queue_id(
    events_redis, client
):
    """Redis restarted from a dump loses what was written after it: each queue from before the
    restart may have missed an event (the run_id of the server changed)."""
    queue_id = register_queue(client)
    events_redis.save()
    events_redis.kill()
    events_redis.start()
    bad_event_queue_id(http_get_events(client, queue_id=queue_id, last_event_id=-1), queue_id)
    queue_id = register_queue(client)
    response = http_get_events(client, queue_id=queue_id, last_event_id=-1, dont_block=True)
    assert success(response)["events"] == []


def test_a_publish_lost_while_redis_hung_ends_the_realms_queues(
    events_redis, member, client, come_online
):
    """The same Redis server (no restart), which missed a publish while it hung."""
    queue_id = register_queue(client)
    events_redis.pause()
    with within(SOCKET_TIMEOUT_SECS + PROMPT_SECS):
        come_online()
    events_redis.resume()
    assert events_lost(member) == 1
    bad_event_queue_id(http_get_events(client, queue_id=queue_id, last_event_id=-1), queue_id)
    queue_id = register_queue(client)
    mover = come_online()
    response = http_get_events(client, queue_id=queue_id, last_event_id=-1, dont_block=True)
    assert [event["user_id"] for event in success(response)["events"]] == [mover.user_id]


def test_a_queue_restored_from_the_dump_after_a_lost_publish_is_a_bad_event_queue_id(
    events_redis, member, client, come_online
):
    queue_id = register_queue(client)
    events_redis.save()
    events_redis.kill()
    mover = come_online()
    events_redis.start()
    bad_event_queue_id(http_get_events(client, queue_id=queue_id, last_event_id=-1), queue_id)
    # The client registers again, and the state it fetches has the change it missed.
    body = success(register(client, event_types=["presence"], slim_presence=True))
    assert str(mover.user_id) in body["presences"]
