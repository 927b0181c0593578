"""Every answer under the include point is Zulip's JSON envelope: unexpected exceptions (500),
an unreachable database or Redis (503 with Retry-After), bodies Django refuses (413 and 400),
and OPTIONS (204 with Allow), on the DRF endpoints and on the async events view alike, whatever
DEBUG says."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import redis
from django.core.exceptions import SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.test import APIClient

from django_presence.exceptions import zulip_exception_handler
from django_presence.models import UserPresence

from .api_utils import FORM, PRESENCE_URL, REALM_PRESENCE_URL, assert_error, form, success
from .events_utils import register_queue

pytestmark = pytest.mark.django_db

EVENTS_URL = "/api/v1/events"
INTERNAL_ERROR = ("Internal server error", 500, "INTERNAL_SERVER_ERROR")
DATABASE_DOWN = (
    "Service temporarily unavailable: the database cannot be reached",
    503,
    "SERVICE_UNAVAILABLE",
)
REDIS_DOWN = (
    "Service temporarily unavailable: the event server (Redis) cannot be reached",
    503,
    "SERVICE_UNAVAILABLE",
)


@pytest.fixture
def client(api_client_for, hamlet):
    return api_client_for(hamlet)


@pytest.fixture(params=[False, True], ids=["DEBUG off", "DEBUG on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def assert_logged(caplog: pytest.LogCaptureFixture, msg: str, error: type[Exception]) -> None:
    """The failure went to django.request, with its traceback, as Django logs its own 500s."""
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(msg)
    assert record.exc_info is not None and record.exc_info[0] is error


# What fails, and what the client gets --------------------------------------------------------


FAILURES: list[tuple[Exception, tuple[str, int, str]]] = [
    (RuntimeError("a bug"), INTERNAL_ERROR),
    (KeyError("missing"), INTERNAL_ERROR),
    (OperationalError("connection refused"), DATABASE_DOWN),
    (InterfaceError("connection already closed"), DATABASE_DOWN),
    (redis.exceptions.ConnectionError("Connection refused"), REDIS_DOWN),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), REDIS_DOWN),
]


def _expect(response: Any, expected: tuple[str, int, str]) -> None:
    msg, status, code = expected
    assert_error(response, msg, status=status, code=code)
    if status == 503:
        assert response["Retry-After"] == "5"
    else:
        assert "Retry-After" not in response


@pytest.mark.usefixtures("debug")
@pytest.mark.parametrize(("error", "expected"), FAILURES, ids=lambda value: repr(value)[:40])
def test_a_failing_read_answers_the_envelope(client, caplog, error, expected):
    with mock.patch("django_presence.views.read_realm_presence", side_effect=error):
        response = client.get(REALM_PRESENCE_URL)
    _expect(response, expected)
    assert_logged(caplog, f"{expected[0]}: {REALM_PRESENCE_URL}", type(error))


@pytest.mark.usefixtures("debug")
@pytest.mark.parametrize(("error", "expected"), FAILURES, ids=lambda value: repr(value)[:40])
def test_a_failing_poll_answers_the_envelope(client, caplog, error, expected):
    queue_id = register_queue(client)
    with mock.patch("django_presence.events.views.get_events", side_effect=error):
        response = client.get(EVENTS_URL, {"queue_id": queue_id, "last_event_id": "-1"})
    _expect(response, expected)
    assert_logged(caplog, f"{expected[0]}: {EVENTS_URL}", type(error))


@pytest.mark.parametrize(("error", "expected"), FAILURES[2:], ids=lambda value: repr(value)[:40])
def test_authentication_against_a_dead_database_answers_503(client, error, expected):
    """The first thing every request does is read the database."""
    with mock.patch(
        "django_presence.authentication.authenticate_api_key", side_effect=error
    ) as authenticate:
        for response in (client.get(REALM_PRESENCE_URL), client.get(EVENTS_URL)):
            _expect(response, expected)
    assert authenticate.call_count == 2


def test_a_failing_write_answers_500_and_writes_nothing(client):
    with mock.patch(
        "django_presence.actions._update_presence_row", side_effect=RuntimeError("boom")
    ):
        success(client.post(PRESENCE_URL, form(status="active"), content_type=FORM))
        # Past UPDATE_MIN_FREQ_SECONDS the report writes, and the write fails.
        later = mock.patch(
            "django_presence.actions._report_changes",
            return_value={"last_active_time": UserPresence.objects.get().last_active_time},
        )
        with later:
            response = client.post(PRESENCE_URL, form(status="active"), content_type=FORM)
    _expect(response, INTERNAL_ERROR)


# Bodies Django refuses ----------------------------------------------------------------------


def _delete_queue_with(client: Any, body: str) -> Any:
    return client.delete(EVENTS_URL, body, content_type=FORM)


@pytest.mark.parametrize(
    "send",
    [
        lambda client, body: client.post(PRESENCE_URL, body, content_type=FORM),
        lambda client, body: client.patch("/api/v1/settings", body, content_type=FORM),
        lambda client, body: client.post("/api/v1/register", body, content_type=FORM),
        _delete_queue_with,
    ],
    ids=["presence", "settings", "register", "delete events"],
)
def test_a_body_over_the_upload_limit_is_a_413_envelope(client, settings, send):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = send(client, form(status="active", padding="x" * 2000))
    assert_error(response, "Request body too large", status=413, code="REQUEST_TOO_LARGE")
    assert not UserPresence.objects.exists()


@pytest.mark.parametrize(
    ("send", "written"),
    [
        (lambda client, body: client.post(PRESENCE_URL, body, content_type=FORM), False),
        (lambda client, body: client.get(f"{REALM_PRESENCE_URL}?{body}"), False),
        (lambda client, body: client.get(f"{EVENTS_URL}?{body}"), False),
        (_delete_queue_with, False),
    ],
    ids=["form body", "query string", "events query string", "delete events body"],
)
def test_too_many_fields_is_a_400_envelope(client, settings, send, written):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    body = form(status="active", **{f"p{index}": "x" for index in range(10)})
    assert_error(send(client, body), "Too many parameters in the request")
    assert UserPresence.objects.exists() is written


# OPTIONS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        (PRESENCE_URL, "POST"),
        ("/api/v1/users/5/presence", "GET"),
        (REALM_PRESENCE_URL, "GET"),
        ("/api/v1/settings", "PATCH"),
        ("/api/v1/server_settings", "GET"),
        ("/api/v1/register", "POST"),
        (EVENTS_URL, "DELETE, GET"),
        ("/api/v1/directory/members", "GET"),
    ],
)
@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "with a key"])
def test_options_answers_204_with_the_methods(api_client_for, hamlet, url, allow, authenticated):
    client = api_client_for(hamlet) if authenticated else APIClient()
    response = client.options(url)
    assert response.status_code == 204, response.content
    assert response["Allow"] == allow
    assert response.content == b""


@pytest.mark.parametrize(
    ("call", "allowed"),
    [
        (lambda client: client.put(PRESENCE_URL), ["POST"]),
        (lambda client: client.post(EVENTS_URL), ["GET", "DELETE"]),
    ],
)
def test_405_names_the_methods_in_allow_too(client, call, allowed):
    response = call(client)
    assert_error(response, "Method Not Allowed", status=405, allowed_methods=allowed)
    assert response["Allow"] == ", ".join(sorted(allowed))


def test_successes_carry_no_allow_header(client):
    """DRF adds Allow to every answer; Zulip does not."""
    response = client.get(REALM_PRESENCE_URL)
    success(response)
    assert "Allow" not in response


# The events endpoints count against the rate limit ------------------------------------------


@pytest.mark.usefixtures("rate_limited")
@pytest.mark.parametrize(
    "request_once",
    [
        lambda client, queue_id: client.get(
            EVENTS_URL, {"queue_id": queue_id, "last_event_id": "-1", "dont_block": "true"}
        ),
        lambda client, queue_id: client.delete(
            EVENTS_URL, form(queue_id=queue_id), content_type=FORM
        ),
    ],
    ids=["GET events", "DELETE events"],
)
def test_events_requests_count_against_the_rate(client, request_once: Callable[..., Any]):
    queue_id = register_queue(client)  # the first of two requests a minute
    assert request_once(client, queue_id).status_code in (200, 400)
    response = request_once(client, queue_id)
    assert_error(
        response,
        "API usage exceeded rate limit",
        status=429,
        code="RATE_LIMIT_HIT",
        **{"retry-after": 60.0},
    )
    assert response["Retry-After"] == "60"


# The handler on DRF's and Django's own errors -------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (Http404("gone"), 404, {"msg": "Not Found", "code": "BAD_REQUEST"}),
        (exceptions.NotFound(), 404, {"msg": "Not Found", "code": "BAD_REQUEST"}),
        (
            exceptions.ValidationError({"field": ["first", "second"]}),
            400,
            {"msg": "first", "code": "BAD_REQUEST"},
        ),
        (exceptions.ValidationError([]), 400, {"msg": "", "code": "BAD_REQUEST"}),
        (exceptions.ValidationError({}), 400, {"msg": "", "code": "BAD_REQUEST"}),
        (
            exceptions.AuthenticationFailed("Bad credentials"),
            401,
            {"msg": "Bad credentials", "code": "UNAUTHORIZED"},
        ),
        (
            SuspiciousOperation("Invalid HTTP_HOST header"),
            400,
            {"msg": "Bad request", "code": "BAD_REQUEST"},
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_the_handler_shapes_every_error(error, status, body):
    response = zulip_exception_handler(error, {})
    assert response.status_code == status
    assert response.data == {"result": "error", **body}
    assert ("WWW-Authenticate" in response) is (status == 401)
