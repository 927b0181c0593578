"""Zulip's error envelope for every error the API can return.

``{"result": "error", "msg": ..., "code": ...}`` plus any extra keys, with the right HTTP
status. ``zulip_exception_handler`` is the DRF exception handler the app's views use (set on
the views themselves, so the host's REST_FRAMEWORK settings are left alone); it also shapes
DRF's own errors: authentication, 404, 405, parse errors and throttling.
"""

from __future__ import annotations

import math
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

BAD_REQUEST = "BAD_REQUEST"
UNAUTHORIZED = "UNAUTHORIZED"
WWW_AUTHENTICATE = 'Basic realm="zulip"'


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


def zulip_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if not isinstance(exc, exceptions.APIException):
        return None  # an unexpected error: Django's own 500 handling applies

    # DRF's handler sets WWW-Authenticate and Retry-After from the exception.
    response = drf_exception_handler(exc, context)
    if response is None:  # pragma: no cover - DRF handles every APIException
        return None
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
        allowed = getattr(view, "allowed_methods", [])
        extra = {"allowed_methods": [m for m in allowed if m not in ("OPTIONS", "HEAD")]}
    elif isinstance(exc, exceptions.NotFound):
        msg = "Not Found"

    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    response.data = error_body(msg, code, **extra)
    return response


# API clients send no CSRF token: without the exemption their POSTs to an unknown path would
# get Django's HTML 403 page instead of this JSON 404.
@csrf_exempt
def api_not_found(request: HttpRequest, unmatched_path: str = "") -> JsonResponse:
    """Catch-all for paths under the include point that match no endpoint."""
    return JsonResponse(error_body("Not Found", BAD_REQUEST), status=status.HTTP_404_NOT_FOUND)
