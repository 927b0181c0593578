"""Helpers for tests that speak the presence API the way Zulip clients do: form-encoded bodies
whose non-string values are JSON-encoded, and Zulip's response envelope."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from unittest import mock
from urllib.parse import urlencode

from django.dispatch import Signal
from django.utils import timezone

from django_presence.formatting import datetime_to_timestamp

FORM = "application/x-www-form-urlencoded"
PRESENCE_URL = "/api/v1/users/me/presence"
REALM_PRESENCE_URL = "/api/v1/realm/presence"
SETTINGS_URL = "/api/v1/settings"


def form(**params: Any) -> str:
    """A form body as the zulip client sends it: strings raw, everything else as JSON."""
    return urlencode(
        {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in params.items()
        }
    )


class MemberClients:
    """One API client per member, authenticated with a key made on first use."""

    def __init__(self, api_client_for: Callable[[Any], Any]) -> None:
        self._api_client_for = api_client_for
        self._clients: dict[int, Any] = {}

    def __call__(self, member: Any) -> Any:
        if member.user_id not in self._clients:
            self._clients[member.user_id] = self._api_client_for(member)
        return self._clients[member.user_id]


def post_presence(api_client: Any, /, **params: Any) -> Any:
    # Positional-only: "client" is itself a parameter of the endpoint.
    return api_client.post(PRESENCE_URL, form(**params), content_type=FORM)


def user_presence_url(user_id_or_email: object) -> str:
    return f"/api/v1/users/{user_id_or_email}/presence"


def now_seconds() -> datetime:
    """The current time on a whole second, so wire timestamps compare exactly."""
    return timezone.now().replace(microsecond=0)


def ts(moment: datetime) -> int:
    """A moment as the API sends it."""
    return datetime_to_timestamp(moment)


def legacy_entry(status: str, timestamp: int) -> dict[str, Any]:
    """A legacy realm-wide entry: "website" client, never pushable."""
    return {
        "aggregated": {"client": "website", "status": status, "timestamp": timestamp},
        "website": {
            "client": "website",
            "status": status,
            "timestamp": timestamp,
            "pushable": False,
        },
    }


def success(response: Any) -> dict[str, Any]:
    """The body of a Zulip success response, after checking its status and envelope."""
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    assert list(body)[:2] == ["result", "msg"]
    assert (body["result"], body["msg"]) == ("success", "")
    return body


def assert_error(
    response: Any, msg: str, *, status: int = 400, code: str = "BAD_REQUEST", **extra: Any
) -> None:
    """The response is exactly Zulip's error envelope with this status, message and code."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"result": "error", "msg": msg, "code": code, **extra}


def without_server_timestamp(body: dict[str, Any]) -> dict[str, Any]:
    """The body minus server_timestamp (a float of the real clock), for exact comparison."""
    assert isinstance(body.pop("server_timestamp"), float)
    return body


@contextmanager
def frozen_now(moment: datetime) -> Iterator[None]:
    """Make django.utils.timezone.now() return ``moment``, as the views and queries see it."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


@contextmanager
def recording(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    """Record the keyword arguments of every send of ``signal`` inside the block."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        sent.append(kwargs)

    signal.connect(receiver)
    try:
        yield sent
    finally:
        signal.disconnect(receiver)
