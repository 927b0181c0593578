"""Property test of the issue "Nothing breaks, nothing leaks, nothing is lost": whatever value
any parameter of any endpoint has, and wherever it is sent (query string, form body, multipart
body, the path segment of GET users/<id or email>/presence), the answer is Zulip's JSON
envelope below 500 and no stored row changes, except the write a valid request asks for.

Values are drawn from strategies of our own, by kind: valid values (so the writing paths run
too), any JSON document (NaN and Infinity included), deep nesting around Zulip's parser's limit
and far beyond it, special numbers, any unicode text with NUL and control characters, JSON
strings with lone surrogate escapes, raw bytes that are not UTF-8 (CESU-8 surrogates, overlong
encodings), file parts in multipart bodies, and huge values below the request size limits.
Requests over those limits (DATA_UPLOAD_MAX_MEMORY_SIZE, DATA_UPLOAD_MAX_NUMBER_FIELDS) are the
second test. Runs against the URLconf with Django's test client, in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from django.conf import settings as django_settings
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.utils import timezone
from hypothesis import HealthCheck, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_presence import actions
from django_presence.models import (
    ApiKey,
    PresenceSequence,
    Realm,
    RealmEmoji,
    RealmMember,
    UserPresence,
    UserStatus,
)
from loopback.auth import basic_auth

from .events_utils import use_fresh_backends

pytestmark = pytest.mark.django_db

# Per endpoint. Both tests take 15 to 25 s per database (SQLite, PostgreSQL) on two busy cores;
# raise EXAMPLES for a longer local run (1,500 per endpoint pass).
EXAMPLES = 75
OVERSIZED_EXAMPLES = 6

API = "/api/v1/"
MULTIPART_BOUNDARY = "BadInputBoundary7MA4YWxkTrZu0gW"
# Substituted by the id of a queue registered for the example, so GET and DELETE events reach
# a real queue too.
REAL_QUEUE = "<the example's queue>"


# Endpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    # Parameter name -> the kind of value it takes (VALID below).
    params: dict[str, str]
    # Where parameters may go: "query", and the bodies the endpoint reads ("form",
    # "multipart").
    places: tuple[str, ...] = ("query",)
    authenticated: bool = True
    # The path has a user id or email segment.
    user_segment: bool = False
    # Whether a success lists unknown parameters (Zulip's views without typed parameters, GET
    # users/<user_id>/status, ignore them silently).
    reports_ignored: bool = True

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


BODIES = ("query", "form", "multipart")
STATUS_PARAMS = {
    "away": "bool",
    "emoji_code": "emoji_code",
    "emoji_name": "emoji_name",
    "reaction_type": "reaction_type",
    "scheduled_end_time": "end_time",
    "status_text": "status_text",
}
ENDPOINTS = [
    Endpoint(
        "POST",
        "users/me/presence",
        {
            "status": "status",
            "ping_only": "bool",
            "last_update_id": "int",
            "history_limit_days": "int",
            "new_user_input": "bool",
            "slim_presence": "bool",
        },
        BODIES,
    ),
    Endpoint("GET", "users/{}/presence", {}, user_segment=True),
    Endpoint("GET", "realm/presence", {}),
    Endpoint("PATCH", "settings", {"presence_enabled": "bool"}, BODIES),
    Endpoint("GET", "server_settings", {}, authenticated=False),
    Endpoint(
        "POST",
        "register",
        {
            "slim_presence": "bool",
            "presence_history_limit_days": "int",
            "client_capabilities": "bool_dict",
            "event_types": "event_types",
            "fetch_event_types": "event_types",
            "narrow": "list",
        },
        BODIES,
    ),
    Endpoint(
        "GET", "events", {"queue_id": "queue_id", "last_event_id": "int", "dont_block": "bool"}
    ),
    # The zulip package sends DELETE events as a form body (which Django alone would not parse).
    Endpoint("DELETE", "events", {"queue_id": "queue_id"}, BODIES),
    Endpoint("POST", "users/me/status", STATUS_PARAMS, BODIES),
    Endpoint("GET", "users/{}/status", {}, user_segment=True, reports_ignored=False),
    Endpoint(
        "POST",
        "users/{}/status",
        {name: kind for name, kind in STATUS_PARAMS.items() if name != "away"},
        BODIES,
        user_segment=True,
    ),
    Endpoint(
        "GET",
        "directory/members",
        {
            "page": "page",
            "page_size": "page_size",
            "user_ids": "user_ids",
            "role": "role",
            "search": "text",
            "status": "directory_status",
        },
    ),
]


# Values --------------------------------------------------------------------------------------

# A value is str (sent UTF-8 encoded) or bytes (sent as they are).
Value = str | bytes

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and ±Infinity too: json.dumps writes them
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_documents = json_values.map(json.dumps)

VALID: dict[str, st.SearchStrategy[Value]] = {
    "status": st.sampled_from(["active", "idle"]),
    "bool": st.sampled_from(["true", "false"]),
    "int": st.sampled_from(["-1", "0", "1", "14", str(2**63), str(-(2**64))])
    | st.integers().map(str),
    "bool_dict": st.dictionaries(
        st.sampled_from(["simplified_presence_events", "notification_settings_null"])
        | st.text(max_size=8),
        st.booleans(),
        max_size=3,
    ).map(json.dumps),
    "event_types": st.lists(st.sampled_from(["presence", "realm"]), max_size=3).map(json.dumps),
    "list": st.lists(json_values, max_size=3).map(json.dumps),
    "queue_id": st.just(REAL_QUEUE),
    "page": st.integers(min_value=1, max_value=3).map(str) | st.just(str(2**70)),
    "page_size": st.integers(min_value=1, max_value=200).map(str),
    "user_ids": st.lists(st.integers(min_value=-3, max_value=2**70), max_size=5).map(json.dumps),
    "role": st.sampled_from(["100", "200", "300", "400", "600"]),
    "directory_status": st.sampled_from(["active", "idle", "offline", "never"]),
    "text": st.text(max_size=10),
    "status_text": st.text(max_size=62),
    "emoji_name": st.sampled_from(["car", "thumbs_up", "zulip", "", "no_such_emoji"]),
    "emoji_code": st.sampled_from(["1f697", "1f44d", "zulip", "", "1", "1F697"]),
    "reaction_type": st.sampled_from(
        ["unicode_emoji", "realm_emoji", "zulip_extra_emoji", "", "foo"]
    ),
    # An hour ahead (from when the module was imported), none, or the past.
    "end_time": st.sampled_from([str(int(time.time()) + 3600), "null", "0"]),
}

DEPTHS = [2, 199, 200, 201, 202, 1000, 3000, 30000]


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Nesting at, around and far past the 200 levels Zulip's JSON parser takes, balanced or
    not, of arrays, objects or both, as a whole value or inside a list."""
    depth = draw(st.sampled_from(DEPTHS))
    inner = draw(st.sampled_from(["", "1", '"x"', "[]", "{}", "NaN"]))
    shape = draw(st.sampled_from(["open", "arrays", "objects", "mixed", "closers", "in_list"]))
    if shape == "open":
        return draw(st.sampled_from(["[", "{", '{"a":', "[{"])) * depth
    if shape == "arrays":
        return "[" * depth + inner + "]" * depth
    if shape == "objects":
        return '{"a":' * depth + (inner or "1") + "}" * depth
    if shape == "mixed":
        half = depth // 2
        return '[{"a":' * half + (inner or "1") + "}]" * half
    if shape == "closers":
        return "]" * depth + "[" * depth
    return "[1," + "[" * depth + inner + "]" * depth + "]"


