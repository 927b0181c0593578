"""Parameters of register, GET events and DELETE events, with Zulip's error messages."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from django_presence.serializers import (
    JsonBooleanField,
    JsonField,
    JsonIntegerField,
    JsonListField,
    JsonStringListField,
    RawStringField,
    ZulipParamsSerializer,
)

from .queues import FETCHABLE_EVENT_TYPES, SUBSCRIBABLE_EVENT_TYPES


class JsonBooleanDictField(JsonField):
    json_type = dict
    type_name = "a dict"

    def to_internal_value(self, data: Any) -> dict[str, bool]:
        value: dict[str, Any] = super().to_internal_value(data)
        for key, item in value.items():
            if not isinstance(item, bool):
                raise serializers.ValidationError(
                    f'{self.field_name}["{key}"] is not a boolean', code="invalid"
                )
        return value


def _refuse_unsupported(event_types: list[str], supported: frozenset[str]) -> list[str]:
    """This server sends presence and user_status events only: a queue asking for others
    would wait for events that never come, so it is refused rather than silently half-served."""
    for event_type in event_types:
        if event_type not in supported:
            raise serializers.ValidationError(f"Unsupported event type: {event_type}")
    return event_types


class RegisterParams(ZulipParamsSerializer):
    """POST register. ``narrow`` is accepted (the zulip package always sends it) but narrows
    only message events, which this server has none of."""

    slim_presence = JsonBooleanField(required=False, default=False)
    presence_history_limit_days = JsonIntegerField(required=False)
    client_capabilities = JsonBooleanDictField(required=False, default=dict)
    event_types = JsonStringListField(required=False)
    fetch_event_types = JsonStringListField(required=False)
    narrow = JsonListField(required=False)

    def validate_event_types(self, value: list[str]) -> list[str]:
        return _refuse_unsupported(value, SUBSCRIBABLE_EVENT_TYPES)

    def validate_fetch_event_types(self, value: list[str]) -> list[str]:
        return _refuse_unsupported(value, FETCHABLE_EVENT_TYPES | SUBSCRIBABLE_EVENT_TYPES)


class GetEventsParams(ZulipParamsSerializer):
    """GET events. queue_id and last_event_id are checked by the view, in Zulip's order."""

    queue_id = RawStringField(required=False)
    last_event_id = JsonIntegerField(required=False)
    dont_block = JsonBooleanField(required=False, default=False)


class DeleteQueueParams(ZulipParamsSerializer):
    """DELETE events."""

    queue_id = RawStringField()
