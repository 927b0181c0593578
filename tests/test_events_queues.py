"""The queue record, the in-process backend and the wake-up registry, without HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from django_presence.events import backends, queues
from django_presence.events.backends import MAX_ENTRIES_PER_READ
from django_presence.events.backends.in_process import InProcessBackend
from django_presence.events.queues import BadEventQueueIdError, EventQueue
from django_presence.events.wakeups import Waiter, WakeupRegistry


def make_queue(**flags: bool) -> EventQueue:
    return EventQueue.new(
        user_id=10,
        realm_id=1,
        wants_presence=flags.get("wants_presence", True),
        slim_presence=flags.get("slim_presence", False),
        simplified_presence_events=flags.get("simplified", False),
    )


def entry(user_id: int, active: int, idle: int) -> queues.LogEntry:
    return {
        "user_id": user_id,
        "email": f"user{user_id}@example.com",
        "server_timestamp": idle + 0.5,
        "presence": {"active_timestamp": active, "idle_timestamp": idle},
    }


def test_bad_event_queue_id_error_is_zulips():
    error = BadEventQueueIdError("abc")
    assert (error.msg, error.zulip_code, error.extra, error.status_code) == (
        "Bad event queue ID: abc",
        "BAD_EVENT_QUEUE_ID",
        {"queue_id": "abc"},
        400,
    )


@pytest.mark.parametrize(
    ("active", "status", "timestamp"),
    [(1000, "active", 1000), (930, "active", 930), (929, "idle", 1000)],
)
def test_legacy_status_follows_the_70_second_rule(active, status, timestamp):
    queue = make_queue()
    queue.add_log_entries(
        [("1", entry(5, active, 1000))], visible_user_ids=None, activity_offset_secs=70
    )
    assert queue.events[0]["presence"]["website"] == {
        "client": "website",
        "status": status,
        "timestamp": timestamp,
        "pushable": False,
    }


def test_event_shapes_and_ids():
    legacy, slim, simplified = (
        make_queue(),
        make_queue(slim_presence=True),
        make_queue(simplified=True, slim_presence=True),
    )
    for queue in (legacy, slim, simplified):
        queue.add_log_entries(
            [("1", entry(5, 1000, 1000)), ("2", entry(6, 1000, 1010))],
            visible_user_ids=None,
            activity_offset_secs=70,
        )
        assert [event["id"] for event in queue.events] == [0, 1]
        assert (queue.read_pos, queue.next_event_id) == ("2", 2)
    assert list(legacy.events[0]) == [
        "type",
        "user_id",
        "email",
        "server_timestamp",
        "presence",
        "id",
    ]
    assert list(slim.events[0]) == ["type", "user_id", "server_timestamp", "presence", "id"]
    assert simplified.events[1] == {
        "type": "presence",
        "presences": {"6": {"active_timestamp": 1000, "idle_timestamp": 1010}},
        "id": 1,
    }


def test_invisible_subjects_and_unwanted_events_only_move_the_cursor():
    filtered, uninterested = make_queue(), make_queue(wants_presence=False)
    entries = [("7", entry(5, 1000, 1000)), ("9", entry(6, 1000, 1000))]
    filtered.add_log_entries(entries, visible_user_ids={6}, activity_offset_secs=70)
    uninterested.add_log_entries(entries, visible_user_ids=None, activity_offset_secs=70)
    assert [(e["user_id"], e["id"]) for e in filtered.events] == [(6, 0)]
    assert (uninterested.events, uninterested.read_pos, uninterested.next_event_id) == ([], "9", 0)


def test_acknowledgement_follows_zulip():
    queue = make_queue()
    for _ in range(3):
        queue.add_heartbeat()
    assert queue.acknowledge(-1) is None
    assert [e["id"] for e in queue.events] == [0, 1, 2]
    assert queue.acknowledge(1) is None
    assert ([e["id"] for e in queue.events], queue.newest_pruned_id) == ([2], 1)
    assert queue.acknowledge(1) is None
    error = queue.acknowledge(0)
    assert error is not None and error.msg == "An event newer than 0 has already been pruned!"
    error = queue.acknowledge(7)
    assert error is not None and error.msg == "Event 7 was not in this queue"
    # Dropped all the same, as Zulip does.
    assert (queue.events, queue.newest_pruned_id) == ([], 2)


def test_queue_records_round_trip_without_their_version():
    queue = make_queue(simplified=True)
    queue.add_heartbeat()
    queue.version = 4
    assert '"version"' not in queue.to_json()
    assert EventQueue.from_json(queue.to_json(), version=4) == queue


# The in-process backend ---------------------------------------------------------------------


def test_in_process_log_reads_past_the_cursor_and_in_bounded_batches():
    backend = InProcessBackend()
    backend.publish(1, entry(1, 0, 0))
    queue = make_queue()
    backend.create_queue(queue)
    for user_id in range(MAX_ENTRIES_PER_READ + 5):
        backend.publish(1, entry(user_id, 0, 0))
    backend.publish(2, entry(99, 0, 0))
    first = asyncio.run(backend.read_log(1, queue.read_pos))
    assert [e["user_id"] for _p, e in first] == list(range(MAX_ENTRIES_PER_READ))
    rest = asyncio.run(backend.read_log(1, first[-1][0]))
    assert [e["user_id"] for _p, e in rest] == [1000, 1001, 1002, 1003, 1004]
    assert asyncio.run(backend.read_log(1, rest[-1][0])) == []


def test_in_process_log_keeps_entries_for_the_queue_timeout(monkeypatch):
    backend = InProcessBackend()
    start = time.time()
    monkeypatch.setattr(queues, "now", lambda: start)
    backend.publish(1, entry(1, 0, 0))
    monkeypatch.setattr(queues, "now", lambda: start + 600)
    backend.publish(1, entry(2, 0, 0))
    assert [e["user_id"] for _p, e in asyncio.run(backend.read_log(1, "0"))] == [1, 2]
    monkeypatch.setattr(queues, "now", lambda: start + 600.5)
    backend.publish(1, entry(3, 0, 0))
    assert [e["user_id"] for _p, e in asyncio.run(backend.read_log(1, "0"))] == [2, 3]


def test_in_process_sweep_drops_expired_queues_and_quiet_logs(monkeypatch):
    backend = InProcessBackend()
    start = time.time()
    monkeypatch.setattr(queues, "now", lambda: start)
    backend.publish(1, entry(1, 0, 0))
    old = make_queue()
    backend.create_queue(old)
    monkeypatch.setattr(queues, "now", lambda: start + 601)
    backend.create_queue(make_queue())  # creating a queue sweeps, at most once a minute
    assert (list(backend._logs), len(backend._queues)) == ([], 1)
    assert asyncio.run(backend.load_queue(old.queue_id)) is None


def test_in_process_saves_refuse_stale_versions():
    backend = InProcessBackend()
    queue = make_queue()
    backend.create_queue(queue)
    first = asyncio.run(backend.load_queue(queue.queue_id))
    second = asyncio.run(backend.load_queue(queue.queue_id))
    assert first is not None and second is not None
    assert asyncio.run(backend.save_queue(first)) is True
    assert asyncio.run(backend.save_queue(second)) is False
    asyncio.run(backend.delete_queue(first))
    assert asyncio.run(backend.save_queue(first)) is False


def test_the_backend_is_one_instance_per_process(monkeypatch):
    monkeypatch.setattr(backends, "_backends", {})
    assert backends.get_event_backend() is backends.get_event_backend()
    assert isinstance(backends.get_event_backend(), InProcessBackend)


# Wake-ups -----------------------------------------------------------------------------------


def test_wake_ups_reach_waiters_of_the_realm_or_the_queue_from_any_thread():
    registry = WakeupRegistry()

    async def scenario() -> dict[str, bool]:
        same_realm = Waiter(1, "a")
        same_queue_elsewhere = Waiter(2, "b")
        other = Waiter(3, "c")
        for waiter in (same_realm, same_queue_elsewhere, other):
            registry.add(waiter)
        assert registry.waiting() == 3
        thread = threading.Thread(target=lambda: (registry.wake_realm(1), registry.wake_queue("b")))
        thread.start()
        results = await asyncio.gather(
            *(timed_wait(waiter) for waiter in (same_realm, same_queue_elsewhere, other))
        )
        thread.join()
        for waiter in (same_realm, same_queue_elsewhere, other):
            registry.remove(waiter)
        assert registry.waiting() == 0
        return dict(zip(("realm", "queue", "other"), results, strict=True))

    async def timed_wait(waiter: Waiter) -> bool:
        started = time.monotonic()
        await waiter.wait(1)
        return time.monotonic() - started < 0.9

    assert asyncio.run(scenario()) == {"realm": True, "queue": True, "other": False}


def test_wake_ups_for_a_closed_loop_are_ignored():
    registry = WakeupRegistry()

    async def register() -> Waiter:
        waiter = Waiter(1, "a")
        registry.add(waiter)
        return waiter

    waiter = asyncio.run(register())  # its loop is closed when run() returns
    assert waiter.loop.is_closed()
    registry.wake_all()
    registry.wake_realm(1)
    assert registry.waiting() == 1


def test_each_poll_that_connects_becomes_the_current_one():
    queue = make_queue()
    assert (queue.connect_poll(waiting=True), queue.poll_waiting) == (1, True)
    assert (queue.connect_poll(waiting=False), queue.poll_waiting) == (2, False)
    assert EventQueue.from_json(queue.to_json(), version=1).current_poll == 2


def test_records_stored_before_polls_were_numbered_still_load():
    stored = json.loads(make_queue().to_json())
    del stored["current_poll"], stored["poll_waiting"]
    queue = EventQueue.from_json(json.dumps(stored), version=3)
    assert (queue.current_poll, queue.poll_waiting, queue.version) == (0, False, 3)
