"""Which requests django-presence's ASGI application treats as long polls."""

from __future__ import annotations

import gc

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from django_presence.conf import DEFAULTS
from django_presence.events.asgi import PresenceASGIHandler, get_asgi_application, is_long_poll


def scope(method: str, path: str, **extra: str) -> dict[str, str]:
    return {"type": "http", "method": method, "path": path, **extra}


@pytest.mark.parametrize(
    ("request_scope", "long_poll"),
    [
        (scope("GET", "/api/v1/events"), True),
        (scope("GET", "/site/api/v1/events", root_path="/site"), True),
        (scope("DELETE", "/api/v1/events"), False),
        (scope("POST", "/api/v1/register"), False),
        (scope("GET", "/api/v1/realm/presence"), False),
        (scope("GET", "/api/v1/events/more"), False),  # the app's JSON 404
        (scope("GET", "/admin/"), False),
        (scope("GET", "/nowhere"), False),
        ({"type": "websocket", "path": "/api/v1/events"}, False),
    ],
)
def test_only_get_events_is_a_long_poll(request_scope, long_poll):
    assert is_long_poll(request_scope) is long_poll


@pytest.fixture
def python_gc_threshold():
    """Whatever a test sets, the process gets its thresholds back."""
    threshold = gc.get_threshold()
    yield threshold
    gc.set_threshold(*threshold)


def test_get_asgi_application(python_gc_threshold):
    assert isinstance(get_asgi_application(), PresenceASGIHandler)
    assert gc.get_threshold() == DEFAULTS["PRESENCE_EVENTS_GC_THRESHOLD"]


def test_get_asgi_application_can_leave_the_gc_alone(python_gc_threshold, settings):
    settings.PRESENCE_EVENTS_GC_THRESHOLD = None
    gc.set_threshold(700, 10, 10)
    get_asgi_application()
    assert gc.get_threshold() == (700, 10, 10)
    settings.PRESENCE_EVENTS_GC_THRESHOLD = (1000, 5, 5)
    get_asgi_application()
    assert gc.get_threshold() == (1000, 5, 5)


async def _request(application: PresenceASGIHandler, method: str, path: str) -> tuple[int, bytes]:
    """One request through the ASGI application, as an ASGI server would make it."""
    communicator = ApplicationCommunicator(
        application,
        {
            **scope(method, path),
            "headers": [],
            "query_string": b"",
            "server": ("127.0.0.1", 80),
            "scheme": "http",
            "root_path": "",
        },
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = await communicator.receive_output(10)
    return start["status"], body["body"]


def test_other_requests_are_handled_as_django_does():
    """Long polls are answered by real server processes in test_events_e2e.py."""
    async_to_sync(_answered)()


async def _answered() -> None:
    status, body = await _request(get_asgi_application(), "GET", "/api/v1/server_settings")
    assert status == 200
    assert b'"result":"success"' in body
