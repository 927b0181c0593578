"""Input validation: Zulip's parameters are form or query values, JSON-encoded and strictly typed
(``ping_only=1`` is not a boolean). The errors about parameters come from here, with Zulip's
exact messages, but for the directory's filters (filters.py) and the checks Zulip makes in the
view itself (``queue_id`` and ``last_event_id`` of GET events)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .exceptions import ZulipError
from .status import REPORTED_STATUSES
from .user_status import STATUS_TEXT_MAX_LENGTH

# Zulip decodes parameters with pydantic's JSON parser, which refuses a non-empty array or object
# nested deeper than this; the standard library's recursive parser would instead overflow the
# stack on a few kilobytes of "[".
MAX_JSON_DEPTH = 200
# Outside strings: an empty container (a leaf, which that parser does not count), or a bracket.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{][ \t\n\r]*[\]}]|[\[{]|[\]}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # the common case, without a scan
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def _has_surrogate(value: Any) -> bool:
    """Whether a decoded value holds a lone surrogate (an escaped pair decodes to one
    character), in a string or an object key."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
    return False


def decode_json(text: Any) -> Any:
    """A parameter's JSON value, as Zulip's parser reads it; ValueError if it is not valid JSON.

    Like that parser (and unlike the standard library's), it refuses nesting deeper than
    MAX_JSON_DEPTH and lone surrogates (``"\\ud800"``, which no response could echo in UTF-8
    either). NaN and Infinity are JSON to both."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    if _too_deep(text):
        raise ValueError("nested too deeply")
    try:
        value = json.loads(text)
    except RecursionError:  # only if the stack was already deep: the scan bounds the nesting
        raise ValueError("nested too deeply") from None
    if ("\\u" in text or _SURROGATE.search(text)) and _has_surrogate(value):
        raise ValueError("lone surrogate")
    return value


def _is_json_type(value: Any, json_type: type) -> bool:
    # bool is a subclass of int, and never an integer on the wire.
    return isinstance(value, json_type) and not (json_type is int and isinstance(value, bool))


class JsonField(serializers.Field):  # type: ignore[type-arg]
    """A JSON-encoded value of one Python type."""

    json_type: ClassVar[type] = object
    type_name: ClassVar[str] = "value"

    def to_internal_value(self, data: Any) -> Any:
        try:
            value = decode_json(data)
        except ValueError:
            raise serializers.ValidationError(
                f"{self.field_name} is not valid JSON", code="invalid"
            ) from None
        if not _is_json_type(value, self.json_type):
            raise serializers.ValidationError(
                f"{self.field_name} is not {self.type_name}", code="invalid"
            )
        return value

    def to_representation(self, value: Any) -> Any:
        return value


# What ZulipParamsSerializer's quick path makes of a value it cannot vouch for.
SLOW = object()
_PLAIN_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


class JsonBooleanField(JsonField):
    json_type = bool
    type_name = "a boolean"

    def quick_value(self, text: str) -> Any:
        """The value to_internal_value gives ``text``, when ``text`` is one of the spellings
        clients send; SLOW for anything else (to_internal_value decides, and words the error)."""
        return {"true": True, "false": False}.get(text, SLOW)


class JsonIntegerField(JsonField):
    json_type = int
    type_name = "an integer"

    def quick_value(self, text: str) -> Any:
        """As JsonBooleanField.quick_value: a plain JSON integer is what json.loads reads."""
        return int(text) if _PLAIN_INTEGER.fullmatch(text) else SLOW


class JsonListField(JsonField):
    """A JSON list; with ``item_type``, of that type only, as Zulip checks lists
    (``user_ids[1] is not an integer``)."""

    json_type = list
    type_name = "a list"
    item_type: ClassVar[type | None] = None
    item_type_name: ClassVar[str] = ""

    def to_internal_value(self, data: Any) -> list[Any]:
        value: list[Any] = super().to_internal_value(data)
        if self.item_type is not None:
            for index, item in enumerate(value):
                if not _is_json_type(item, self.item_type):
                    raise serializers.ValidationError(
                        f"{self.field_name}[{index}] is not {self.item_type_name}", code="invalid"
                    )
        return value


class JsonStringListField(JsonListField):
    item_type = str
    item_type_name = "a string"


class JsonIntegerListField(JsonListField):
    item_type = int
    item_type_name = "an integer"


class RawStringField(serializers.CharField):
    """A string sent as is (not JSON-quoted), kept exactly as sent."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)
        # Zulip echoes any value back in its own error ("Invalid status: ..."), NUL included.
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]

    def quick_value(self, text: str) -> Any:
        """As JsonBooleanField.quick_value: any string but one with a surrogate (which the
        remaining validator refuses) is kept as sent."""
        return SLOW if _SURROGATE.search(text) else text


