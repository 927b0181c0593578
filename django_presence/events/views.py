"""``POST register`` (a DRF view like the others) and ``GET``/``DELETE events`` (a plain async
Django view: a long poll waits on the event loop instead of holding a thread; DRF has no async
views). Both are thin: the work is in events.service.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from django_presence.authentication import ZulipApiKeyAuthentication, ZulipSessionAuthentication
from django_presence.exceptions import ZulipError, zulip_exception_handler
from django_presence.models import RealmMember
from django_presence.permissions import IsActiveRealmMember, get_request_member
from django_presence.views import ZULIP_FEATURE_LEVEL, ZULIP_VERSION, PresenceAPIView

from .serializers import DeleteQueueParams, GetEventsParams, RegisterParams
from .service import delete_event_queue, get_events, register_event_queue

EVENTS_METHODS = ("GET", "DELETE")


class RegisterQueueView(PresenceAPIView):
    """POST register: create an event queue and fetch the initial state."""

    def post(self, request: Request) -> Response:
        member = get_request_member(request)
        params = self.parse_params(request, RegisterParams)
        queue_id, state = register_event_queue(
            member,
            event_types=params.get("event_types"),
            fetch_event_types=params.get("fetch_event_types"),
            slim_presence=params["slim_presence"],
            simplified_presence_events=params["client_capabilities"].get(
                "simplified_presence_events", False
            ),
            history_limit_days=params.get("presence_history_limit_days"),
        )
        return self.success(
            {
                "queue_id": queue_id,
                "zulip_version": ZULIP_VERSION,
                "zulip_feature_level": ZULIP_FEATURE_LEVEL,
                "zulip_merge_base": ZULIP_VERSION,
                **state,
                "last_event_id": -1,
            }
        )


def authenticate_member(request: HttpRequest) -> RealmMember:
    """The caller, authenticated exactly as the DRF views do (API key, or session with CSRF
    checked on DELETE). Synchronous: it reads the database."""
    drf_request = Request(
        request, authenticators=[ZulipApiKeyAuthentication(), ZulipSessionAuthentication()]
    )
    try:
        if not IsActiveRealmMember().has_permission(drf_request, view=None):
            raise exceptions.NotAuthenticated()
        return get_request_member(drf_request)
    finally:
        _release_connections()


def _release_connections() -> None:
    """A long poll has no more use for the database: unless the host keeps connections
    (CONN_MAX_AGE), release them now rather than when the poll ends, as Django's
    close_old_connections does then; a connection inside a transaction (tests) stays."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _params(request: HttpRequest) -> dict[str, str]:
    """Query parameters, and for DELETE the form body the zulip package sends (which Django
    does not parse for that method); the body wins."""
    params = {key: request.GET[key] for key in request.GET}
    if request.method != "GET" and request.content_type == "application/x-www-form-urlencoded":
        body = QueryDict(request.body, encoding=request.encoding)
        params.update({key: body[key] for key in body})
    return params


def _success(data: dict[str, Any], ignored: list[str]) -> JsonResponse:
    body: dict[str, Any] = {"result": "success", "msg": "", **data}
    if ignored:
        body["ignored_parameters_unsupported"] = ignored
    return JsonResponse(body)


def _error(exc: exceptions.APIException) -> JsonResponse:
    """Zulip's error envelope, from the handler the DRF views use."""
    context: dict[str, Any] = {"view": SimpleNamespace(allowed_methods=list(EVENTS_METHODS))}
    drf_response = zulip_exception_handler(exc, context)
    assert drf_response is not None  # the handler answers every APIException
    response = JsonResponse(drf_response.data, status=drf_response.status_code)
    for header in ("WWW-Authenticate", "Retry-After"):
        if header in drf_response:
            response[header] = drf_response[header]
    return response


async def _get_events(member: RealmMember, params: dict[str, str]) -> JsonResponse:
    values, ignored = GetEventsParams.parse(params)
    # Checked after the types, as Zulip does, and without var_name: Zulip raises these itself.
    if "queue_id" not in values:
        raise ZulipError("Missing 'queue_id' argument")
    if "last_event_id" not in values:
        raise ZulipError("Missing 'last_event_id' argument")
    data = await get_events(
        member,
        queue_id=values["queue_id"],
        last_event_id=values["last_event_id"],
        dont_block=values["dont_block"],
    )
    return _success(data, ignored)


async def _delete_queue(member: RealmMember, params: dict[str, str]) -> JsonResponse:
    values, ignored = DeleteQueueParams.parse(params)
    await delete_event_queue(member, values["queue_id"])
    return _success({}, ignored)


# CSRF: exempt here, and enforced for session requests by the session authentication above,
# as DRF does; API-key requests carry no token. Not atomic: queue work is not database work.
@transaction.non_atomic_requests
@csrf_exempt
async def events_view(request: HttpRequest) -> JsonResponse:
    """GET events (long poll) and DELETE events."""
    try:
        # The method first, as Zulip does: a 405 needs no credentials.
        if request.method not in ("GET", "DELETE"):
            raise exceptions.MethodNotAllowed(str(request.method))
        member = await sync_to_async(authenticate_member)(request)
        if request.method == "GET":
            return await _get_events(member, _params(request))
        return await _delete_queue(member, _params(request))
    except exceptions.APIException as exc:
        return _error(exc)
