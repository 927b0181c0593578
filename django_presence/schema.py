"""OpenAPI 3 description of the API, for drf-spectacular (the ``openapi`` extra).

Importing this module registers drf-spectacular extensions that describe the app's views, its
parameter fields and its two authentication schemes without touching the views themselves;
``postprocess_schema`` is a postprocessing hook for ``GET``/``DELETE events``, a plain async
Django view that drf-spectacular cannot see, and for the JSON ``user_ids`` parameter of
``GET directory/members``. A host imports the module where it mounts the schema view and lists
the hook in ``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]`` (docs/api.md, "OpenAPI schema").

Responses are written out by hand: they are Zulip's shapes, built by formatting.py and the
views, not by serializers. Parameters come from the views' own parameter serializers.
"""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
    OpenApiViewExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers

from .directory import MAX_USER_IDS, DirectoryParams
from .filters import DIRECTORY_STATUSES, DirectoryFilterSet
from .models import RealmMember
from .serializers import (
    UpdatePresenceParams,
    UpdateSettingsParams,
    UpdateStatusForUserParams,
    UpdateStatusParams,
)
from .user_status import REACTION_TYPES


class UpdatePresenceRequest(UpdatePresenceParams):
    """POST users/me/presence as documented: with the status values the view accepts, which
    UpdatePresenceParams checks itself to answer with Zulip's message."""

    status = serializers.ChoiceField(choices=["active", "idle"])  # type: ignore[assignment]


class DirectoryRequest(DirectoryParams):
    """GET directory/members' paging parameters as documented; ``user_ids`` is written by
    postprocess_schema, as Zulip's OpenAPI writes a JSON list, and the filters come from
    DirectoryFilterSet (directory_filter_parameters)."""

    user_ids = None  # type: ignore[assignment]


def directory_filter_parameters() -> list[OpenApiParameter]:
    """One query parameter per filter of DirectoryFilterSet, from its declaration: the values
    it accepts, its maximum length and its help text."""
    parameters = []
    for name, declared in DirectoryFilterSet.base_filters.items():
        field = declared.field
        schema: dict[str, Any] = {"type": "string"}
        choices = getattr(field, "choices", None)
        if choices:
            schema["enum"] = [str(value) for value, _label in choices if value != ""]
        if getattr(field, "max_length", None):
            schema["maxLength"] = field.max_length
        parameters.append(
            OpenApiParameter(
                name, schema, OpenApiParameter.QUERY, required=False, description=field.help_text
            )
        )
    return parameters


Schema = dict[str, Any]

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def _object(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _success(properties: Schema | None = None, required: tuple[str, ...] = ()) -> Schema:
    """Zulip's success envelope around an endpoint's own keys."""
    return _object(
        {
            "result": {"type": "string", "enum": ["success"]},
            "msg": {"type": "string"},
            "ignored_parameters_unsupported": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Parameters sent that this endpoint does not use.",
            },
            **(properties or {}),
        },
        ("result", "msg", *required),
    )


ERROR = _object(
    {
        "result": {"type": "string", "enum": ["error"]},
        "msg": {"type": "string"},
        "code": {"type": "string", "example": "BAD_REQUEST"},
        "var_name": {"type": "string", "description": "With REQUEST_VARIABLE_MISSING."},
        "allowed_methods": {
            "type": "array",
            "items": {"type": "string"},
            "description": "With HTTP 405.",
        },
        "retry-after": {"type": "number", "description": "With RATE_LIMIT_HIT (HTTP 429)."},
        "queue_id": {"type": "string", "description": "With BAD_EVENT_QUEUE_ID."},
        "reason": {"type": "string", "description": "With CSRF_FAILED."},
    },
    ("result", "msg", "code"),
)

ERROR_DESCRIPTIONS = {
    400: "A parameter or request error (code BAD_REQUEST, REQUEST_VARIABLE_MISSING, ...).",
    401: "No or bad credentials, or a deactivated user or realm.",
    403: "Not a member of any organization, or a session request without its CSRF token.",
    405: "The path exists, the method does not.",
    415: "A body that is not form-encoded or multipart.",
    429: "Rate limit hit; the Retry-After header says when to try again.",
}


def _responses(success: Schema, errors: tuple[int, ...]) -> dict[int, OpenApiResponse]:
    responses = {200: OpenApiResponse(response=success, description="Success.")}
    for status in errors:
        responses[status] = OpenApiResponse(response=ERROR, description=ERROR_DESCRIPTIONS[status])
    return responses


