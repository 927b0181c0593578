"""Helpers for the event-queue tests: register, GET events and DELETE events as the zulip
package sends them, and a fresh backend per test."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from django_presence.events import backends

from .api_utils import FORM, form, success

REGISTER_URL = "/api/v1/register"
EVENTS_URL = "/api/v1/events"


def log_entry(user_id: int, timestamp: int = 1700000000) -> dict[str, Any]:
    """A realm-log entry of a presence change, as the events receiver publishes it."""
    return {
        "user_id": user_id,
        "email": f"user{user_id}@example.com",
        "server_timestamp": timestamp + 0.5,
        "presence": {"active_timestamp": timestamp, "idle_timestamp": timestamp},
    }


def register(api_client: Any, /, **params: Any) -> Any:
    """POST register; like the zulip package, always with ``narrow=[]``."""
    params.setdefault("narrow", [])
    return api_client.post(REGISTER_URL, form(**params), content_type=FORM)


def register_queue(api_client: Any, /, **params: Any) -> str:
    params.setdefault("event_types", ["presence"])
    queue_id: str = success(register(api_client, **params))["queue_id"]
    return queue_id


def get_events(api_client: Any, /, **params: Any) -> Any:
    """GET events; JSON-encodes what is not a string, as the zulip package does."""
    return api_client.get(
        EVENTS_URL,
        {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in params.items()
        },
    )


def poll(api_client: Any, queue_id: str, last_event_id: int = -1) -> list[dict[str, Any]]:
    """The events a non-blocking poll returns right now."""
    body = success(
        get_events(api_client, queue_id=queue_id, last_event_id=last_event_id, dont_block=True)
    )
    assert set(body) == {"result", "msg", "events"}
    events: list[dict[str, Any]] = body["events"]
    return events


def delete_queue(api_client: Any, /, **params: Any) -> Any:
    return api_client.delete(EVENTS_URL, form(**params), content_type=FORM)


def use_fresh_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """New backend instances for the test: no queue or log survives from another test."""
    monkeypatch.setattr(backends, "_backends", {})


@contextmanager
def after(delay_secs: float, action: Callable[[], object]) -> Iterator[None]:
    """Run ``action`` in a thread ``delay_secs`` into the block (a long poll is waiting)."""
    timer = threading.Timer(delay_secs, action)
    timer.start()
    try:
        yield
    finally:
        timer.join(timeout=10)
