"""Several GET events on one queue at once, on both backends, without HTTP: as in Zulip, the
newest poll supersedes a waiting one, which answers at once with no events; conflicting saves
of the queue are retried until they land, so polling a queue twice never fails.

The Redis cases use the server at 127.0.0.1:6379 (skipped when it is not reachable), under a
key prefix of this run's own; their wake-ups go through Redis pub/sub and this process's
subscriber, as between two server processes.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest
import redis

from django_presence.events import service
from django_presence.events.backends import EventBackend, get_event_backend
from django_presence.events.queues import EventQueue
from django_presence.events.service import get_events, register_event_queue
from django_presence.events.wakeups import registry
from django_presence.models import RealmMember

from .events_utils import log_entry, use_fresh_backends
from .test_events_redis import REDIS_URL, redis_reachable

pytestmark = pytest.mark.django_db

PREFIX = f"presence-test-polls-{uuid.uuid4().hex[:12]}"
POLLS = 60
ANSWER_TIMEOUT_SECS = 20  # answers normally come within milliseconds
LONG_POLL_SECS = 30  # longer than any test: a poll that answers was told to


@pytest.fixture(params=["in_process", "redis"])
def backend(request, settings, monkeypatch) -> Any:
    settings.PRESENCE_EVENT_LONG_POLL_SECS = LONG_POLL_SECS
    if request.param == "in_process":
        use_fresh_backends(monkeypatch)
        yield get_event_backend()
        return
    if not redis_reachable():
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (set PRESENCE_TEST_REDIS_URL)")
    settings.PRESENCE_EVENT_BACKEND = "django_presence.events.backends.redis.RedisBackend"
    settings.PRESENCE_EVENT_REDIS_URL = REDIS_URL
    settings.PRESENCE_EVENT_REDIS_KEY_PREFIX = PREFIX
    yield get_event_backend()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def member(make_member) -> RealmMember:
    return make_member()


def register(member: RealmMember) -> str:
    queue_id, _state = register_event_queue(
        member,
        event_types=["presence"],
        fetch_event_types=[],
        slim_presence=True,
        simplified_presence_events=True,
        history_limit_days=None,
    )
    return queue_id


def poll(
    member: RealmMember, queue_id: str, *, last_event_id: int = -1, dont_block: bool = False
) -> Coroutine[Any, Any, dict[str, Any]]:
    return get_events(member, queue_id=queue_id, last_event_id=last_event_id, dont_block=dont_block)


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.01)


def waiters(queue_id: str) -> set[Any]:
    return set(registry._by_queue.get(queue_id, ()))


async def started(
    coroutine: Coroutine[Any, Any, dict[str, Any]], queue_id: str
) -> asyncio.Task[Any]:
    """A task of ``coroutine`` (a poll of ``queue_id``) that is waiting when this returns."""
    before = waiters(queue_id)
    task = asyncio.create_task(coroutine)
    await until(lambda: waiters(queue_id) - before or task.done(), "the poll to wait")
    assert not task.done(), task.result()
    return task


def presence_ids(answer: dict[str, Any]) -> list[tuple[int, int]]:
    return [(event["id"], int(next(iter(event["presences"])))) for event in answer["events"]]


def test_a_newer_poll_supersedes_the_waiting_one(backend, member):
    queue_id = register(member)

    async def scenario() -> None:
        older = await started(poll(member, queue_id), queue_id)
        newer = await started(poll(member, queue_id), queue_id)
        # Answered at once, with nothing, and no event id taken (no heartbeat).
        assert await asyncio.wait_for(older, ANSWER_TIMEOUT_SECS) == {
            "events": [],
            "queue_id": queue_id,
        }
        assert not newer.done()
        backend.publish(member.realm_id, log_entry(77))
        answer = await asyncio.wait_for(newer, ANSWER_TIMEOUT_SECS)
        assert (answer["queue_id"], presence_ids(answer)) == (queue_id, [(0, 77)])

    asyncio.run(scenario())


def test_a_poll_that_does_not_wait_also_supersedes(backend, member):
    queue_id = register(member)

    async def scenario() -> None:
        waiting = await started(poll(member, queue_id), queue_id)
        assert await poll(member, queue_id, dont_block=True) == {"events": []}
        assert await asyncio.wait_for(waiting, ANSWER_TIMEOUT_SECS) == {
            "events": [],
            "queue_id": queue_id,
        }

    asyncio.run(scenario())


def test_a_poll_whose_acknowledgement_fails_supersedes_nothing(backend, member):
    """As in Zulip, the error is raised before the poll connects."""
    queue_id = register(member)

    async def scenario() -> None:
        waiting = await started(poll(member, queue_id), queue_id)
        with pytest.raises(service.ZulipError, match="Event 5 was not in this queue"):
            await poll(member, queue_id, last_event_id=5)
        await asyncio.sleep(0.2)
        assert not waiting.done()
        backend.publish(member.realm_id, log_entry(78))
        answer = await asyncio.wait_for(waiting, ANSWER_TIMEOUT_SECS)
        assert presence_ids(answer) == [(0, 78)]

    asyncio.run(scenario())


class _Interleaving:
    """Yields to the event loop between a poll's load and its save of the queue, so that
    concurrent polls of one queue really do overlap, and counts the saves that lost."""

    def __init__(self, backend: EventBackend) -> None:
        self.backend = backend
        self.lost_saves = 0
        self._read_log = backend.read_log
        self._save_queue = backend.save_queue

    async def read_log(self, realm_id: int, after: str) -> Any:
        await asyncio.sleep(random.uniform(0, 0.002))
        return await self._read_log(realm_id, after)

    async def save_queue(self, queue: EventQueue) -> bool:
        saved = await self._save_queue(queue)
        self.lost_saves += not saved
        return saved


def test_many_concurrent_polls_all_succeed_and_the_newest_gets_the_event(
    backend, member, monkeypatch
):
    queue_id = register(member)
    interleaving = _Interleaving(backend)
    monkeypatch.setattr(backend, "read_log", interleaving.read_log)
    monkeypatch.setattr(backend, "save_queue", interleaving.save_queue)

    async def scenario() -> None:
        polls = [asyncio.create_task(poll(member, queue_id)) for _ in range(POLLS)]
        try:
            await until(
                lambda: sum(task.done() for task in polls) == POLLS - 1,
                "every poll but the newest to answer",
            )
            (newest,) = [task for task in polls if not task.done()]
            for task in polls:
                if task is not newest:
                    assert task.result() == {"events": [], "queue_id": queue_id}
            backend.publish(member.realm_id, log_entry(80))
            answer = await asyncio.wait_for(newest, ANSWER_TIMEOUT_SECS)
            assert (answer["queue_id"], presence_ids(answer)) == (queue_id, [(0, 80)])
        finally:
            for task in polls:
                task.cancel()
            await asyncio.gather(*polls, return_exceptions=True)

    asyncio.run(scenario())
    # The polls did collide, and every collision was retried.
    assert interleaving.lost_saves > 0


def test_saves_are_retried_until_they_land(backend, member, monkeypatch):
    """However many times another poll saves first (here, a stand-in that always does for a
    while), the poll answers and never fails."""
    queue_id = register(member)
    save_queue = backend.save_queue
    losses = 0

    async def lose_often(queue: EventQueue) -> bool:
        nonlocal losses
        if losses < 25:
            losses += 1
            return False
        return await save_queue(queue)

    monkeypatch.setattr(backend, "save_queue", lose_often)
    assert asyncio.run(poll(member, queue_id, dont_block=True)) == {"events": []}
    assert losses == 25
