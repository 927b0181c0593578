"""``POST register`` (a DRF view like the others) and ``GET``/``DELETE events`` (an async
Django view: a long poll waits on the event loop instead of holding a thread; DRF has no async
views, so events_view runs the same DRF pipeline around its asynchronous part). Both are thin:
the work is in events.service.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response

from django_presence.exceptions import ZulipError
from django_presence.models import RealmMember
from django_presence.permissions import get_request_member
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

    # Served by events_view, not by DRF's dispatch: named for the method check and Allow.
    @property
    def allowed_methods(self) -> list[str]:
        return [*EVENTS_METHODS, "OPTIONS"]

    def admit(self) -> RealmMember:
        """Everything before the work, synchronously (it reads the database and the cache):
        the caller's membership, or the pipeline's error."""
        try:
            self.initial(self.request)
            return get_request_member(self.request)
        finally:
            _release_connections()

    def start(self, request: HttpRequest) -> None:
        self.args, self.kwargs = (), {}
        self.request = self.initialize_request(request)
        self.headers = self.default_response_headers

    def respond(self, response: Response) -> HttpResponse:
        """A rendered plain response: Django would otherwise render a DRF Response in a thread,
        one thread hop per answered long poll."""
        finalized = self.finalize_response(self.request, response)
        assert isinstance(finalized, Response)
        finalized.render()
        plain = HttpResponse(finalized.content, status=finalized.status_code)
        for header, value in finalized.items():
            plain[header] = value
        plain._has_been_logged = getattr(finalized, "_has_been_logged", False)  # type: ignore[attr-defined]
        return plain


def _release_connections() -> None:
    """A long poll has no more use for the database: unless the host keeps connections
    (CONN_MAX_AGE), release them now rather than when the poll ends, as Django's
    close_old_connections does then; a connection inside a transaction (tests) stays."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


async def _get_events(endpoint: EventsEndpoint, member: RealmMember) -> Response:
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
    endpoint = EventsEndpoint()
    endpoint.start(request)
    try:
        if request.method == "OPTIONS":
            response = endpoint.options(endpoint.request)
        else:
            member = await sync_to_async(endpoint.admit)()
            if request.method == "GET":
                response = await _get_events(endpoint, member)
            else:
                response = await _delete_queue(endpoint, member)
    except Exception as exc:  # every failure is an envelope; the handler logs unexpected ones
        response = endpoint.handle_exception(exc)
    return endpoint.respond(response)