AUTHENTICATED_ERRORS = (400, 401, 403, 405, 429)
# The endpoints that read a request body.
BODY_ERRORS = (*AUTHENTICATED_ERRORS, 415)

TIMESTAMP = {"type": "integer", "description": "UNIX time, in seconds."}
LEGACY_STATUS = {"type": "string", "enum": ["active", "idle", "offline"]}
MODERN_PRESENCES = {
    "type": "object",
    "description": "By user id.",
    "additionalProperties": _object(
        {"active_timestamp": TIMESTAMP, "idle_timestamp": TIMESTAMP},
        ("active_timestamp", "idle_timestamp"),
    ),
}
LEGACY_CLIENT_ENTRY = _object(
    {
        "client": {"type": "string"},
        "status": LEGACY_STATUS,
        "timestamp": TIMESTAMP,
        "pushable": {"type": "boolean"},
    },
    ("status", "timestamp"),
)
LEGACY_PRESENCES = {
    "type": "object",
    "description": "By email: per client name, and 'aggregated'.",
    "additionalProperties": {"type": "object", "additionalProperties": LEGACY_CLIENT_ENTRY},
}
PRESENCES = {
    "description": "Modern (by user id) when last_update_id or slim_presence was sent, else "
    "legacy (by email).",
    # anyOf: an empty dict is both.
    "anyOf": [MODERN_PRESENCES, LEGACY_PRESENCES],
}
SERVER_TIMESTAMP = {"type": "number", "description": "UNIX time, with a fraction."}
UPDATE_ID = {"type": "integer", "description": "The realm's newest presence update id."}


class ZulipApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "django_presence.authentication.ZulipApiKeyAuthentication"
    name = "zulipApiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> Schema:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "The member's API email as user name and API key as password.",
        }


class ZulipSessionScheme(OpenApiAuthenticationExtension):
    target_class = "django_presence.authentication.ZulipSessionAuthentication"
    name = "sessionCookie"

    def get_security_definition(self, auto_schema: AutoSchema) -> Schema:
        # The host's SESSION_COOKIE_NAME, read when the schema is generated.
        from django.conf import settings

        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}


class JsonFieldSchema(OpenApiSerializerFieldExtension):
    """Zulip's parameters are JSON-encoded form values: a string on the wire."""

    target_class = "django_presence.serializers.JsonField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> Schema:
        type_name = self.target.type_name
        schema: Schema = {"type": "string", "description": f"JSON-encoded: {type_name}."}
        if type_name == "a boolean":
            schema["enum"] = ["true", "false"]
        elif type_name == "an integer":
            schema["pattern"] = r"^-?[0-9]+$"
        return schema


def _with_schema(target: type[Any], **methods: Any) -> type[Any]:
    """A subclass of a view with its methods described; the view itself is left as it is."""
    return extend_schema_view(**methods)(type(target.__name__, (target,), {}))


class UpdatePresenceSchema(OpenApiViewExtension):
    target_class = "django_presence.views.UpdatePresenceView"

    def view_replacement(self) -> type[Any]:
        success = _success(
            {
                "presences": PRESENCES,
                "server_timestamp": SERVER_TIMESTAMP,
                "presence_last_update_id": UPDATE_ID,
            }
        )
        post = extend_schema(
            operation_id="update-presence",
            summary="Report the caller's presence; get the realm's back",
            description="With ping_only=true the answer has no presence data.",
            request={FORM_MEDIA_TYPE: UpdatePresenceRequest},
            responses=_responses(success, BODY_ERRORS),
        )
        return _with_schema(self.target, post=post)


class UserPresenceSchema(OpenApiViewExtension):
    target_class = "django_presence.views.UserPresenceView"

    def view_replacement(self) -> type[Any]:
        legacy = _object({"status": LEGACY_STATUS, "timestamp": TIMESTAMP}, ("status", "timestamp"))
        presence = _object(
            {
                "active_timestamp": TIMESTAMP,
                "idle_timestamp": TIMESTAMP,
                "aggregated": legacy,
                "website": legacy,
            },
            ("active_timestamp", "idle_timestamp", "aggregated", "website"),
        )
        get = extend_schema(
            operation_id="get-user-presence",
            summary="One user's presence, by user id or email",
            description="Zulip 12.0 (feature level 497): the modern timestamps beside the "
            "legacy entries.",
            request=None,
            responses=_responses(
                _success(
                    {"server_timestamp": SERVER_TIMESTAMP, "presence": presence},
                    ("server_timestamp", "presence"),
                ),
                AUTHENTICATED_ERRORS,
            ),
        )
        return _with_schema(self.target, get=get)