SPECIAL_NUMBERS = [
    "NaN",
    "-NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "0.0",
    "1.0",
    "1e2",
    "01",
    "+1",
    ".5",
    "0x10",
    "1_000",
    "١٢",  # Arabic-Indic digits, which int() would take
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    str(-(2**63) - 1),
    "9" * 4300,  # the longest integer Python converts by default
    "9" * 4301,
    "-" + "9" * 20000,
]

SURROGATE_JSON = [
    '"\\ud800"',
    '"\\udfff"',
    '"\\udc00\\ud800"',
    '"a\\ud83d"',
    '["\\ud800"]',
    '["presence", "\\udc00"]',
    '{"\\ud800": true}',
    '{"simplified_presence_events": true, "\\udfff": false}',
    '"\\ud83d\\ude00"',  # a valid pair
    '"\\u0000"',
    '"\\uffff"',
    '["\\u0000"]',
]

RAW_BYTES: list[bytes] = [
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # CESU-8 lone high surrogate
    b"\xed\xb0\x80",  # CESU-8 lone low surrogate
    b"\xed\xa0\xbd\xed\xb8\x80",  # CESU-8 surrogate pair (U+1F600)
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xe2\x82",  # truncated
    b"\x00",
    b'"\xed\xa0\x80"',
    b'["\xed\xa0\x80"]',
    b'{"\xff": true}',
    b"act\xffive",
    b"1\x00",
]

