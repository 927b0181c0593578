"""Which requests django-presence's ASGI application treats as long polls."""

from __future__ import annotations

import pytest

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


def test_get_asgi_application():
    assert isinstance(get_asgi_application(), PresenceASGIHandler)