class RealmPresenceSchema(OpenApiViewExtension):
    target_class = "django_presence.views.RealmPresenceView"

    def view_replacement(self) -> type[Any]:
        success = _success(
            {"presences": LEGACY_PRESENCES, "server_timestamp": SERVER_TIMESTAMP},
            ("presences", "server_timestamp"),
        )
        get = extend_schema(
            operation_id="get-presence",
            summary="The realm's presence, in the legacy format",
            request=None,
            responses=_responses(success, AUTHENTICATED_ERRORS),
        )
        return _with_schema(self.target, get=get)


class SettingsSchema(OpenApiViewExtension):
    target_class = "django_presence.views.SettingsView"

    def view_replacement(self) -> type[Any]:
        patch = extend_schema(
            operation_id="update-settings",
            summary="Invisible mode (presence_enabled); other settings are ignored",
            request={FORM_MEDIA_TYPE: UpdateSettingsParams},
            responses=_responses(_success(), BODY_ERRORS),
        )
        return _with_schema(self.target, patch=patch)


USER_STATUS = _object(
    {
        "away": {"type": "boolean", "enum": [True], "description": "Invisible mode."},
        "status_text": {"type": "string"},
        "emoji_name": {"type": "string"},
        "emoji_code": {"type": "string"},
        "reaction_type": {"type": "string", "enum": list(REACTION_TYPES)},
        "scheduled_end_time": {
            **TIMESTAMP,
            "description": "When the status ends, UNIX seconds; to its owner only (an extension).",
        },
    }
)


class UpdateOwnStatusSchema(OpenApiViewExtension):
    target_class = "django_presence.views.UpdateOwnStatusView"

    def view_replacement(self) -> type[Any]:
        post = extend_schema(
            operation_id="update-status",
            summary="Change the caller's status",
            description="Only the parameters passed change. scheduled_end_time is an "
            "extension (docs/status.md).",
            request={FORM_MEDIA_TYPE: UpdateStatusParams},
            responses=_responses(_success(), BODY_ERRORS),
        )
        return _with_schema(self.target, post=post)


class UserStatusSchema(OpenApiViewExtension):
    target_class = "django_presence.views.UserStatusView"

    def view_replacement(self) -> type[Any]:
        # The path's int converter takes digits only: anything else is another path (404).
        user_id = OpenApiParameter(
            "user_id",
            {"type": "integer", "minimum": 0},
            OpenApiParameter.PATH,
            description="The member's user id.",
        )
        get = extend_schema(
            operation_id="get-user-status",
            summary="A user's status",
            parameters=[user_id],
            request=None,
            responses=_responses(
                _success({"status": USER_STATUS}, ("status",)), AUTHENTICATED_ERRORS
            ),
        )
        post = extend_schema(
            operation_id="update-status-for-user",
            summary="Change a user's status (organization administrators)",
            parameters=[user_id],
            request={FORM_MEDIA_TYPE: UpdateStatusForUserParams},
            responses=_responses(_success(), BODY_ERRORS),
        )
        return _with_schema(self.target, get=get, post=post)


class ServerSettingsSchema(OpenApiViewExtension):
    target_class = "django_presence.views.ServerSettingsView"

    def view_replacement(self) -> type[Any]:
        string, integer, boolean = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
        keys: Schema = {
            "zulip_version": string,
            "zulip_feature_level": integer,
            "zulip_merge_base": string,
            "push_notifications_enabled": boolean,
            "is_incompatible": boolean,
            "email_auth_enabled": boolean,
            "require_email_format_usernames": boolean,
            "authentication_methods": {"type": "object", "additionalProperties": boolean},
            "external_authentication_methods": {"type": "array", "items": {"type": "object"}},
            "realm_uri": string,
            "realm_url": string,
            "realm_name": string,
            "realm_icon": string,
            "realm_description": string,
            "realm_web_public_access_enabled": boolean,
            "server_presence_ping_interval_seconds": integer,
            "server_presence_offline_threshold_seconds": integer,
        }
        get = extend_schema(
            operation_id="get-server-settings",
            summary="What a client reads first; no authentication",
            request=None,
            responses=_responses(_success(keys, tuple(keys)), (400, 405)),
        )
        return _with_schema(self.target, get=get)


