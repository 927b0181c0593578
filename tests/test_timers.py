"""django_presence.timers: the registry of due work and the sweeper that runs it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from django_presence import timers

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_registered_work_runs_with_the_moment_given(monkeypatch):
    monkeypatch.setattr(timers, "_works", {})
    seen = []
    timers.register(timers.FunctionWork("one", lambda now: seen.append(now) or 2))
    timers.register(timers.FunctionWork("one", lambda now: seen.append(("again", now)) or 3))
    assert timers.run_due_work(NOW) == {"one": 3}  # registered again: replaced
    assert seen == [("again", NOW)]


def test_late_is_more_than_two_seconds_after():
    assert not timers.is_late(NOW, NOW + timedelta(seconds=2))
    assert timers.is_late(NOW, NOW + timedelta(seconds=2.001))


def test_the_sweeper_survives_a_failing_sweep(monkeypatch, caplog):
    monkeypatch.setattr(timers, "RETRY_AFTER_FAILURE_SECS", 0.01)
    monkeypatch.setattr(timers, "SWEEP_INTERVAL_SECS", 0.01)
    sweeps: list[int] = []
    done = threading.Event()

    def sweep() -> None:
        sweeps.append(1)
        if len(sweeps) == 1:
            raise RuntimeError("the database is down")
        done.set()

    sweeper = timers.Sweeper(sweep=sweep)
    sweeper.start()
    assert done.wait(5)
    sweeper.stop()
    sweeper.join(5)
    assert not sweeper.is_alive()
    assert "Presence timers: a sweep failed; retrying" in caplog.text


def test_the_in_process_sweeper_starts_once_and_only_when_configured(monkeypatch, settings):
    started: list[object] = []

    class Recorded:
        def start(self) -> None:
            started.append(self)

    monkeypatch.setattr(timers, "Sweeper", Recorded)
    monkeypatch.setattr(timers, "_in_process", None)
    settings.PRESENCE_TIMERS_IN_PROCESS = False
    timers.start_in_process_sweeper()
    assert started == []
    settings.PRESENCE_TIMERS_IN_PROCESS = True
    timers.start_in_process_sweeper()
    timers.start_in_process_sweeper()
    assert len(started) == 1


@pytest.mark.django_db
def test_a_request_starts_the_in_process_sweeper(client, monkeypatch, settings):
    started: list[object] = []
    monkeypatch.setattr(timers, "_in_process", None)
    monkeypatch.setattr(timers.Sweeper, "start", lambda self: started.append(self))
    settings.PRESENCE_TIMERS_IN_PROCESS = True
    client.get("/api/v1/server_settings")
    assert len(started) == 1
