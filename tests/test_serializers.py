"""Decoding of JSON parameters (serializers.decode_json): what Zulip's parser (pydantic's) takes
for JSON, and every JSON parameter of every endpoint refusing a deeply nested value with
Zulip's 400 instead of overflowing the stack."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from django_presence.models import ApiKey, PresenceSequence, RealmMember, UserPresence
from django_presence.serializers import MAX_JSON_DEPTH, decode_json

from .api_utils import FORM, PRESENCE_URL, SETTINGS_URL, assert_error
from .events_utils import EVENTS_URL, REGISTER_URL, use_fresh_backends

DIRECTORY_URL = "/api/v1/directory/members"


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


def objects(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


# decode_json ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # The deepest non-empty containers Zulip's parser takes; an empty one is a leaf.
        nested(MAX_JSON_DEPTH),
        nested(MAX_JSON_DEPTH, "1"),
        nested(MAX_JSON_DEPTH + 1),
        objects(MAX_JSON_DEPTH),
        objects(MAX_JSON_DEPTH, "{}"),
        # Brackets inside strings are not nesting, escaped quotes do not end a string.
        '"' + "[" * 3000 + '"',
        nested(MAX_JSON_DEPTH, '"\\"]]]"'),
        "[" + ",".join([nested(MAX_JSON_DEPTH)] * 3) + "]",
    ],
)
def test_deep_but_not_too_deep(text):
    assert decode_json(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "[" * 3000,
        nested(3000),
        nested(MAX_JSON_DEPTH + 1, "1"),
        nested(MAX_JSON_DEPTH + 2),
        objects(MAX_JSON_DEPTH + 1),
        objects(MAX_JSON_DEPTH + 1, "{}"),
        "[" + "{" * 3000,
        # Unbalanced or broken documents are refused whatever the scan makes of them.
        '"' + "[" * 3000,
        "]" * 3000 + "[" * 3000,
    ],
)
def test_too_deep_is_not_json(text):
    with pytest.raises(ValueError):
        decode_json(text)


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud800"',
        '"\\udfff"',
        '"a\\udc00b"',
        '"\\udc00\\ud800"',
        '["x", "\\ud800"]',
        '{"\\ud800": 1}',
    ],
)
def test_lone_surrogates_are_not_json(text):
    with pytest.raises(ValueError):
        decode_json(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text
        ('"\\u0000"', "\x00"),
        ("99999999999999999999", 99999999999999999999),
        (" [1]\n", [1]),
    ],
)
def test_json_values(text, value):
    assert decode_json(text) == value


def test_nan_and_infinity_are_json_as_for_zulip():
    assert decode_json("NaN") != decode_json("NaN")
    assert decode_json("-Infinity") == float("-inf")


@pytest.mark.parametrize("text", ["", "nan", "[1,]", "\ufeff1", "'a'", "1" * 5000, None, b"1"])
def test_not_json(text):
    with pytest.raises(ValueError):
        decode_json(text)


# Every JSON parameter over HTTP --------------------------------------------------------------

DEEP = "[" * 3000

JSON_PARAMETERS = [
    ("post", PRESENCE_URL, "ping_only"),
    ("post", PRESENCE_URL, "last_update_id"),
    ("post", PRESENCE_URL, "history_limit_days"),
    ("post", PRESENCE_URL, "new_user_input"),
    ("post", PRESENCE_URL, "slim_presence"),
    ("patch", SETTINGS_URL, "presence_enabled"),
    ("post", REGISTER_URL, "slim_presence"),
    ("post", REGISTER_URL, "presence_history_limit_days"),
    ("post", REGISTER_URL, "client_capabilities"),
    ("post", REGISTER_URL, "event_types"),
    ("post", REGISTER_URL, "fetch_event_types"),
    ("post", REGISTER_URL, "narrow"),
    ("get", EVENTS_URL, "last_event_id"),
    ("get", EVENTS_URL, "dont_block"),
    ("get", DIRECTORY_URL, "page"),
    ("get", DIRECTORY_URL, "page_size"),
    ("get", DIRECTORY_URL, "user_ids"),
]


def stored_rows():
    return [
        list(model.objects.order_by("pk").values())
        for model in (UserPresence, RealmMember, ApiKey, PresenceSequence)
    ]


@pytest.mark.parametrize("value", [DEEP, nested(3000), nested(MAX_JSON_DEPTH + 1, "1")])
@pytest.mark.parametrize(("method", "path", "name"), JSON_PARAMETERS)
def test_a_deeply_nested_parameter_is_not_valid_json(
    monkeypatch, api_client_for, hamlet, method, path, name, value
):
    use_fresh_backends(monkeypatch)
    client = api_client_for(hamlet)
    params = {"status": "active", "queue_id": "q", "last_event_id": "-1", name: value}
    before = stored_rows()
    if method == "get":
        response = client.get(path, params)
    else:
        response = getattr(client, method)(path, urlencode(params), content_type=FORM)
    assert_error(response, f"{name} is not valid JSON")
    assert stored_rows() == before