UNICODE_TEXT = [
    "\x00",
    "act\x00ive",
    "\ufeff1",
    "\ufefftrue",
    "\u202eactive",
    "\u2028",
    "\U0001f600",
    "\uffff",
    "ａｃｔｉｖｅ",  # fullwidth
    "é",
    "\r\n",
    "\t1",
    " true ",
]


@st.composite
def huge(draw: st.DrawFn) -> Value:
    """A large value built from a small draw (hypothesis would take long to draw it
    character by character), well below DATA_UPLOAD_MAX_MEMORY_SIZE once encoded."""
    size = draw(st.sampled_from([5_000, 60_000, 150_000]))
    kind = draw(st.sampled_from(["text", "string", "ints", "strings", "digits", "bytes", "dict"]))
    if kind == "text":
        unit = draw(st.sampled_from(["a", "\x00", "%", "&", "=", "é", "\U0001f600", " "]))
        return unit * (size // len(unit.encode()))
    if kind == "string":
        return json.dumps("x" * size)
    if kind == "ints":
        return "[" + ",".join(["1"] * (size // 2)) + "]"
    if kind == "strings":
        return json.dumps(["presence"] * (size // 12))
    if kind == "digits":
        return "9" * size
    if kind == "dict":
        return json.dumps({f"k{n}": True for n in range(size // 10)})
    return draw(st.sampled_from(RAW_BYTES)) * (size // 8)


def values_for(kind: str) -> st.SearchStrategy[Value]:
    return st.one_of(
        VALID[kind],
        json_documents,
        nested(),
        st.sampled_from(SPECIAL_NUMBERS),
        st.text(max_size=30),
        st.sampled_from(UNICODE_TEXT),
        st.sampled_from(SURROGATE_JSON),
        st.sampled_from(RAW_BYTES),
        st.binary(max_size=12),
        huge(),
    )


# Parameters nobody declares are legal (Zulip lists them in ignored_parameters_unsupported).
unknown_names: st.SearchStrategy[Value] = (
    st.sampled_from(["client", "apply_markdown", "queue_id", "status", "x", "", "a" * 10_000])
    | st.text(min_size=1, max_size=12)
    | st.sampled_from(RAW_BYTES)
)

# Malformed query strings, appended as they are.
RAW_QUERIES = ["%", "%zz", "&&", "=", "=x", "a=%ff%fe", ";", "%00=%00", "a=b=c", "+=+"]


def short(value: Value) -> str:
    """A value for a failure report: huge ones are cut."""
    if len(value) <= 80:
        return repr(value)
    return f"{value[:80]!r}... ({len(value)} long)"


@dataclass
class Part:
    name: Value
    value: Value
    # A multipart file part rather than a field.
    file: bool = False

    def __repr__(self) -> str:
        return f"Part({short(self.name)}, {short(self.value)}{', file' if self.file else ''})"


@dataclass
class Call:
    endpoint: Endpoint
    # Where the body parts go: "form", "multipart", or None (no body).
    body_kind: str | None
    query: list[Part] = field(default_factory=list)
    body: list[Part] = field(default_factory=list)
    raw_query: str = ""
    segment: Value = ""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints drawn values with its own printer, which asks for this.
        printer.text(repr(self))

    def __repr__(self) -> str:
        segment = f", segment={short(self.segment)}" if self.endpoint.user_segment else ""
        return (
            f"Call({self.endpoint}, body={self.body_kind}, query={parts_repr(self.query)}, "
            f"body_parts={parts_repr(self.body)}, raw_query={self.raw_query!r}{segment})"
        )


def parts_repr(parts: list[Part]) -> str:
    if len(parts) <= 6:
        return repr(parts)
    return f"[{parts[0]!r}, {parts[1]!r}, ... {len(parts)} parts]"


@st.composite
def segments(draw: st.DrawFn, user_ids: list[int], emails: list[str]) -> Value:
    valid = [*map(str, user_ids), *emails, " " + emails[0].upper() + " "]
    return draw(
        st.sampled_from(valid)
        | st.sampled_from(["me", "ME", "0", "-1", "0" + str(user_ids[0])])
        | st.sampled_from(SPECIAL_NUMBERS)
        | st.sampled_from(UNICODE_TEXT)
        | st.sampled_from(RAW_BYTES)
        | st.text(min_size=1, max_size=30)
        | st.binary(min_size=1, max_size=12)
        | nested()
        | huge()
    )


@st.composite
def calls(draw: st.DrawFn, endpoint: Endpoint, user_ids: list[int], emails: list[str]) -> Call:
    """A request with one or two parameters drawn from every kind of value and the others
    valid or left out, so that each parameter is the first bad one in turn, and valid
    requests (with their writes) come up as well."""
    bodies = [place for place in endpoint.places if place != "query"]
    body_kind = draw(st.sampled_from([None, *bodies])) if bodies else None
    call = Call(endpoint, body_kind)
    names = list(endpoint.params)
    fuzzed = draw(st.sets(st.sampled_from(names), max_size=2)) if names else set()
    parts: list[Part] = []
    for name, kind in endpoint.params.items():
        if name in fuzzed:
            parts.append(Part(name, draw(values_for(kind))))
        elif draw(st.integers(min_value=0, max_value=3)):  # sent three times in four
            parts.append(Part(name, draw(VALID[kind])))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        parts.append(Part(draw(unknown_names), draw(values_for("text"))))
    # Twice, in two places or in one: the body wins, and within one place the last.
    if parts and draw(st.booleans()):
        twice = draw(st.sampled_from(parts))
        parts.append(Part(twice.name, draw(values_for(endpoint.params.get(twice.name, "text")))))
    for part in parts:
        if body_kind is not None and draw(st.integers(min_value=0, max_value=2)):
            part.file = body_kind == "multipart" and draw(st.integers(0, 3)) == 0
            call.body.append(part)
        else:
            call.query.append(part)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        call.raw_query = draw(st.sampled_from(RAW_QUERIES))
    if endpoint.user_segment:
        call.segment = draw(segments(user_ids, emails))
    return call


# Requests ------------------------------------------------------------------------------------


def as_bytes(value: Value, queue_id: str) -> bytes:
    if isinstance(value, str):
        return (queue_id if value == REAL_QUEUE else value).encode()
    return value


def urlencoded(parts: list[Part], queue_id: str) -> str:
    return "&".join(
        f"{quote_from_bytes(as_bytes(part.name, queue_id), safe='')}="
        f"{quote_from_bytes(as_bytes(part.value, queue_id), safe='')}"
        for part in parts
    )


def multipart(parts: list[Part], queue_id: str) -> bytes:
    chunks = []
    for part in parts:
        # Names as they are, quotes and line breaks included: a broken part is a case too.
        disposition = b'form-data; name="' + as_bytes(part.name, queue_id) + b'"'
        if part.file:
            disposition += b'; filename="value.txt"'
        chunks += [
            f"--{MULTIPART_BOUNDARY}\r\n".encode(),
            b"Content-Disposition: " + disposition + b"\r\n",
            b"Content-Type: text/plain\r\n" if part.file else b"",
            b"\r\n",
            as_bytes(part.value, queue_id),
            b"\r\n",
        ]
    chunks.append(f"--{MULTIPART_BOUNDARY}--\r\n".encode())
    return b"".join(chunks)


def request_args(call: Call, queue_id: str) -> tuple[str, bytes, str]:
    """The URL, body and content type of a call."""
    endpoint = call.endpoint
    path = endpoint.path
    if endpoint.user_segment:
        path = path.format(quote_from_bytes(as_bytes(call.segment, queue_id), safe=""))
    query = "&".join(q for q in (urlencoded(call.query, queue_id), call.raw_query) if q)
    url = API + path + (f"?{query}" if query else "")
    if call.body_kind == "form":
        body = urlencoded(call.body, queue_id).encode()
        content_type = "application/x-www-form-urlencoded"
    elif call.body_kind == "multipart":
        body = multipart(call.body, queue_id)
        content_type = f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
    else:
        body, content_type = b"", "application/octet-stream"
    return url, body, content_type


def send(client: Client, call: Call, queue_id: str) -> Any:
    return client.generic(call.endpoint.method, *request_args(call, queue_id))


def as_django_parses_it(call: Call, queue_id: str) -> HttpRequest:
    """The call parsed by Django as a POST (the method whose body Django parses itself): its
    query string and body fields are what the view reads, its files are FILES."""
    return RequestFactory().generic("POST", *request_args(call, queue_id))


def effective_params(call: Call, queue_id: str) -> dict[str, str | None]:
    """The parameters the view gets: the body wins, and a file of a multipart body is the
    last value of its name (as DRF merges them), which is None here."""
    request = as_django_parses_it(call, queue_id)
    params: dict[str, str | None] = {**request.GET.dict(), **request.POST.dict()}
    params.update(dict.fromkeys(request.FILES))
    return params


def expected_ignored(call: Call, queue_id: str) -> list[str]:
    """The parameters a success reports in ignored_parameters_unsupported: every name sent
    that the endpoint does not take, but "client". A name sent both as a field and as a file
    is left out: the view gets the file (see effective_params), which is no parameter, where
    Zulip would report the field."""
    if not call.endpoint.reports_ignored:
        return []
    request = as_django_parses_it(call, queue_id)
    names = set(request.GET) | set(request.POST)
    names -= {"client", *call.endpoint.params, *request.FILES}
    return sorted(names)


# Checks --------------------------------------------------------------------------------------

STORED_MODELS = (
    Realm,
    RealmMember,
    ApiKey,
    UserPresence,
    PresenceSequence,
    UserStatus,
    RealmEmoji,
)
Rows = dict[str, dict[Any, dict[str, Any]]]


def stored_rows() -> Rows:
    return {
        model.__name__: {
            row[model._meta.pk.attname]: row
            for row in model.objects.values()  # type: ignore[attr-defined]
        }
        for model in STORED_MODELS
    }


def changed_rows(before: Rows, after: Rows) -> Iterator[tuple[str, dict[str, Any] | None, Any]]:
    """(model, row before or None, row after or None) for every row that differs."""
    for model, rows in after.items():
        old_rows = before[model]
        for pk in old_rows.keys() | rows.keys():
            if old_rows.get(pk) != rows.get(pk):
                yield model, old_rows.get(pk), rows.get(pk)


def assert_envelope(response: Any) -> dict[str, Any]:
    """Zulip's JSON envelope, below 500."""
    assert response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json", response.content[:300]
    body = json.loads(response.content.decode("utf-8"))
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert (body["result"], body["msg"]) == ("success", "")
    else:
        assert response.status_code >= 400
        assert body["result"] == "error"
        assert isinstance(body["msg"], str)
        assert isinstance(body["code"], str)
    return body


def legitimate_write(
    call: Call, queue_id: str, member: RealmMember
) -> Callable[[str, Any, Any], bool]:
    """Which row changes a successful call may make: a presence report writes the caller's
    presence and the realm's sequence; PATCH settings with presence_enabled, also that flag."""
    endpoint = call.endpoint
    params = effective_params(call, queue_id)

    def presence_write(model: str, old: Any, new: Any) -> bool:
        if model == "UserPresence":
            return new is not None and new["user_id"] == member.user_id
        if model == "PresenceSequence":
            return new is not None and new["realm_id"] == member.realm_id
        return False

    if (endpoint.method, endpoint.path) == ("POST", "users/me/presence"):
        assert params.get("status") in ("active", "idle"), "a write without a valid status"
        return presence_write
    if (endpoint.method, endpoint.path) == ("PATCH", "settings"):
        enabled = json.loads(params.get("presence_enabled") or "null")  # " true\n" is JSON too
        assert isinstance(enabled, bool), "a write without a valid presence_enabled"

        def settings_write(model: str, old: Any, new: Any) -> bool:
            if model == "RealmMember":
                return (
                    old is not None
                    and new is not None
                    and new["id"] == member.pk
                    and {**old, "presence_enabled": enabled} == new
                )
            return presence_write(model, old, new)

        return settings_write
    # POST users/{}/status with the segment "me" is POST users/me/status.
    path = endpoint.path.format(call.segment) if endpoint.user_segment else endpoint.path
    if (endpoint.method, path) == ("POST", "users/me/status"):
        # The caller's status row, and with away their invisible mode (and so their presence).

        def status_write(model: str, old: Any, new: Any) -> bool:
            if model == "UserStatus":
                return new is not None and new["user_id"] == member.user_id
            if model == "RealmMember":
                changed = {k for k in new if old is not None and old[k] != new[k]}
                return (
                    new is not None and new["id"] == member.pk and changed <= {"presence_enabled"}
                )
            return presence_write(model, old, new)

        return status_write
    return lambda model, old, new: False


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def world(monkeypatch, settings, hamlet, othello, api_client_for):
    """hamlet calls and othello has a presence row; the long poll answers at once."""
    use_fresh_backends(monkeypatch)
    settings.PRESENCE_EVENT_LONG_POLL_SECS = 0
    actions.do_update_user_presence(othello, log_time=timezone.now(), status="active")
    caller = api_client_for(hamlet)
    client = Client(HTTP_AUTHORIZATION=basic_auth(hamlet.email, caller.api_key))
    return hamlet, client, [hamlet.user_id, othello.user_id], [hamlet.email, othello.email]


def register_queue(client: Client) -> str:
    response = client.post(
        API + "register", "event_types=%5B%22presence%22%5D", "application/x-www-form-urlencoded"
    )
    queue_id: str = response.json()["queue_id"]
    return queue_id


def check_call(world: Any, call: Call) -> None:
    member, client, _ids, _emails = world
    queue_id = register_queue(client) if call.endpoint.path == "events" else "no queue"
    before = stored_rows()
    response = send(client if call.endpoint.authenticated else Client(), call, queue_id)
    note(f"{response.status_code} {response.content[:300]!r}")
    body = assert_envelope(response)
    if body["result"] == "success":
        assert body.get("ignored_parameters_unsupported", []) == expected_ignored(call, queue_id)
    changes = list(changed_rows(before, stored_rows()))
    if changes:
        assert body["result"] == "success", changes
        allowed = legitimate_write(call, queue_id, member)
        for model, old, new in changes:
            assert allowed(model, old, new), (model, old, new)


HYPOTHESIS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The database and the queue backend are per test, not per example: each example
    # compares the rows before and after itself.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_any_parameter_value(world, endpoint):
    @HYPOTHESIS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        check_call(world, data.draw(calls(endpoint, world[2], world[3]), label="call"))

    run()


# Past the request size limits ----------------------------------------------------------------


@st.composite
def oversized_calls(draw: st.DrawFn, endpoint: Endpoint) -> Call:
    """One value longer than DATA_UPLOAD_MAX_MEMORY_SIZE, or more fields than
    DATA_UPLOAD_MAX_NUMBER_FIELDS, in a place the endpoint reads."""
    place = draw(st.sampled_from(endpoint.places))
    call = Call(endpoint, None if place == "query" else place, segment="1")
    name = draw(st.sampled_from([*endpoint.params, "x"]))
    if draw(st.booleans()):
        parts = [Part(name, "a" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1))]
    else:
        count = django_settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1
        parts = [Part(f"{name}{n}", "1") for n in range(count)]
    if place == "query":
        call.query = parts
    else:
        call.body = parts
    return call


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_oversized_requests(world, endpoint):
    @hypothesis_settings(HYPOTHESIS, max_examples=OVERSIZED_EXAMPLES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        check_call(world, data.draw(oversized_calls(endpoint), label="call"))

    run()