class RegisterQueueSchema(OpenApiViewExtension):
    target_class = "django_presence.events.views.RegisterQueueView"

    def view_replacement(self) -> type[Any]:
        from .events.serializers import RegisterParams

        integer = {"type": "integer"}
        success = _success(
            {
                "queue_id": {"type": "string"},
                "zulip_version": {"type": "string"},
                "zulip_feature_level": integer,
                "zulip_merge_base": {"type": "string"},
                "last_event_id": integer,
                "presences": PRESENCES,
                "server_timestamp": SERVER_TIMESTAMP,
                "presence_last_update_id": UPDATE_ID,
                "realm_presence_disabled": {"type": "boolean"},
                "server_presence_ping_interval_seconds": integer,
                "server_presence_offline_threshold_seconds": integer,
                "event_queue_longpoll_timeout_seconds": integer,
                "user_status": {
                    "type": "object",
                    "description": "By user id: the statuses with something to show.",
                    "additionalProperties": USER_STATUS,
                },
            },
            ("queue_id", "last_event_id"),
        )
        post = extend_schema(
            operation_id="register-queue",
            summary="Create an event queue and fetch the initial state",
            request={FORM_MEDIA_TYPE: RegisterParams},
            responses=_responses(success, BODY_ERRORS),
        )
        return _with_schema(self.target, post=post)


DIRECTORY_MEMBER = _object(
    {
        "user_id": {"type": "integer"},
        "email": {"type": "string"},
        "full_name": {"type": "string"},
        "role": {"type": "integer", "enum": list(RealmMember.Role.values)},
        "status": {"type": "string", "enum": list(DIRECTORY_STATUSES)},
        "active_timestamp": {**TIMESTAMP, "nullable": True},
        "idle_timestamp": {**TIMESTAMP, "nullable": True},
        "user_status": {
            **USER_STATUS,
            "description": "The member's status as GET users/<user_id>/status shows it to the "
            "caller.",
        },
    },
    (
        "user_id",
        "email",
        "full_name",
        "role",
        "status",
        "active_timestamp",
        "idle_timestamp",
        "user_status",
    ),
)


class DirectoryMembersSchema(OpenApiViewExtension):
    target_class = "django_presence.directory.DirectoryMembersView"

    def view_replacement(self) -> type[Any]:
        integer = {"type": "integer"}
        keys: Schema = {
            "count": {"type": "integer", "description": "Members matching the filters."},
            "page": integer,
            "page_size": integer,
            "server_timestamp": {
                **SERVER_TIMESTAMP,
                "description": "UNIX time, with a fraction: when the statuses were computed.",
            },
            "server_presence_offline_threshold_seconds": integer,
            "presence_last_update_id": {
                "type": "integer",
                "description": "The organization's presence update id before the members were "
                "read: POST users/me/presence with it as last_update_id returns the presence "
                "written since.",
            },
            "members": {"type": "array", "items": DIRECTORY_MEMBER},
        }
        get = extend_schema(
            operation_id="get-directory-members",
            summary="The team directory: the realm's members with their status",
            description="An extension outside Zulip's API. Lists the active, non-bot members "
            "the caller may see, filtered and paged; statuses are computed at server_timestamp "
            "with the offline threshold: active if server_timestamp - active_timestamp is under "
            "it, else idle if server_timestamp - idle_timestamp is, else offline; never with no "
            "presence data.",
            parameters=[DirectoryRequest, *directory_filter_parameters()],
            request=None,
            responses=_responses(_success(keys, tuple(keys)), AUTHENTICATED_ERRORS),
        )
        return _with_schema(self.target, get=get)


# Zulip's OpenAPI writes a JSON-encoded list parameter by its decoded shape, as content
# application/json; drf-spectacular writes parameters with a schema only.
USER_IDS_PARAMETER: Schema = {
    "name": "user_ids",
    "in": "query",
    "required": False,
    "description": f"JSON-encoded: a list of at most {MAX_USER_IDS} user ids. Only these users "
    "are listed; ids of users the listing leaves out match no one.",
    "content": {
        "application/json": {
            "schema": {"type": "array", "items": {"type": "integer"}, "maxItems": MAX_USER_IDS}
        }
    },
}


