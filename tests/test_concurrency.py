"""The presence write path under concurrent writers, on PostgreSQL.

Threads, each with its own database connection, report presence for the same users of one realm
at once (directly and through the HTTP API) while another thread fetches incrementally, the way
clients do. Afterwards the rows, the realm's sequence and everything the reader saw must agree:
one row per user, distinct update ids handed out in commit order, timestamps that only move
forwards, and a reader that never missed an update. docs/concurrency.md explains why this holds.
"""

from __future__ import annotations

import bisect
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from django_presence import actions
from django_presence.formatting import ModernEntry, format_modern_entry
from django_presence.models import PresenceSequence, Realm, RealmMember, UserPresence
from django_presence.queries import get_presence_dict_by_realm
from django_presence.signals import presence_changed
from loopback.auth import basic_auth

pytestmark = pytest.mark.django_db(transaction=True)

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need PostgreSQL (PRESENCE_TEST_DATABASE=postgres); "
    "SQLite serializes them with its database-wide write lock",
)

WRITERS = 8
USERS = 40
ROUNDS = 8
# Rounds are further apart than the 55 s throttle, so every round really writes.
ROUND_SECS = 60
HTTP_WRITERS = 4
HTTP_USERS = 4
RACERS = 6

# Whole seconds, as the API's timestamps are, and well inside the default history window.
T0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)

# Bounds for each phase; the whole file runs in a few seconds.
TIME_LIMIT_SECS = 30.0
MAX_POLLS = 50_000
POLL_PAUSE_SECS = 0.001

ACTIONS_LOGGER = "django_presence.actions"


def round_time(number: int) -> datetime:
    return T0 + timedelta(seconds=number * ROUND_SECS)


def entry(last_active: datetime, last_connected: datetime) -> ModernEntry:
    return format_modern_entry(last_active, last_connected)


