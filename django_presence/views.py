"""The HTTP endpoints: thin adapters from a request to one action or query.

Routes (relative to the include point, no trailing slashes) are in urls.py. Every response is
Zulip's envelope: HTTP 200 ``{"result": "success", "msg": "", ...}`` or an error from
exceptions.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import __version__
from .access import can_access
from .actions import (
    ActionRefused,
    check_set_presence_enabled,
    check_update_user_status,
    update_user_presence,
)
from .authentication import ZulipApiKeyAuthentication, ZulipSessionAuthentication
from .conf import presence_settings
from .exceptions import ZulipError, allow_header, zulip_exception_handler
from .formatting import format_single_user_entry
from .models import RealmMember
from .permissions import IsActiveRealmMember, get_request_member
from .queries import (
    get_member_by_id,
    get_member_by_id_or_email,
    get_presence_for_user,
    get_user_status,
    loaded_update_id,
    member_is_deactivated,
    read_realm_presence,
)
from .renderers import OrjsonRenderer, presences_fragment
from .serializers import (
    NoParams,
    Params,
    UnreadParams,
    UpdatePresenceParams,
    UpdateSettingsParams,
    UpdateStatusForUserParams,
    UpdateStatusParams,
    ZulipParamsSerializer,
)
from .throttling import PresenceRateThrottle
from .user_status import UNSET, format_user_status

# The Zulip version this app reports, and the highest API feature level whose presence and
# user-status behaviour it implements in full: 497 (Zulip 12.0), the single-user presence
# answer with modern and legacy fields. docs/api.md lists what that covers.
ZULIP_VERSION = f"12.0-django-presence-{__version__}"
ZULIP_FEATURE_LEVEL = 497


class AlwaysJSON(BaseContentNegotiation):
    """Zulip answers JSON whatever the Accept header says."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        content_type = request.content_type.split(";")[0].strip()
        return next((p for p in parsers if p.media_type == content_type), None)

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


_SHARED_INSTANCES: dict[tuple[type[Any], tuple[Any, ...]], list[Any]] = {}