# The fields whose quick_value gives exactly what their validation gives.
QUICK_FIELD_CLASSES = (JsonBooleanField, JsonIntegerField, RawStringField)


@dataclass(frozen=True)
class Params:
    """A request's validated parameters (read like a dict), and the names it sent that the
    endpoint does not know: its answer lists them in ``ignored_parameters_unsupported``."""

    values: dict[str, Any]
    ignored: list[str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


class ZulipParamsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Validates request parameters and raises the first error, in field order, as Zulip does.

    Parameters the endpoint does not know are not errors: ``unknown_parameters`` lists them for
    the response's ``ignored_parameters_unsupported``."""

    # Accepted everywhere and never reported as ignored (Zulip's client-name override).
    silently_accepted: ClassVar[frozenset[str]] = frozenset({"client"})

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> Params:
        # A multipart body's files come with its fields, but are no parameters: Zulip reads
        # request.POST, which has none.
        strings = {name: value for name, value in params.items() if isinstance(value, str)}
        quick = cls._parse_quickly(strings)
        if quick is not None:
            return quick
        serializer = cls(data=strings)
        if not serializer.is_valid():
            raise cls._first_error(serializer.errors)
        known = set(serializer.fields) | cls.silently_accepted
        unknown = sorted(name for name in strings if name not in known)
        return Params(dict(serializer.validated_data), unknown)

    @classmethod
    def _parse_quickly(cls, params: dict[str, str]) -> Params | None:
        """What DRF's validation gives parameters whose every value the field's
        ``quick_value`` vouches for (the usual request: a long poll answers in a fraction of
        the time a serializer takes); None for anything else, which DRF validates (and words
        the errors of). Not for serializers with field validators of their own."""
        fields = cls._quick_fields()
        if fields is None:
            return None
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name in params:
                value = field.quick_value(params[name])  # type: ignore[attr-defined]
                if value is SLOW:
                    return None
                values[name] = value
            elif field.required:
                return None
            elif field.default is not empty:
                values[name] = field.default() if callable(field.default) else field.default
        if cls.validate is not ZulipParamsSerializer.validate:
            try:
                values = cls().validate(values)
            except serializers.ValidationError:
                return None
        known = set(fields) | cls.silently_accepted
        return Params(values, sorted(name for name in params if name not in known))

    _quick: ClassVar[dict[type, dict[str, serializers.Field] | None]] = {}  # type: ignore[type-arg]

    @classmethod
    def _quick_fields(cls) -> dict[str, serializers.Field] | None:  # type: ignore[type-arg]
        """The declared fields, if every one is of a class in QUICK_FIELD_CLASSES and none has a
        validate_<name> method or validators of its own (beyond RawStringField's); else None.
        Once per class."""
        if cls not in ZulipParamsSerializer._quick:
            fields: dict[str, serializers.Field] | None = dict(cls._declared_fields)  # type: ignore[type-arg]
            for name, field in cls._declared_fields.items():
                # Exactly these classes: a subclass may convert otherwise (strip, limit, ...).
                if type(field) not in QUICK_FIELD_CLASSES or hasattr(cls, f"validate_{name}"):
                    fields = None
                    break
                own = [
                    validator
                    for validator in field.validators
                    if not isinstance(validator, ProhibitSurrogateCharactersValidator)
                ]
                if own or (isinstance(field, RawStringField) and not field.allow_blank):
                    fields = None
                    break
            ZulipParamsSerializer._quick[cls] = fields
        return ZulipParamsSerializer._quick[cls]

    @classmethod
    def _first_error(cls, errors: Mapping[str, Any]) -> ZulipError:
        for name in cls._declared_fields:
            if name in errors:
                detail = errors[name][0]
                if getattr(detail, "code", None) == "required":
                    return ZulipError(
                        f"Missing '{name}' argument",
                        code="REQUEST_VARIABLE_MISSING",
                        extra={"var_name": name},
                    )
                return ZulipError(str(detail))
        detail = errors.get("non_field_errors", ["Invalid request"])[0]
        return ZulipError(str(detail))


class UpdatePresenceParams(ZulipParamsSerializer):
    """POST users/me/presence."""

    history_limit_days = JsonIntegerField(required=False)
    last_update_id = JsonIntegerField(required=False)
    new_user_input = JsonBooleanField(required=False, default=False)
    ping_only = JsonBooleanField(required=False, default=False)
    slim_presence = JsonBooleanField(required=False, default=False)
    status = RawStringField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Checked after every type check, as Zulip does.
        if attrs["status"] not in REPORTED_STATUSES:
            raise serializers.ValidationError(f"Invalid status: {attrs['status']}")
        return attrs


class NoParams(ZulipParamsSerializer):
    """Endpoints that take no parameters: anything sent is reported as ignored."""


class UpdateSettingsParams(ZulipParamsSerializer):
    """PATCH settings: only presence_enabled is supported by this app."""

    presence_enabled = JsonBooleanField(required=False)


class StatusTextField(RawStringField):
    """``status_text``: surrounding white space stripped, then at most 60 code points."""

    def to_internal_value(self, data: Any) -> str:
        text = str(super().to_internal_value(data)).strip()
        if len(text) > STATUS_TEXT_MAX_LENGTH:
            raise serializers.ValidationError(
                f"{self.field_name} is too long (limit: {STATUS_TEXT_MAX_LENGTH} characters)"
            )
        if "\x00" in text:
            # Stored, and PostgreSQL refuses NUL in text.
            raise serializers.ValidationError(f"{self.field_name} contains NULL (0x00) characters.")
        return text


class JsonNullableIntegerField(JsonIntegerField):
    """A JSON integer, or JSON null (None)."""

    def to_internal_value(self, data: Any) -> int | None:
        try:
            if decode_json(data) is None:
                return None
        except ValueError:
            pass  # the integer field's own error
        value: int = super().to_internal_value(data)
        return value


class UpdateStatusForUserParams(ZulipParamsSerializer):
    """POST users/<user_id>/status (administrators): Zulip's parameters in Zulip's order, and
    scheduled_end_time (an extension, docs/status.md). ``away`` is not one of them (Zulip
    12.0, feature level 473): it is reported as ignored."""

    emoji_code = RawStringField(required=False)
    emoji_name = RawStringField(required=False)
    reaction_type = RawStringField(required=False)
    scheduled_end_time = JsonNullableIntegerField(required=False)
    status_text = StatusTextField(required=False)


class UpdateStatusParams(ZulipParamsSerializer):
    """POST users/me/status."""

    away = JsonBooleanField(required=False)
    emoji_code = RawStringField(required=False)
    emoji_name = RawStringField(required=False)
    reaction_type = RawStringField(required=False)
    scheduled_end_time = JsonNullableIntegerField(required=False)
    status_text = StatusTextField(required=False)


class UnreadParams(ZulipParamsSerializer):
    """Endpoints that read no parameter at all, as Zulip views without typed parameters (GET
    users/<user_id>/status): anything sent is ignored, and not reported."""

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> Params:
        return Params({}, [])
