"""presence_status_changed: every change of a member's derived status, from writes and from time
alone (actions.do_announce_due_status_transitions, run by timers.py's sweeper), each once.

The tests sweep themselves, with a clock they choose (tests/settings.py turns the in-process
sweeper off); test_status_transitions_e2e.py runs the real sweeper in server processes."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_presence import actions, timers
from django_presence.models import UserPresence
from django_presence.signals import presence_status_changed

from .api_utils import frozen_now, recording

pytestmark = pytest.mark.django_db

THRESHOLD = 23  # seconds, as the end-to-end test sets it


@pytest.fixture(autouse=True)
def short_threshold(settings):
    settings.PRESENCE_OFFLINE_THRESHOLD_SECS = THRESHOLD
    settings.PRESENCE_PING_INTERVAL_SECS = 1
    settings.PRESENCE_UPDATE_MIN_FREQ_SECONDS = 2


@pytest.fixture
def start():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    with recording(presence_status_changed) as sent:
        yield sent


def at(start, seconds: float):
    return start + timedelta(seconds=seconds)


def report(member, moment, status="active"):
    """A report made at ``moment``, with the clock at ``moment`` too."""
    with frozen_now(moment):
        actions.do_update_user_presence(member, log_time=moment, status=status)


def sweep(moment) -> int:
    with frozen_now(moment):
        return actions.do_announce_due_status_transitions(moment)


def changes(sent: list[dict[str, Any]], start) -> list[tuple[str, str, float, bool]]:
    return [
        (s["old_status"], s["new_status"], (s["at"] - start).total_seconds(), s["late"])
        for s in sent
    ]


def test_active_then_idle_then_nothing(hamlet, start, sent, django_capture_on_commit_callbacks):
    """The issue's scenario: active, idle 3 s later, then silence: active -> idle when the active
    report is a threshold old, idle -> offline when the connection is."""
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, start)
        report(hamlet, at(start, 3), "idle")
        for second in range(0, 40):
            sweep(at(start, second + 0.5))
    assert changes(sent, start) == [
        ("offline", "active", 0, False),
        ("active", "idle", THRESHOLD, False),
        ("idle", "offline", THRESHOLD + 3, False),
    ]
    for signal in sent:
        assert (signal["member"], signal["user"], signal["realm"]) == (
            hamlet,
            hamlet.user,
            hamlet.realm,
        )
        assert signal["at"].tzinfo is not None
    row = UserPresence.objects.get(user_id=hamlet.user_id)
    assert (row.announced_status, row.status_changes_at) == ("offline", None)


def test_sweeping_again_announces_nothing_again(
    hamlet, start, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, start)
        assert sweep(at(start, THRESHOLD + 1)) == 1
        assert sweep(at(start, THRESHOLD + 1)) == 0
        assert sweep(at(start, THRESHOLD + 2)) == 0
    assert changes(sent, start) == [
        ("offline", "active", 0, False),
        ("active", "offline", THRESHOLD, False),
    ]


def test_transitions_that_fell_due_unswept_are_late(
    hamlet, othello, start, sent, django_capture_on_commit_callbacks
):
    """No sweeper ran (the server was down): the next sweep announces each, marked late."""
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, start)
        report(hamlet, at(start, 3), "idle")
        report(othello, at(start, 10))
    sent.clear()
    with frozen_now(at(start, 3600)), django_capture_on_commit_callbacks(execute=True):
        assert sweep(at(start, 3600)) == 3
    assert changes(sent, start) == [
        ("active", "idle", THRESHOLD, True),
        ("idle", "offline", THRESHOLD + 3, True),
        ("active", "offline", THRESHOLD + 10, True),
    ]


def test_a_write_announces_what_time_made_before_it(
    hamlet, start, sent, django_capture_on_commit_callbacks
):
    """A report after an unswept ageing: first the change time made, then the report's own."""
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, start)
        report(hamlet, at(start, THRESHOLD + 1.5))  # before any sweep
        assert sweep(at(start, THRESHOLD + 2)) == 0
    assert changes(sent, start) == [
        ("offline", "active", 0, False),
        ("active", "offline", THRESHOLD, False),
        ("offline", "active", THRESHOLD + 1.5, False),
    ]


def test_a_report_that_keeps_the_status_announces_nothing(
    hamlet, start, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for second in range(0, 20, 3):
            report(hamlet, at(start, second))
            sweep(at(start, second + 1))
    assert changes(sent, start) == [("offline", "active", 0, False)]
    row = UserPresence.objects.get(user_id=hamlet.user_id)
    assert row.status_changes_at == at(start, 18 + THRESHOLD)


def test_invisible_mode_is_a_transition_to_offline(
    hamlet, start, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, start)
        with frozen_now(at(start, 5)):
            actions.do_set_presence_enabled(hamlet, False, log_time=at(start, 5))
        assert sweep(at(start, 3600)) == 0
        with frozen_now(at(start, 3700)):
            actions.do_set_presence_enabled(hamlet, True, log_time=at(start, 3700))
    assert changes(sent, start) == [
        ("offline", "active", 0, False),
        ("active", "offline", 5, False),
        ("offline", "active", 3700, False),
    ]


def test_the_sweep_is_registered_due_work(hamlet, start, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, start)
        with frozen_now(at(start, THRESHOLD)):
            done = timers.run_due_work(at(start, THRESHOLD))
    assert done["presence status transitions"] == 1
    assert changes(sent, start)[-1] == ("active", "offline", THRESHOLD, False)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent sweepers need PostgreSQL's row locks"
)
def test_concurrent_sweepers_announce_each_transition_once(make_member, start):
    """Four sweepers at once on 120 due rows: each transition is announced exactly once."""
    members = [make_member() for _ in range(120)]
    for member in members:
        report(member, start)
    announced: list[int] = []
    lock = threading.Lock()

    def receiver(sender, member, **kwargs):
        with lock:
            announced.append(member.user_id)

    def sweeper() -> None:
        try:
            for _ in range(5):
                actions.do_announce_due_status_transitions(at(start, THRESHOLD + 1))
        finally:
            connection.close()

    presence_status_changed.connect(receiver)
    try:
        threads = [threading.Thread(target=sweeper) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        presence_status_changed.disconnect(receiver)
    assert sorted(announced) == sorted(member.user_id for member in members)
