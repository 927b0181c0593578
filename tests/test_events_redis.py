"""The Redis backend against the Redis server at 127.0.0.1:6379 (skipped when it is not
reachable): realm streams, queue records with compare-and-set and expiry, wake-ups through
pub/sub from "another process", and the HTTP API on top.

Every key and channel of this run starts with a prefix of its own, so parallel runs never meet,
and each test deletes its keys.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from django_presence.events.backends import get_event_backend
from django_presence.events.backends.redis import log_key, queue_key, wake_channel
from django_presence.events.queues import EventQueue
from django_presence.events.wakeups import registry
from django_presence.models import ApiKey
from django_presence.recent_keys import forget_recent_api_keys, recent_api_keys

from .api_utils import frozen_now, now_seconds, post_presence, success, ts
from .events_utils import after, delete_queue, get_events, log_entry, poll, register_queue

REDIS_URL = os.environ.get("PRESENCE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"presence-test-{uuid.uuid4().hex[:12]}"


def redis_reachable() -> bool:
    address = urlparse(REDIS_URL)
    try:
        socket.create_connection((address.hostname, address.port or 6379), timeout=2).close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not redis_reachable(),
    reason=f"Redis is not reachable at {REDIS_URL} (set PRESENCE_TEST_REDIS_URL)",
)


@pytest.fixture
def raw_redis():
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def backend(settings, raw_redis):
    settings.PRESENCE_EVENT_BACKEND = "django_presence.events.backends.redis.RedisBackend"
    settings.PRESENCE_EVENT_REDIS_URL = REDIS_URL
    settings.PRESENCE_EVENT_REDIS_KEY_PREFIX = PREFIX
    return get_event_backend()


def new_queue(realm_id: int = 1, user_id: int = 10) -> EventQueue:
    return EventQueue.new(
        user_id=user_id,
        realm_id=realm_id,
        wants_presence=True,
        slim_presence=False,
        simplified_presence_events=False,
    )


def test_keys_and_channels_carry_the_prefix(backend):
    assert log_key(7) == f"{PREFIX}:log:7"
    assert queue_key("q") == f"{PREFIX}:queue:q"
    assert wake_channel(7) == f"{PREFIX}:wake:7"


def test_each_change_is_stored_once_per_realm_and_read_past_a_cursor(backend, raw_redis):
    backend.publish(1, log_entry(100))
    queue = new_queue(realm_id=1)
    backend.create_queue(queue)
    for user_id in (101, 102, 103):
        backend.publish(1, log_entry(user_id))
    backend.publish(2, log_entry(200))
    # One stream entry per change, whatever the number of queues.
    assert raw_redis.xlen(log_key(1)) == 4
    assert raw_redis.xlen(log_key(2)) == 1

    async def read() -> tuple[list[int], list[int]]:
        newer = await backend.read_log(1, queue.read_pos)
        rest = await backend.read_log(1, newer[0][0])
        return [e["user_id"] for _p, e in newer], [e["user_id"] for _p, e in rest]

    assert asyncio.run(read()) == ([101, 102, 103], [102, 103])


def test_logs_expire_when_the_realm_is_quiet(backend, raw_redis, settings):
    settings.PRESENCE_EVENT_QUEUE_TIMEOUT_SECS = 120
    backend.publish(1, log_entry(100))
    assert 170 < raw_redis.ttl(log_key(1)) <= 180  # the timeout plus the clock-skew margin


def test_queues_are_saved_by_compare_and_set(backend, raw_redis):
    queue = new_queue()
    backend.create_queue(queue)
    assert 590 < raw_redis.ttl(queue_key(queue.queue_id)) <= 600

    async def race() -> tuple[bool, bool, EventQueue | None]:
        first = await backend.load_queue(queue.queue_id)
        second = await backend.load_queue(queue.queue_id)
        assert first is not None and second is not None
        first.add_heartbeat()
        second.newest_pruned_id = 5
        return await backend.save_queue(first), await backend.save_queue(second), first

    saved_first, saved_second, first = asyncio.run(race())
    assert (saved_first, saved_second) == (True, False)
    stored = asyncio.run(backend.load_queue(queue.queue_id))
    assert stored == first
    assert stored is not None and stored.events == [{"type": "heartbeat", "id": 0}]


def test_deleted_and_expired_queues_are_gone(backend, settings):
    queue = new_queue()
    backend.create_queue(queue)

    async def delete_then_save() -> tuple[EventQueue | None, bool]:
        loaded = await backend.load_queue(queue.queue_id)
        assert loaded is not None
        await backend.delete_queue(loaded)
        return await backend.load_queue(queue.queue_id), await backend.save_queue(loaded)

    assert asyncio.run(delete_then_save()) == (None, False)

    settings.PRESENCE_EVENT_QUEUE_TIMEOUT_SECS = 1
    short_lived = new_queue()
    backend.create_queue(short_lived)
    deadline = time.monotonic() + 5
    while asyncio.run(backend.load_queue(short_lived.queue_id)) is not None:
        assert time.monotonic() < deadline, "Redis did not expire the queue"
        time.sleep(0.2)


def _wait_for_wake(backend, queue: EventQueue, wake: Any, timeout: float = 5) -> float:
    """Seconds until a waiter of ``queue`` is woken (or gives up after ``timeout``), with
    ``wake`` run in another thread 0.2 s into the wait."""

    async def wait() -> float:
        async with backend.waiting(queue) as waiter:
            started = time.monotonic()
            with after(0.2, wake):
                await waiter.wait(timeout)
            return time.monotonic() - started

    return asyncio.run(wait())


def test_a_wake_up_published_by_another_process_reaches_this_one(backend, raw_redis):
    queue = new_queue(realm_id=3)
    # What another server process's publish does: XADD, then PUBLISH on the realm's channel.
    assert _wait_for_wake(backend, queue, lambda: raw_redis.publish(wake_channel(3), "*")) < 2


def test_foreign_messages_do_not_end_the_subscription(backend, raw_redis):
    queue = new_queue(realm_id=6)

    def foreign_then_ours() -> None:
        raw_redis.publish(wake_channel("not-a-realm"), "*")
        raw_redis.publish(wake_channel(6), "*")

    assert _wait_for_wake(backend, queue, foreign_then_ours) < 2


def test_publishing_wakes_the_realms_polls(backend):
    queue = new_queue(realm_id=4)
    assert _wait_for_wake(backend, queue, lambda: backend.publish(4, log_entry(1))) < 2


def test_deleting_a_queue_wakes_its_poll_only(backend, raw_redis):
    queue = new_queue(realm_id=5)

    # A wake-up for another queue of the realm leaves this poll waiting.
    def wake_another_queue() -> None:
        raw_redis.publish(wake_channel(5), "another-queue-id")

    assert _wait_for_wake(backend, queue, wake_another_queue, timeout=1) >= 1
    assert (
        _wait_for_wake(backend, queue, lambda: raw_redis.publish(wake_channel(5), queue.queue_id))
        < 2
    )
    assert registry.waiting() == 0


def _remember_one() -> None:
    recent_api_keys.remember("a-digest", ApiKey())
    assert len(recent_api_keys) == 1


def test_changed_keys_announced_by_another_process_are_forgotten(backend):
    queue = new_queue(realm_id=7)

    async def wait_while_another_process_changes_keys() -> None:
        async with backend.waiting(queue):
            # Subscribed (waiting() waits for it): from here on only the message forgets.
            _remember_one()
            # What forget_recent_api_keys does in another process, once its change commits.
            await asyncio.to_thread(backend.announce_keys_changed)
            deadline = time.monotonic() + 5
            while len(recent_api_keys):
                assert time.monotonic() < deadline, "the keys were not forgotten"
                await asyncio.sleep(0.05)

    asyncio.run(wait_while_another_process_changes_keys())


@pytest.mark.django_db
def test_a_change_is_announced_once_committed(
    backend, raw_redis, django_capture_on_commit_callbacks
):
    subscriber = raw_redis.pubsub()
    subscriber.subscribe(wake_channel("keys"))
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"
    _remember_one()
    with django_capture_on_commit_callbacks(execute=True):
        forget_recent_api_keys()
        assert len(recent_api_keys) == 1  # not before the commit
    assert len(recent_api_keys) == 0
    message = subscriber.get_message(timeout=2)
    subscriber.close()
    assert message is not None and message["data"] == "keys"


@pytest.mark.django_db
def test_keys_are_forgotten_locally_when_redis_cannot_be_told(
    settings, caplog, django_capture_on_commit_callbacks
):
    settings.PRESENCE_EVENT_BACKEND = "django_presence.events.backends.redis.RedisBackend"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings.PRESENCE_EVENT_REDIS_URL = f"redis://127.0.0.1:{port}/0"
    _remember_one()
    with django_capture_on_commit_callbacks(execute=True):
        forget_recent_api_keys()
    assert len(recent_api_keys) == 0
    assert "could not tell the other processes" in caplog.text


# The HTTP API on the Redis backend ---------------------------------------------------------


@pytest.mark.django_db
def test_events_through_the_api(
    backend, make_member, api_client_for, django_capture_on_commit_callbacks
):
    hamlet, othello = make_member(), make_member()
    watcher = api_client_for(hamlet)
    queue_id = register_queue(watcher, slim_presence=True)
    moment = now_seconds()
    with frozen_now(moment), django_capture_on_commit_callbacks(execute=True):
        success(post_presence(api_client_for(othello), status="active"))
    assert poll(watcher, queue_id) == [
        {
            "type": "presence",
            "user_id": othello.user_id,
            "server_timestamp": moment.timestamp(),
            "presence": {
                "website": {
                    "client": "website",
                    "status": "active",
                    "timestamp": ts(moment),
                    "pushable": False,
                }
            },
            "id": 0,
        }
    ]
    later = moment + timedelta(seconds=1)
    with after(0.3, lambda: backend.publish(hamlet.realm_id, log_entry(hamlet.user_id, ts(later)))):
        body = success(get_events(watcher, queue_id=queue_id, last_event_id=0))
    assert body["queue_id"] == queue_id
    assert [(event["id"], event["user_id"]) for event in body["events"]] == [(1, hamlet.user_id)]
    assert success(delete_queue(watcher, queue_id=queue_id)) == {"result": "success", "msg": ""}
    assert get_events(watcher, queue_id=queue_id, last_event_id=1).json()["code"] == (
        "BAD_EVENT_QUEUE_ID"
    )


@pytest.mark.django_db
def test_user_status_events_through_redis(
    backend, make_member, api_client_for, django_capture_on_commit_callbacks
):
    """A user_status entry goes through the stream as JSON, and each queue shapes it: the end
    time in the owner's queue only."""
    hamlet, othello = make_member(), make_member()
    owner, watcher = api_client_for(hamlet), api_client_for(othello)
    own_queue = register_queue(owner, event_types=["user_status"])
    other_queue = register_queue(watcher, event_types=["user_status"])
    end = int(time.time()) + 3600
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            "/api/v1/users/me/status",
            {"status_text": "away", "scheduled_end_time": str(end)},
        )
    assert success(response) == {"result": "success", "msg": ""}
    event = {"type": "user_status", "user_id": hamlet.user_id, "status_text": "away", "id": 0}
    assert poll(owner, own_queue) == [{**event, "scheduled_end_time": end}]
    assert poll(watcher, other_queue) == [event]
