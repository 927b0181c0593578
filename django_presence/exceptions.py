"""Zulip's error envelope for every error the API can return.

``{"result": "error", "msg": ..., "code": ...}`` plus any extra keys, with the right HTTP
status. ``zulip_exception_handler`` is the DRF exception handler the app's views use (set on
the views themselves, so the host's REST_FRAMEWORK settings are left alone); it also shapes
DRF's own errors (authentication, 404, 405, parse errors, throttling), Django's refusals of a
request (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields), a backing service that is
down (503 with Retry-After) and any other exception (500), whatever DEBUG says
(docs/security.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    REDIS_OUTAGES: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
except ImportError:  # pragma: no cover - the redis extra is not installed: no Redis to be down
    REDIS_OUTAGES = ()

BAD_REQUEST = "BAD_REQUEST"
UNAUTHORIZED = "UNAUTHORIZED"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
WWW_AUTHENTICATE = 'Basic realm="zulip"'

# What a 503 asks clients to wait: long enough for a database failover or a Redis restart to be
# under way, short enough that a client's next ping finds the service back.
SERVICE_UNAVAILABLE_RETRY_AFTER_SECS = 5

# Where unexpected errors are logged: Django's own logger for failed requests, so the host's
# logging (mail_admins, Sentry) sees them as it sees its own views' errors.
request_logger = logging.getLogger("django.request")


class ZulipError(exceptions.APIException):
    """An API error with Zulip's code and optional extra body keys (default: 400 BAD_REQUEST)."""

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        msg: str,
        *,
        code: str = BAD_REQUEST,
        http_status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=msg, code=code)
        self.msg = msg
        self.zulip_code = code
        self.extra = extra or {}
        if http_status is not None:
            self.status_code = http_status


class ZulipAuthenticationFailed(exceptions.AuthenticationFailed):
    """A 401 with Zulip's code (UNAUTHORIZED, USER_DEACTIVATED, REALM_DEACTIVATED)."""

    def __init__(self, msg: str, code: str = UNAUTHORIZED) -> None:
        super().__init__(detail=msg, code=code)
        self.zulip_code = code


def served_methods(methods: Iterable[str]) -> list[str]:
    """The methods an endpoint serves, as Zulip names them: OPTIONS and HEAD are implicit."""
    return [method for method in methods if method not in ("OPTIONS", "HEAD")]


def allow_header(methods: Iterable[str]) -> str:
    """The Allow header of a 405 or an OPTIONS answer: the served methods, sorted, as Zulip."""
    return ", ".join(sorted(served_methods(methods)))


def error_body(msg: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"result": "error", "msg": msg, "code": code, **extra}


def _first_message(detail: Any) -> str:
    """The first human message of a DRF error detail (a string, list or dict of them)."""
    if isinstance(detail, dict):
        detail = next(iter(detail.values()), "")
    if isinstance(detail, list):
        detail = detail[0] if detail else ""
        return _first_message(detail)
    return str(detail)


def zulip_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if not isinstance(exc, exceptions.APIException):
        exc = api_exception_for(exc, context.get("request"))

    # DRF's handler sets WWW-Authenticate and Retry-After from the exception.
    response = drf_exception_handler(exc, context)
    assert response is not None  # DRF's handler answers every APIException
    code = BAD_REQUEST
    extra: dict[str, Any] = {}
    msg = _first_message(exc.detail)

    if isinstance(exc, ZulipError):
        code, extra, msg = exc.zulip_code, exc.extra, exc.msg
    elif isinstance(exc, ZulipAuthenticationFailed):
        code = exc.zulip_code
    elif isinstance(exc, exceptions.NotAuthenticated):
        code = UNAUTHORIZED
        msg = "Not logged in: API authentication or user session required"
    elif isinstance(exc, exceptions.AuthenticationFailed):
        code = UNAUTHORIZED
    elif isinstance(exc, exceptions.Throttled):
        code = "RATE_LIMIT_HIT"
        msg = "API usage exceeded rate limit"
        wait = float(getattr(exc, "wait", None) or 0)
        extra = {"retry-after": wait}
        response["Retry-After"] = str(math.ceil(wait))
    elif isinstance(exc, exceptions.MethodNotAllowed):
        msg = "Method Not Allowed"
        view = context.get("view")
        allowed = served_methods(getattr(view, "allowed_methods", []))
        extra = {"allowed_methods": allowed}
        response["Allow"] = allow_header(allowed)
    elif isinstance(exc, exceptions.NotFound):
        msg = "Not Found"

    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(SERVICE_UNAVAILABLE_RETRY_AFTER_SECS)
    if response.status_code >= 500:
        # Logged with its traceback by api_exception_for: Django need not log it again.
        response._has_been_logged = True  # type: ignore[attr-defined]
    response.data = error_body(msg, code, **extra)
    return response


class ServiceUnavailable(ZulipError):
    """503: a backing service (the database, Redis) cannot be reached right now."""

    def __init__(self, service: str) -> None:
        super().__init__(
            f"Service temporarily unavailable: {service} cannot be reached",
            code=SERVICE_UNAVAILABLE,
            http_status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )


def api_exception_for(exc: Exception, request: Any = None) -> exceptions.APIException:
    """The API error to answer for an exception that is not one: Django's refusals of the
    request as 413 or 400, an unreachable database or Redis as 503, anything else as 500. The
    503s and 500s are logged with the traceback."""
    if isinstance(exc, RequestDataTooBig):
        return ZulipError("Request body too large", code="REQUEST_TOO_LARGE", http_status=413)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return ZulipError("Too many parameters in the request")
    if isinstance(exc, SuspiciousOperation):
        return ZulipError("Bad request")
    if isinstance(exc, OperationalError | InterfaceError):
        error: ZulipError = ServiceUnavailable("the database")
    elif REDIS_OUTAGES and isinstance(exc, REDIS_OUTAGES):
        error = ServiceUnavailable("the event server (Redis)")
    else:
        error = ZulipError("Internal server error", code=INTERNAL_SERVER_ERROR, http_status=500)
    path = getattr(request, "path", "")
    request_logger.error(
        "%s: %s",
        error.msg,
        path,
        exc_info=exc,
        # Django's AdminEmailHandler reads these.
        extra={"status_code": error.status_code, "request": getattr(request, "_request", request)},
    )
    return error


# API clients send no CSRF token: without the exemption their POSTs to an unknown path would
# get Django's HTML 403 page instead of this JSON 404.
@csrf_exempt
def api_not_found(request: HttpRequest, unmatched_path: str = "") -> JsonResponse:
    """Catch-all for paths under the include point that match no endpoint."""
    return JsonResponse(error_body("Not Found", BAD_REQUEST), status=status.HTTP_404_NOT_FOUND)
