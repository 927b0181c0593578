"""``POST register`` (a DRF view like the others) and ``GET``/``DELETE events`` (an async
Django view: a long poll waits on the event loop instead of holding a thread; DRF has no async
views, so events_view runs the same DRF pipeline around its asynchronous part). Both are thin:
the work is in events.service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response

from django_presence.authentication import (
    RememberedApiKeyAuthentication,
    ZulipSessionAuthentication,
)
from django_presence.exceptions import ZulipError
from django_presence.models import RealmMember
from django_presence.permissions import get_request_member
from django_presence.renderers import OrjsonRenderer
from django_presence.views import ZULIP_FEATURE_LEVEL, ZULIP_VERSION, PresenceAPIView

from .serializers import DeleteQueueParams, GetEventsParams, RegisterParams
from .service import delete_event_queue, get_events, register_event_queue, sees_only_some_users
from .worker import release_connections

EVENTS_METHODS = ("GET", "DELETE")

T = TypeVar("T")


class RunSync(Protocol):
    """How the view runs its synchronous steps: in asgiref's thread (``in_thread``), or in the
    events worker thread when django-presence's ASGI application serves the poll
    (events/worker.py)."""

    def __call__(self, function: Callable[[], T], /) -> Awaitable[T]: ...


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
            params,
            {
                "queue_id": queue_id,
                "zulip_version": ZULIP_VERSION,
                "zulip_feature_level": ZULIP_FEATURE_LEVEL,
                "zulip_merge_base": ZULIP_VERSION,
                **state,
                "last_event_id": -1,
            },
        )


class EventsEndpoint(PresenceAPIView):
    """The request pipeline of ``GET`` and ``DELETE events``: the one every endpoint uses
    (method check, authentication, permission, rate limit, parameters, envelope, errors), run by
    events_view around its asynchronous part. A long poll counts once against
    PRESENCE_API_RATE, when it starts."""

    authentication_classes = [RememberedApiKeyAuthentication, ZulipSessionAuthentication]

    # Served by events_view, not by DRF's dispatch: named for the method check and Allow.
    @property
    def allowed_methods(self) -> list[str]:
        return [*EVENTS_METHODS, "OPTIONS"]

    def admit(self) -> tuple[RealmMember, bool]:
        """Everything before the work, synchronously (it reads the database and the cache):
        the caller's membership and whether access limits what they see, or the pipeline's
        error. The caller releases the database connections."""
        self.initial(self.request)
        member = get_request_member(self.request)
        return member, sees_only_some_users(member)

    def start(self, request: HttpRequest) -> None:
        self.args, self.kwargs = (), {}
        self.request = self.initialize_request(request)
        self.headers = self.default_response_headers

    def respond(self, response: Response) -> HttpResponse:
        """A rendered plain response: Django would otherwise render a DRF Response in a thread,
        one thread hop per answered long poll. A success is the envelope as orjson renders it,
        with the headers DRF would give it (none but the content type): finalizing a DRF
        response costs more than the rest of an answered poll."""
        if response.status_code == 200 and not response.exception:
            content = OrjsonRenderer().render(response.data)
            return HttpResponse(content, content_type=OrjsonRenderer.media_type)
        finalized = self.finalize_response(self.request, response)
        assert isinstance(finalized, Response)
        finalized.render()
        plain = HttpResponse(finalized.content, status=finalized.status_code)
        for header, value in finalized.items():
            plain[header] = value
        plain._has_been_logged = getattr(finalized, "_has_been_logged", False)  # type: ignore[attr-defined]
        return plain


async def in_thread(function: Callable[[], T]) -> T:
    """asgiref's thread (that of the outer synchronous context, if any), releasing the database
    connections after: a long poll has no more use for them once it waits."""

    def run() -> T:
        try:
            return function()
        finally:
            release_connections()

    return await sync_to_async(run)()


async def _get_events(endpoint: EventsEndpoint, member: RealmMember, limited: bool) -> Response:
    params = endpoint.parse_params(endpoint.request, GetEventsParams)
    # Checked after the types, as Zulip does, and without var_name: Zulip raises these itself.
    if "queue_id" not in params:
        raise ZulipError("Missing 'queue_id' argument")
    if "last_event_id" not in params:
        raise ZulipError("Missing 'last_event_id' argument")
    data = await get_events(
        member,
        queue_id=params["queue_id"],
        last_event_id=params["last_event_id"],
        dont_block=params["dont_block"],
        limited=limited,
    )
    return endpoint.success(params, data)


async def _delete_queue(endpoint: EventsEndpoint, member: RealmMember) -> Response:
    params = endpoint.parse_params(endpoint.request, DeleteQueueParams)
    await delete_event_queue(member, params["queue_id"])
    return endpoint.success(params)


# CSRF: exempt here, and enforced for session requests by the session authentication above,
# as DRF does; API-key requests carry no token. Not atomic: queue work is not database work.
@transaction.non_atomic_requests
@csrf_exempt
async def events_view(request: HttpRequest) -> HttpResponse:
    """GET events (long poll) and DELETE events."""
    return await serve_events(request, run_sync=in_thread)


async def serve_events(request: HttpRequest, *, run_sync: RunSync) -> HttpResponse:
    """The events endpoint, whoever routed the request to it: Django's URL resolver
    (events_view) or django-presence's ASGI application (events/asgi.py)."""
    endpoint = EventsEndpoint()
    endpoint.start(request)
    try:
        if request.method == "OPTIONS":
            response = endpoint.options(endpoint.request)
        else:
            member, limited = await run_sync(endpoint.admit)
            if request.method == "GET":
                response = await _get_events(endpoint, member, limited)
            else:
                response = await _delete_queue(endpoint, member)
    except Exception as exc:  # every failure is an envelope; the handler logs unexpected ones
        response = endpoint.handle_exception(exc)
    return endpoint.respond(response)
