"""Statuses that end on time (scheduled_end_time, an extension after Zulip's open proposal): who
sees the end time, the errors, what a write does to it, reads past it, and the sweep that ends
it (timers.py's machinery), on a clock the tests set; exactly once with several sweepers at
once on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from django_presence import actions, timers
from django_presence.models import RealmMember, UserStatus
from django_presence.signals import user_status_changed

from .api_utils import FORM, assert_error, form, frozen_now, now_seconds, recording, success
from .events_utils import poll, register, register_queue, use_fresh_backends

OWN_STATUS_URL = "/api/v1/users/me/status"
HOUR = timedelta(hours=1)
NO_EMOJI = {"emoji_name": "", "emoji_code": "", "reaction_type": "unicode_emoji"}
ENDED = {"status_text": "", **NO_EMOJI}


def status_url(user_id: int) -> str:
    return f"/api/v1/users/{user_id}/status"


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    use_fresh_backends(monkeypatch)


class Clock:
    """Requests and sweeps at moments the test sets, with on-commit work done."""

    def __init__(self, api_client_for: Any, capture: Any) -> None:
        self.now = now_seconds()
        self._api_client_for = api_client_for
        self._capture = capture
        self._clients: dict[int, Any] = {}
        self._queues: dict[int, tuple[str, int]] = {}

    def client(self, member: RealmMember) -> Any:
        if member.user_id not in self._clients:
            self._clients[member.user_id] = self._api_client_for(member)
        return self._clients[member.user_id]

    def post(self, member: RealmMember, url: str = OWN_STATUS_URL, **params: Any) -> Any:
        with frozen_now(self.now), self._capture(execute=True):
            return self.client(member).post(url, form(**params), content_type=FORM)

    def get(self, viewer: RealmMember, target: RealmMember) -> dict[str, Any]:
        with frozen_now(self.now):
            body = success(self.client(viewer).get(status_url(target.user_id)))
        status: dict[str, Any] = body["status"]
        return status

    def sweep(self, at: Any = None) -> int:
        with self._capture(execute=True):
            return actions.do_clear_due_user_statuses(at or self.now)

    def watch(self, *members: RealmMember) -> None:
        for member in members:
            queue_id = register_queue(self.client(member), event_types=["user_status"])
            self._queues[member.user_id] = (queue_id, -1)

    def events(self, member: RealmMember) -> list[dict[str, Any]]:
        queue_id, last = self._queues[member.user_id]
        events = poll(self.client(member), queue_id, last)
        if events:
            self._queues[member.user_id] = (queue_id, events[-1]["id"])
        return [{k: v for k, v in event.items() if k != "id"} for event in events]


@pytest.fixture
def clock(api_client_for, django_capture_on_commit_callbacks) -> Clock:
    return Clock(api_client_for, django_capture_on_commit_callbacks)


@pytest.fixture
def iago(make_member) -> RealmMember:
    return make_member(role=RealmMember.Role.ADMINISTRATOR)


def event(member: RealmMember, **fields: Any) -> dict[str, Any]:
    return {"type": "user_status", "user_id": member.user_id, **fields}


@pytest.mark.django_db
def test_only_the_owner_sees_the_end_time(clock, hamlet, othello):
    end = int((clock.now + HOUR).timestamp())
    clock.watch(hamlet, othello)
    success(clock.post(hamlet, status_text="In a meeting", scheduled_end_time=end))
    assert clock.get(hamlet, hamlet) == {"status_text": "In a meeting", "scheduled_end_time": end}
    assert clock.get(othello, hamlet) == {"status_text": "In a meeting"}
    assert clock.events(hamlet) == [
        event(hamlet, status_text="In a meeting", scheduled_end_time=end)
    ]
    assert clock.events(othello) == [event(hamlet, status_text="In a meeting")]
    with frozen_now(clock.now):
        own = success(register(clock.client(hamlet), fetch_event_types=["user_status"]))
        other = success(register(clock.client(othello), fetch_event_types=["user_status"]))
    assert own["user_status"] == {
        str(hamlet.user_id): {"status_text": "In a meeting", "scheduled_end_time": end}
    }
    assert other["user_status"] == {str(hamlet.user_id): {"status_text": "In a meeting"}}

    # Only the end time: to the owner alone.
    later = end + 600
    success(clock.post(hamlet, scheduled_end_time=later))
    assert clock.events(hamlet) == [event(hamlet, scheduled_end_time=later)]
    assert clock.events(othello) == []


@pytest.mark.django_db
def test_the_status_ends_at_its_end_time(clock, hamlet, othello):
    end = clock.now + HOUR
    clock.watch(hamlet, othello)
    success(
        clock.post(
            hamlet,
            status_text="On vacation",
            emoji_name="palm_tree",
            scheduled_end_time=int(end.timestamp()),
        )
    )
    clock.events(hamlet), clock.events(othello)
    assert clock.sweep(end - timedelta(seconds=1)) == 0
    with recording(user_status_changed) as sent:
        assert clock.sweep(end + timedelta(seconds=1)) == 1
        assert clock.sweep(end + timedelta(seconds=2)) == 0
    assert clock.events(othello) == [event(hamlet, **ENDED)]
    assert clock.events(hamlet) == [event(hamlet, **ENDED, scheduled_end_time=None)]
    [signal] = sent
    assert (signal["ended"], signal["late"], signal["acting_user"]) == (True, False, None)
    assert signal["changed"] == {**ENDED, "scheduled_end_time": None}
    assert signal["status"] == {}
    row = UserStatus.objects.get(user_id=hamlet.user_id)
    assert (row.status_text, row.emoji_name, row.scheduled_end_time) == ("", "", None)


@pytest.mark.django_db
def test_a_status_ended_while_no_sweeper_ran_is_ended_late(clock, hamlet):
    end = clock.now + HOUR
    success(clock.post(hamlet, status_text="x", scheduled_end_time=int(end.timestamp())))
    with recording(user_status_changed) as sent:
        clock.sweep(end + timedelta(seconds=30))
    assert [(s["ended"], s["late"]) for s in sent] == [(True, True)]
    assert timers.is_late(end, end + timedelta(seconds=2, microseconds=1))
    assert not timers.is_late(end, end + timedelta(seconds=2))


@pytest.mark.django_db
def test_reads_never_show_an_ended_status(clock, hamlet, othello):
    end = clock.now + HOUR
    success(
        clock.post(hamlet, away="true", status_text="x", scheduled_end_time=int(end.timestamp()))
    )
    clock.now = end  # ended, and not swept
    assert clock.get(othello, hamlet) == {"away": True}
    assert clock.get(hamlet, hamlet) == {"away": True}
    with frozen_now(clock.now):
        state = success(register(clock.client(othello), fetch_event_types=["user_status"]))
    assert state["user_status"] == {str(hamlet.user_id): {"away": True}}
    hamlet.refresh_from_db()
    actions.do_set_presence_enabled(hamlet, True)
    with frozen_now(clock.now):
        state = success(register(clock.client(othello), fetch_event_types=["user_status"]))
    assert state["user_status"] == {}


@pytest.mark.django_db
def test_a_write_after_the_end_time_ends_the_status_first(clock, hamlet, othello):
    end = clock.now + HOUR
    success(
        clock.post(
            hamlet, status_text="x", emoji_name="car", scheduled_end_time=int(end.timestamp())
        )
    )
    clock.watch(othello)
    clock.now = end + timedelta(seconds=5)
    with recording(user_status_changed) as sent:
        success(clock.post(hamlet, away="false"))
    assert clock.events(othello) == [event(hamlet, **ENDED), event(hamlet, away=False)]
    assert [(s["ended"], s["late"]) for s in sent] == [(True, True), (False, False)]
    assert clock.get(othello, hamlet) == {}
    assert clock.sweep() == 0


@pytest.mark.django_db
def test_what_a_write_does_to_the_end_time(clock, hamlet):
    end = int((clock.now + HOUR).timestamp())
    success(clock.post(hamlet, status_text="a", scheduled_end_time=end))
    success(clock.post(hamlet, away="true"))  # away alone keeps it
    assert clock.get(hamlet, hamlet)["scheduled_end_time"] == end
    clock.watch(hamlet)
    success(clock.post(hamlet, status_text="b"))  # a new status does not end unless told
    assert clock.get(hamlet, hamlet) == {"away": True, "status_text": "b"}
    assert clock.events(hamlet) == [event(hamlet, status_text="b", scheduled_end_time=None)]
    success(clock.post(hamlet, scheduled_end_time=end))
    success(clock.post(hamlet, scheduled_end_time="null"))  # null removes it
    assert clock.events(hamlet) == [
        event(hamlet, scheduled_end_time=end),
        event(hamlet, scheduled_end_time=None),
    ]
    assert "scheduled_end_time" not in clock.get(hamlet, hamlet)
    success(clock.post(hamlet, emoji_name="car", scheduled_end_time=end))
    assert clock.get(hamlet, hamlet)["scheduled_end_time"] == end


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status_text": "x", "scheduled_end_time": 0}, "scheduled_end_time must be in the future"),
        ({"status_text": "x", "scheduled_end_time": "now"}, "scheduled_end_time is not valid JSON"),
        ({"status_text": "x", "scheduled_end_time": "1.5"}, "scheduled_end_time is not an integer"),
        ({"status_text": "x", "scheduled_end_time": '"1"'}, "scheduled_end_time is not an integer"),
        (
            {"status_text": "x", "scheduled_end_time": 10**40},
            "scheduled_end_time is too far in the future",
        ),
        (
            {"status_text": "x", "scheduled_end_time": -(10**40)},
            "scheduled_end_time must be in the future",
        ),
        ({"scheduled_end_time": "FUTURE"}, "Client does not have any status set."),
        (
            {"status_text": "", "scheduled_end_time": "FUTURE"},
            "Client does not have any status set.",
        ),
        (
            {"away": "true", "scheduled_end_time": "FUTURE"},
            "Client does not have any status set.",
        ),
    ],
)
def test_end_time_errors(clock, hamlet, params, message):
    future = int((clock.now + HOUR).timestamp())
    params = {name: future if value == "FUTURE" else value for name, value in params.items()}
    assert_error(clock.post(hamlet, **params), message)
    # The present is the past too.
    assert_error(
        clock.post(hamlet, status_text="x", scheduled_end_time=int(clock.now.timestamp())),
        "scheduled_end_time must be in the future",
    )


@pytest.mark.django_db
def test_an_ended_status_is_no_status_to_end(clock, hamlet):
    end = clock.now + HOUR
    success(clock.post(hamlet, status_text="x", scheduled_end_time=int(end.timestamp())))
    clock.now = end + timedelta(seconds=1)
    assert_error(
        clock.post(hamlet, scheduled_end_time=int((end + HOUR).timestamp())),
        "Client does not have any status set.",
    )


@pytest.mark.django_db
def test_administrators_set_end_times_the_owner_sees(clock, hamlet, iago):
    end = int((clock.now + HOUR).timestamp())
    clock.watch(hamlet, iago)
    success(
        clock.post(iago, status_url(hamlet.user_id), status_text="Out sick", scheduled_end_time=end)
    )
    assert clock.get(hamlet, hamlet) == {"status_text": "Out sick", "scheduled_end_time": end}
    assert clock.get(iago, hamlet) == {"status_text": "Out sick"}
    assert clock.events(hamlet) == [event(hamlet, status_text="Out sick", scheduled_end_time=end)]
    assert clock.events(iago) == [event(hamlet, status_text="Out sick")]


@pytest.mark.django_db
def test_the_sweeper_is_registered_with_the_timers(clock, hamlet):
    end = clock.now + HOUR
    success(clock.post(hamlet, status_text="x", scheduled_end_time=int(end.timestamp())))
    with clock._capture(execute=True):
        done = timers.run_due_work(end)
    assert done["user status ends"] == 1


# Exactly once, whatever the number of sweepers -------------------------------------------------

SWEEPERS = 6
STATUSES = 30


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent sweepers need PostgreSQL (PRESENCE_TEST_DATABASE=postgres); SQLite "
    "serializes them with its database-wide write lock",
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_end_each_status_once(realm, make_member):
    now = now_seconds()
    members = [make_member() for _ in range(STATUSES)]
    for index, member in enumerate(members):
        actions.do_update_user_status(
            member,
            acting_user=None,
            status_text=f"status {index}",
            scheduled_end_time=now + timedelta(seconds=index % 3),
            now=now - HOUR,
        )
    ended: list[int] = []
    lock = threading.Lock()

    def receiver(sender: object, **kwargs: Any) -> None:
        if kwargs["ended"]:
            with lock:
                ended.append(kwargs["member"].user_id)

    barrier = threading.Barrier(SWEEPERS)
    failures: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            for _round in range(3):
                actions.do_clear_due_user_statuses(now + timedelta(seconds=5))
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    user_status_changed.connect(receiver)
    try:
        threads = [threading.Thread(target=sweep) for _ in range(SWEEPERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        user_status_changed.disconnect(receiver)
    assert not failures
    assert sorted(ended) == sorted(member.user_id for member in members)
    assert not UserStatus.objects.exclude(status_text="").exists()