class PresenceAPIView(APIView):
    """Base of the app's views: Zulip-style auth, envelope, rate limit and parameters."""

    authentication_classes = [
        ZulipApiKeyAuthentication,
        ZulipSessionAuthentication,
    ]
    permission_classes = [IsActiveRealmMember]
    throttle_classes = [PresenceRateThrottle]
    parser_classes = [FormParser, MultiPartParser]
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = AlwaysJSON

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """Exempt from the host's ATOMIC_REQUESTS: the actions run their own short durable
        transactions, which refuse to nest in an outer one (docs/concurrency.md)."""
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def get_exception_handler(self) -> Any:
        return zulip_exception_handler

    # DRF makes a new parser, authenticator and permission object per request; none of these
    # classes keeps state, so each view shares one set (the throttles, which do, stay per
    # request). Keyed by the classes too, should a host or a test change them.
    def _shared(self, classes: Sequence[Any]) -> list[Any]:
        key = (type(self), tuple(classes))
        instances = _SHARED_INSTANCES.get(key)
        if instances is None:
            instances = _SHARED_INSTANCES[key] = [component() for component in classes]
        return instances

    def get_parsers(self) -> list[Any]:
        return self._shared(self.parser_classes)

    def get_authenticators(self) -> list[Any]:
        return self._shared(self.authentication_classes)

    def get_permissions(self) -> list[Any]:
        return self._shared(self.permission_classes)

    @property
    def default_response_headers(self) -> dict[str, str]:
        # DRF adds Allow to every answer; Zulip sends it with 405 and OPTIONS only.
        return {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Zulip picks the view by method before it authenticates: a method the path does not
        # serve is a 405 even without credentials (DRF would answer 401 first), and OPTIONS
        # is answered to anyone.
        if str(request.method).upper() not in self.allowed_methods:
            raise exceptions.MethodNotAllowed(str(request.method))
        if request.method != "OPTIONS":
            super().initial(request, *args, **kwargs)

    def options(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        """Zulip's answer: 204 and the methods, instead of DRF's metadata."""
        return Response(status=204, headers={"Allow": allow_header(self.allowed_methods)})

    def parse_params(self, request: Request, params_class: type[ZulipParamsSerializer]) -> Params:
        """Validate query and body parameters (the body wins)."""
        params = {key: request.query_params[key] for key in request.query_params}
        if isinstance(request.data, Mapping):  # form and multipart bodies only
            params.update({str(key): value for key, value in request.data.items()})
        return params_class.parse(params)

    def success(self, params: Params, data: dict[str, Any] | None = None) -> Response:
        """Zulip's success envelope, naming the parameters the request sent in vain."""
        body: dict[str, Any] = {"result": "success", "msg": "", **(data or {})}
        if params.ignored:
            body["ignored_parameters_unsupported"] = params.ignored
        return Response(body)


class UpdatePresenceView(PresenceAPIView):
    """POST users/me/presence: report the caller's status, get the realm's presence back."""

    def post(self, request: Request) -> Response:
        member = get_request_member(request)
        if member.is_bot:
            raise ZulipError("This endpoint does not accept bot requests.")
        params = self.parse_params(request, UpdatePresenceParams)
        written_id = update_user_presence(
            member,
            log_time=timezone.now(),
            status=params["status"],
            new_user_input=params["new_user_input"],
        )
        if params["ping_only"]:
            return self.success(params)
        last_update_id = params.get("last_update_id")
        read = read_realm_presence(
            member.realm,
            member,
            # Sending last_update_id at all asks for the modern format.
            slim_presence=params["slim_presence"] or last_update_id is not None,
            last_update_id=last_update_id,
            history_limit_days=params.get("history_limit_days"),
            newest_update_id=_newest(loaded_update_id(member.realm), written_id),
        )
        presences, last_update_id = read.consume(presences_fragment)
        return self.success(
            params,
            {
                "presences": presences,
                "server_timestamp": time.time(),
                "presence_last_update_id": last_update_id,
            },
        )


def _newest(*update_ids: int | None) -> int | None:
    """The newest update id this request knows of: the realm's sequence as authentication
    loaded it, or the request's own write."""
    known = [update_id for update_id in update_ids if update_id is not None]
    return max(known) if known else None


class UserPresenceView(PresenceAPIView):
    """GET users/<user_id_or_email>/presence: one user's presence, with no time window."""

    def get(self, request: Request, user_id_or_email: str) -> Response:
        viewer = get_request_member(request)
        params = self.parse_params(request, NoParams)
        realm = viewer.realm
        target = get_member_by_id_or_email(realm, user_id_or_email)
        if target is None:
            raise ZulipError("No such user")
        if target.is_bot:
            raise ZulipError("Presence is not supported for bot users.")
        if not can_access(viewer, target):
            raise ZulipError("Insufficient permission")
        timestamps = get_presence_for_user(realm, target)
        if timestamps is None:
            raise ZulipError(f"No presence data for {user_id_or_email}")
        presence = format_single_user_entry(
            *timestamps,
            now=timezone.now(),
            activity_offset_secs=presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS,
        )
        return self.success(params, {"server_timestamp": time.time(), "presence": presence})


class RealmPresenceView(PresenceAPIView):
    """GET realm/presence: the realm's presence in the legacy format, default window."""

    def get(self, request: Request) -> Response:
        viewer = get_request_member(request)
        params = self.parse_params(request, NoParams)
        read = read_realm_presence(viewer.realm, viewer, slim_presence=False)
        presences, _last_update_id = read.consume(presences_fragment)
        return self.success(params, {"presences": presences, "server_timestamp": time.time()})


class SettingsView(PresenceAPIView):
    """PATCH settings: presence_enabled (invisible mode); other settings are ignored."""

    def patch(self, request: Request) -> Response:
        member = get_request_member(request)
        params = self.parse_params(request, UpdateSettingsParams)
        if "presence_enabled" in params:
            with refusals_as_errors():
                check_set_presence_enabled(member, params["presence_enabled"])
        return self.success(params)


@contextmanager
def refusals_as_errors() -> Iterator[None]:
    """An action's refusal (ActionRefused) answered as Zulip's 400, with its message."""
    try:
        yield
    except ActionRefused as exc:
        raise ZulipError(str(exc)) from None


def _status_arguments(params: Params) -> dict[str, Any]:
    """The status parameters a request passed, as check_update_user_status takes them."""
    names = ("away", "status_text", "emoji_name", "emoji_code", "reaction_type")
    arguments = {name: params[name] for name in names if name in params}
    arguments["scheduled_end_time"] = params.get("scheduled_end_time", UNSET)
    return arguments


def _access_user_by_id(caller: RealmMember, user_id: int, *, for_admin: bool) -> RealmMember:
    """Zulip's access_user_by_id for statuses: the member of the caller's realm with that user
    id, in Zulip's order of refusals (no such user, a bot, deactivated; then, to read, the one
    access rule, and to write, an administrator or owner caller)."""
    target = get_member_by_id(caller.realm, user_id)
    if target is None or target.is_bot:
        raise ZulipError("No such user")
    if member_is_deactivated(target):
        raise ZulipError("User is deactivated")
    if for_admin:
        allowed = caller.role <= RealmMember.Role.ADMINISTRATOR
    else:
        allowed = can_access(caller, target)
    if not allowed:
        raise ZulipError("Insufficient permission")
    return target


class UpdateOwnStatusView(PresenceAPIView):
    """POST users/me/status: change the caller's status (humans only)."""

    def post(self, request: Request) -> Response:
        member = get_request_member(request)
        if member.is_bot:
            raise ZulipError("This endpoint does not accept bot requests.")
        params = self.parse_params(request, UpdateStatusParams)
        with refusals_as_errors():
            check_update_user_status(member, acting_user=member.user, **_status_arguments(params))
        return self.success(params)


class UserStatusView(PresenceAPIView):
    """GET users/<user_id>/status: a user's status. POST: an administrator (or owner) changes
    it; bots with those roles too (Zulip 12.0, feature level 473)."""

    def get(self, request: Request, user_id: int) -> Response:
        viewer = get_request_member(request)
        params = self.parse_params(request, UnreadParams)
        target = _access_user_by_id(viewer, user_id, for_admin=False)
        status = format_user_status(
            get_user_status(viewer.realm, target),
            presence_enabled=target.presence_enabled,
            now=timezone.now(),
            for_owner=target.user_id == viewer.user_id,
        )
        return self.success(params, {"status": status})

    def post(self, request: Request, user_id: int) -> Response:
        caller = get_request_member(request)
        params = self.parse_params(request, UpdateStatusForUserParams)
        target = _access_user_by_id(caller, user_id, for_admin=True)
        with refusals_as_errors():
            check_update_user_status(target, acting_user=caller.user, **_status_arguments(params))
        return self.success(params)


class ServerSettingsView(PresenceAPIView):
    """GET server_settings: what Zulip clients read before anything else. No authentication:
    clients send their credentials here too, and they must not be checked."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    def get(self, request: Request) -> Response:
        params = self.parse_params(request, NoParams)
        realm_url = request.build_absolute_uri("/").rstrip("/")
        return self.success(
            params,
            {
                "zulip_version": ZULIP_VERSION,
                "zulip_feature_level": ZULIP_FEATURE_LEVEL,
                "zulip_merge_base": ZULIP_VERSION,
                "push_notifications_enabled": False,
                "is_incompatible": False,
                "email_auth_enabled": False,
                "require_email_format_usernames": True,
                "authentication_methods": {"password": False, "dev": False},
                "external_authentication_methods": [],
                "realm_uri": realm_url,
                "realm_url": realm_url,
                "realm_name": presence_settings.SERVER_NAME,
                "realm_icon": "",
                "realm_description": "",
                "realm_web_public_access_enabled": False,
                "server_presence_ping_interval_seconds": presence_settings.PING_INTERVAL_SECS,
                "server_presence_offline_threshold_seconds": (
                    presence_settings.OFFLINE_THRESHOLD_SECS
                ),
            },
        )