class Worker(threading.Thread):
    """A thread with its own database connection, closed when it ends; it keeps its exception
    for the test to raise."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                # No wait in these tests is legitimately long: a stuck lock becomes an error.
                cursor.execute("SET lock_timeout = '20s'")
            self.work()
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


def finish(workers: Sequence[Worker], deadline: float) -> None:
    """Join the workers by ``deadline``, then raise the first error any of them had."""
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [worker.name for worker in workers if worker.is_alive()]
    assert not stuck, f"still running at the time limit: {stuck}"
    for worker in workers:
        if worker.error is not None:
            raise worker.error


@dataclass(frozen=True)
class Sent:
    """One presence_changed signal, as sent after a commit in the writing thread."""

    update_id: int | None
    user_id: int
    presence: ModernEntry
    forced: bool


@pytest.fixture
def sent() -> Iterator[list[Sent]]:
    log: list[Sent] = []
    lock = threading.Lock()

    def on_presence_changed(
        sender: Any,
        *,
        member: RealmMember,
        presence: ModernEntry,
        last_update_id: int | None,
        forced: bool,
        **kwargs: Any,
    ) -> None:
        with lock:
            log.append(Sent(last_update_id, member.user_id, presence, forced))

    presence_changed.connect(on_presence_changed)
    yield log
    presence_changed.disconnect(on_presence_changed)


def already_created_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The INFO lines of writers that lost the race to create a row."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == ACTIONS_LOGGER and "already created" in record.getMessage()
    ]


@dataclass(frozen=True)
class Poll:
    """One incremental fetch: the cursor sent, and what came back."""

    cursor: int
    presences: dict[str, ModernEntry]
    returned_id: int


@pytest.mark.postgres
@requires_postgres
def test_concurrent_writers_and_an_incremental_reader(
    realm, make_member, sent, settings, caplog
) -> None:
    # HTTP writes are not forced: keep their signals (row created, came online) unlimited.
    settings.PRESENCE_USER_LIMIT_FOR_EVENTS = 1000
    caplog.set_level(logging.INFO, logger=ACTIONS_LOGGER)
    viewer = make_member()
    members = [make_member() for _ in range(USERS)]
    http_members = [make_member() for _ in range(HTTP_USERS)]
    http_auth = [basic_auth(m.email, actions.do_create_api_key(m)[1]) for m in http_members]

    # Each writer reports every user once a round, in its own order. Round 0 is everyone's
    # first report, identical across writers: all of them race to insert every user's row.
    rng = random.Random(5432)
    plan = [
        [
            [
                (index, "active" if number == 0 else rng.choice(("active", "idle")))
                for index in rng.sample(range(USERS), USERS)
            ]
            for number in range(ROUNDS)
        ]
        for _writer in range(WRITERS)
    ]
    http_orders = [rng.sample(range(HTTP_USERS), HTTP_USERS) for _ in range(HTTP_WRITERS)]

    start_line = threading.Barrier(WRITERS + HTTP_WRITERS, timeout=TIME_LIMIT_SECS)
    writers_done = threading.Event()
    polls: list[Poll] = []

    def write_directly(writer: int) -> None:
        by_pk = RealmMember.objects.select_related("user", "realm").in_bulk([m.pk for m in members])
        mine = [by_pk[m.pk] for m in members]
        start_line.wait()
        deadline = time.monotonic() + TIME_LIMIT_SECS
        for number, reports in enumerate(plan[writer]):
            assert time.monotonic() < deadline, f"writer {writer}: time limit in round {number}"
            for index, status in reports:
                # Forced, so that every write that takes an update id signals it.
                actions.do_update_user_presence(
                    mine[index], log_time=round_time(number), status=status, force_send_update=True
                )

    def write_over_http(writer: int) -> None:
        client = APIClient()
        cursor = -1
        start_line.wait()
        # Idle creates the row (racing the other HTTP writers), active sets last_active, and
        # the second idle report is inside the throttle, so it writes nothing.
        for status in ("idle", "active", "idle"):
            for index in http_orders[writer]:
                response = client.post(
                    "/api/v1/users/me/presence",
                    {"status": status, "last_update_id": str(cursor)},
                    HTTP_AUTHORIZATION=http_auth[index],
                )
                assert response.status_code == 200, response.content
                body = response.json()
                assert sorted(body) == [
                    "msg",
                    "presence_last_update_id",
                    "presences",
                    "result",
                    "server_timestamp",
                ]
                assert (body["result"], body["msg"]) == ("success", "")
                assert body["presence_last_update_id"] >= cursor
                cursor = body["presence_last_update_id"]

    def read_incrementally() -> None:
        own_realm = Realm.objects.get(pk=realm.pk)
        own_viewer = RealmMember.objects.get(pk=viewer.pk)
        cursor = -1
        deadline = time.monotonic() + TIME_LIMIT_SECS
        for _poll in range(MAX_POLLS):
            # Read before polling, so the last poll starts after every write has committed.
            last = writers_done.is_set()
            presences, returned_id = get_presence_dict_by_realm(
                own_realm, own_viewer, slim_presence=True, last_update_id=cursor
            )
            polls.append(Poll(cursor, presences, returned_id))
            cursor = returned_id
            if last:
                return
            assert time.monotonic() < deadline, "reader: time limit"
            time.sleep(POLL_PAUSE_SECS)
        raise AssertionError("reader: poll limit reached before the writers finished")

    reader = Worker("reader", read_incrementally)
    writers = [Worker(f"writer-{w}", lambda w=w: write_directly(w)) for w in range(WRITERS)]
    writers += [Worker(f"http-{w}", lambda w=w: write_over_http(w)) for w in range(HTTP_WRITERS)]
    started = timezone.now()
    reader.start()
    for worker in writers:
        worker.start()
    try:
        finish(writers, time.monotonic() + TIME_LIMIT_SECS)
    finally:
        writers_done.set()
        finish([reader], time.monotonic() + TIME_LIMIT_SECS)
    finished = timezone.now()

    # One row per reporting user; the viewer never reported.
    rows = {row.user_id: row for row in UserPresence.objects.filter(realm=realm)}
    assert sorted(rows) == sorted(m.user_id for m in members + http_members)
    for row in rows.values():
        assert row.last_active_time is not None
        assert row.last_connected_time is not None
        assert row.last_connected_time >= row.last_active_time

    # The stored timestamps are the newest ones reported: nothing moved backwards.
    for index, member in enumerate(members):
        active_rounds = [
            number
            for writer_plan in plan
            for number, reports in enumerate(writer_plan)
            for reported, status in reports
            if reported == index and status == "active"
        ]
        row = rows[member.user_id]
        assert (row.last_active_time, row.last_connected_time) == (
            round_time(max(active_rounds)),
            round_time(ROUNDS - 1),
        )
    for member in http_members:
        row = rows[member.user_id]
        assert started <= row.last_active_time <= row.last_connected_time <= finished

    # Update ids: distinct, covered by the sequence, and each one accounted for, either by a
    # committed write (which signalled it) or by an insert that lost the race (a gap).
    row_ids = [row.last_update_id for row in rows.values()]
    assert len(set(row_ids)) == len(row_ids)
    sequence = PresenceSequence.objects.get(realm=realm).last_update_id
    assert sequence >= max(row_ids)
    writes = sorted((s for s in sent if s.update_id is not None), key=lambda s: s.update_id or 0)
    write_ids = [s.update_id or 0 for s in writes]
    assert len(set(write_ids)) == len(write_ids)
    assert min(write_ids) >= 1
    assert len(write_ids) + len(already_created_logs(caplog)) == sequence

    # Each user's writes, in id order, only move forwards and end in the stored row.
    for user_id, row in rows.items():
        history = [s for s in writes if s.user_id == user_id]
        for before, after in zip(history, history[1:], strict=False):
            assert before.presence["active_timestamp"] <= after.presence["active_timestamp"]
            assert before.presence["idle_timestamp"] <= after.presence["idle_timestamp"]
        assert history[-1].update_id == row.last_update_id
        assert history[-1].presence == entry(row.last_active_time, row.last_connected_time)

    # Every poll saw exactly a prefix of the writes in id order: all writes up to the id it
    # returned, none after. Seeing id N+1 before N had committed would break this.
    assert len(polls) >= 2
    seen: dict[str, ModernEntry] = {}
    seen_ids: dict[str, int] = {}
    for number, poll in enumerate(polls):
        assert poll.returned_id >= poll.cursor, f"poll {number}: the cursor went backwards"
        if number:
            assert poll.cursor == polls[number - 1].returned_id
        expected: dict[str, ModernEntry] = {}
        expected_ids: dict[str, int] = {}
        low = bisect.bisect_right(write_ids, poll.cursor)
        high = bisect.bisect_right(write_ids, poll.returned_id)
        for write in writes[low:high]:
            expected[str(write.user_id)] = write.presence
            expected_ids[str(write.user_id)] = write.update_id or 0
        assert poll.presences == expected, f"poll {number} after id {poll.cursor}"
        if poll.presences:
            assert poll.returned_id == max(expected_ids.values())
        seen.update(poll.presences)
        seen_ids.update(expected_ids)

    # The reader ends up with every row at its final update id and timestamps.
    assert polls[-1].returned_id == max(row_ids)
    assert seen == {
        str(user_id): entry(row.last_active_time, row.last_connected_time)
        for user_id, row in rows.items()
    }
    assert seen_ids == {str(user_id): row.last_update_id for user_id, row in rows.items()}


def wait_until_blocked(pids: list[int], count: int) -> None:
    """Wait (bounded) until ``count`` backends have registered their pids and all of them are
    waiting for a lock."""
    deadline = time.monotonic() + TIME_LIMIT_SECS
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM unnest(%s::int[]) AS pid "
                "WHERE cardinality(pg_blocking_pids(pid)) > 0",
                [list(pids)],
            )
            (blocked,) = cursor.fetchone()
            if len(pids) == count and blocked == count:
                return
            time.sleep(0.01)
    raise AssertionError(f"only {blocked} of {count} racers got to the lock in time")


@pytest.mark.postgres
@requires_postgres
def test_insert_race_makes_one_row_and_sends_one_signal(realm, make_member, sent, caplog) -> None:
    caplog.set_level(logging.INFO, logger=ACTIONS_LOGGER)
    hamlet = make_member()
    pids: list[int] = []

    def race() -> None:
        member = RealmMember.objects.select_related("user", "realm").get(pk=hamlet.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pids.append(cursor.fetchone()[0])
        actions.do_update_user_presence(member, log_time=T0, status="active")

    racers = [Worker(f"racer-{number}", race) for number in range(RACERS)]
    # Holding the realm's sequence row makes the race certain: every racer finds no row, then
    # queues for this lock with its insert. The first in line inserts; the others conflict.
    with transaction.atomic():
        PresenceSequence.objects.select_for_update().get(realm=realm)
        for racer in racers:
            racer.start()
        wait_until_blocked(pids, RACERS)
    finish(racers, time.monotonic() + TIME_LIMIT_SECS)

    row = UserPresence.objects.get(user_id=hamlet.user_id)
    assert (row.last_active_time, row.last_connected_time, row.last_update_id) == (T0, T0, 1)
    # Every racer took an id; the losers' ids are gaps that no row holds.
    assert PresenceSequence.objects.get(realm=realm).last_update_id == RACERS
    assert already_created_logs(caplog) == [
        f"UserPresence row already created for {hamlet.user_id}, returning."
    ] * (RACERS - 1)
    assert sent == [Sent(1, hamlet.user_id, entry(T0, T0), forced=False)]


def test_views_opt_out_of_atomic_requests(make_member, api_client_for, monkeypatch) -> None:
    """A host with ATOMIC_REQUESTS still gets its writes: the actions' durable transactions
    refuse to nest, so the views run outside the per-request transaction."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    hamlet = make_member()
    client = api_client_for(hamlet)

    response = client.post("/api/v1/users/me/presence", {"status": "active", "ping_only": "true"})
    assert response.json() == {"result": "success", "msg": ""}
    assert UserPresence.objects.get(user_id=hamlet.user_id).last_update_id == 1

    response = client.patch("/api/v1/settings", {"presence_enabled": "false"})
    assert response.json() == {"result": "success", "msg": ""}
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is False