HEARTBEAT_EVENT = _object(
    {"type": {"type": "string", "enum": ["heartbeat"]}, "id": {"type": "integer"}},
    ("type", "id"),
)
PRESENCE_EVENT = _object(
    {
        "type": {"type": "string", "enum": ["presence"]},
        "id": {"type": "integer"},
        "presences": MODERN_PRESENCES,
        "user_id": {"type": "integer"},
        "email": {"type": "string"},
        "server_timestamp": SERVER_TIMESTAMP,
        "presence": {"type": "object", "additionalProperties": LEGACY_CLIENT_ENTRY},
    },
    ("type", "id"),
)
USER_STATUS_EVENT = _object(
    {
        "type": {"type": "string", "enum": ["user_status"]},
        "id": {"type": "integer"},
        "user_id": {"type": "integer"},
        "away": {"type": "boolean"},
        "status_text": {"type": "string"},
        "emoji_name": {"type": "string"},
        "emoji_code": {"type": "string"},
        "reaction_type": {"type": "string", "enum": list(REACTION_TYPES)},
        "scheduled_end_time": {
            **TIMESTAMP,
            "nullable": True,
            "description": "To the user's own queues only, when the end time moved (an extension).",
        },
    },
    ("type", "id", "user_id"),
)


def _form_parameter(name: str, schema: Schema, description: str, *, required: bool) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _events_operations() -> Schema:
    """GET and DELETE events, written as drf-spectacular would render them."""
    errors = {
        str(status): {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ERROR}},
        }
        for status in AUTHENTICATED_ERRORS
    }
    security: list[Schema] = [{"zulipApiKey": []}, {"sessionCookie": []}]
    queue_id = {"type": "string"}
    get_success = _success(
        {
            "events": {
                "type": "array",
                "items": {"oneOf": [HEARTBEAT_EVENT, PRESENCE_EVENT, USER_STATUS_EVENT]},
            },
            "queue_id": queue_id,
        },
        ("events",),
    )
    return {
        "get": {
            "operationId": "get-events",
            "summary": "Long-poll an event queue",
            "description": "Answers at once with new events, else waits and answers with a "
            "heartbeat; dont_block=true never waits.",
            "tags": ["events"],
            "parameters": [
                _form_parameter("queue_id", queue_id, "From register.", required=True),
                _form_parameter(
                    "last_event_id",
                    {"type": "string", "pattern": r"^-?[0-9]+$"},
                    "JSON-encoded: an integer. Acknowledges events up to this id.",
                    required=True,
                ),
                _form_parameter(
                    "dont_block",
                    {"type": "string", "enum": ["true", "false"]},
                    "JSON-encoded: a boolean.",
                    required=False,
                ),
            ],
            "security": security,
            "responses": {
                "200": {
                    "description": "Success.",
                    "content": {"application/json": {"schema": get_success}},
                },
                **errors,
            },
        },
        "delete": {
            "operationId": "delete-queue",
            "summary": "Delete an event queue",
            "tags": ["events"],
            "parameters": [_form_parameter("queue_id", queue_id, "From register.", required=True)],
            "security": security,
            "responses": {
                "200": {
                    "description": "Success.",
                    "content": {"application/json": {"schema": _success()}},
                },
                **errors,
            },
        },
    }


def _encode_default(schema: Schema, description: str) -> None:
    """The default of a JSON-encoded value as sent on the wire (``"false"``; drf-spectacular
    renders the Python value)."""
    encoded = description.startswith("JSON-encoded")
    if encoded and "default" in schema and not isinstance(schema["default"], str):
        schema["default"] = json.dumps(schema["default"])


def postprocess_schema(result: Schema, generator: Any, **kwargs: Any) -> Schema:
    """drf-spectacular postprocessing hook: adds ``GET``/``DELETE events`` where the app's URLs
    are mounted and the ``user_ids`` parameter of ``GET directory/members``, and writes the
    defaults of JSON-encoded parameters as sent on the wire."""
    paths = result.setdefault("paths", {})
    paths[reverse("django_presence:events")] = _events_operations()
    # Absent when the host's own hooks leave the endpoint out.
    directory = paths.get(reverse("django_presence:directory-members"), {}).get("get")
    if directory is not None:
        directory["parameters"] = sorted(
            [*directory.get("parameters", []), USER_IDS_PARAMETER], key=lambda p: str(p["name"])
        )
    for component in result.get("components", {}).get("schemas", {}).values():
        for field in component.get("properties", {}).values():
            _encode_default(field, str(field.get("description", "")))
    for operations in paths.values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if "schema" in parameter:
                    _encode_default(parameter["schema"], str(parameter.get("description", "")))
    return result
