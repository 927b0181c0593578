"""POST register, GET events and DELETE events over HTTP, on the in-process backend: Zulip's
response shapes, the three presence event shapes, acknowledgement, heartbeats, expiry, errors,
authentication, access limiting, invisible mode and the realm-size limit."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client, override_settings

from django_presence import __version__, actions
from django_presence.events import queues
from django_presence.events import receivers as event_receivers
from django_presence.events.backends import get_event_backend
from django_presence.models import PresenceSequence, RealmMember
from loopback.auth import basic_auth

from .api_utils import (
    FORM,
    assert_error,
    form,
    frozen_now,
    legacy_entry,
    now_seconds,
    post_presence,
    success,
    ts,
)
from .events_utils import (
    EVENTS_URL,
    after,
    delete_queue,
    get_events,
    poll,
    register,
    register_queue,
    use_fresh_backends,
)
from .factories import RealmFactory

pytestmark = pytest.mark.django_db

ZULIP_VERSION = f"12.0-django-presence-{__version__}"
WWW_AUTHENTICATE = 'Basic realm="zulip"'


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    use_fresh_backends(monkeypatch)


@pytest.fixture
def clients(api_client_for):
    made: dict[int, Any] = {}

    def client_for(member: RealmMember) -> Any:
        if member.pk not in made:
            made[member.pk] = api_client_for(member)
        return made[member.pk]

    return client_for


@pytest.fixture
def come_online(clients, django_capture_on_commit_callbacks):
    """A member reports "active" at ``at``, with on-commit signals delivered."""

    def report(member: RealmMember, at=None, status: str = "active") -> None:
        with frozen_now(at or now_seconds()), django_capture_on_commit_callbacks(execute=True):
            success(post_presence(clients(member), status=status))

    return report


def legacy_event(member: RealmMember, at, event_id: int, *, email: bool = True) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "presence", "user_id": member.user_id}
    if email:
        event["email"] = member.email
    event["server_timestamp"] = at.timestamp()
    event["presence"] = {
        "website": {"client": "website", "status": "active", "timestamp": ts(at), "pushable": False}
    }
    event["id"] = event_id
    return event


# POST register ------------------------------------------------------------------------------


def test_register_returns_zulips_fields_in_zulips_order(hamlet, othello, clients, come_online):
    moment = now_seconds() - timedelta(minutes=5)
    come_online(othello, moment)
    body = success(register(clients(hamlet), event_types=["presence"]))
    assert list(body) == [
        "result",
        "msg",
        "queue_id",
        "zulip_version",
        "zulip_feature_level",
        "zulip_merge_base",
        "presences",
        "server_timestamp",
        "presence_last_update_id",
        "last_event_id",
    ]
    assert str(uuid.UUID(body["queue_id"])) == body["queue_id"]
    assert isinstance(body.pop("server_timestamp"), float)
    del body["queue_id"]
    assert body == {
        "result": "success",
        "msg": "",
        "zulip_version": ZULIP_VERSION,
        "zulip_feature_level": 497,
        "zulip_merge_base": ZULIP_VERSION,
        "presences": {"othello@zulip.com": legacy_entry("active", ts(moment))},
        "presence_last_update_id": 1,
        "last_event_id": -1,
    }


def test_register_slim_presence_and_history_limit(hamlet, othello, clients, come_online):
    moment = now_seconds() - timedelta(days=3)
    come_online(othello, moment)
    slim = success(register(clients(hamlet), event_types=["presence"], slim_presence=True))
    assert slim["presences"] == {
        str(othello.user_id): {"active_timestamp": ts(moment), "idle_timestamp": ts(moment)}
    }
    limited = success(
        register(clients(hamlet), event_types=["presence"], presence_history_limit_days=2)
    )
    assert (limited["presences"], limited["presence_last_update_id"]) == ({}, -1)


def test_register_fetches_the_realm_fields_on_request(hamlet, clients):
    body = success(register(clients(hamlet), event_types=["presence"], fetch_event_types=["realm"]))
    assert "presences" not in body
    assert {key: body[key] for key in list(body)[6:]} == {
        "realm_presence_disabled": False,
        "server_presence_ping_interval_seconds": 60,
        "server_presence_offline_threshold_seconds": 200,
        "event_queue_longpoll_timeout_seconds": 90,
        "last_event_id": -1,
    }


def test_register_without_event_types_fetches_everything(hamlet, clients):
    body = success(register(clients(hamlet)))
    for key in ("presences", "presence_last_update_id", "realm_presence_disabled"):
        assert key in body


def test_register_with_no_event_types_fetches_only_versions(hamlet, clients):
    body = success(register(clients(hamlet), event_types=[]))
    assert list(body) == [
        "result",
        "msg",
        "queue_id",
        "zulip_version",
        "zulip_feature_level",
        "zulip_merge_base",
        "last_event_id",
    ]


def test_register_in_a_realm_with_presence_disabled(hamlet, othello, clients, come_online):
    come_online(othello)
    actions.do_set_realm_presence_disabled(hamlet.realm, True)
    body = success(register(clients(hamlet), fetch_event_types=["presence", "realm"]))
    assert (body["presences"], body["presence_last_update_id"]) == ({}, -1)
    assert body["realm_presence_disabled"] is True


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"event_types": ["presence", "message"]}, "Unsupported event type: message"),
        ({"fetch_event_types": ["subscription"]}, "Unsupported event type: subscription"),
        ({"event_types": "presence"}, "event_types is not valid JSON"),
        ({"event_types": {"presence": True}}, "event_types is not a list"),
        ({"event_types": [1]}, "event_types[0] is not a string"),
        ({"fetch_event_types": ["presence", None]}, "fetch_event_types[1] is not a string"),
        ({"narrow": {}}, "narrow is not a list"),
        ({"slim_presence": 1}, "slim_presence is not a boolean"),
        ({"presence_history_limit_days": "1.5"}, "presence_history_limit_days is not an integer"),
        ({"client_capabilities": []}, "client_capabilities is not a dict"),
        (
            {"client_capabilities": {"simplified_presence_events": 1}},
            'client_capabilities["simplified_presence_events"] is not a boolean',
        ),
    ],
)
def test_register_parameter_errors(hamlet, clients, params, msg):
    assert_error(register(clients(hamlet), **params), msg)


def test_register_reports_parameters_it_does_not_use(hamlet, clients):
    body = success(
        register(
            clients(hamlet), event_types=["presence"], apply_markdown=True, queue_lifespan_secs=5
        )
    )
    assert body["ignored_parameters_unsupported"] == ["apply_markdown", "queue_lifespan_secs"]


def test_register_needs_authentication(client):
    response = register(Client())
    assert_error(
        response,
        "Not logged in: API authentication or user session required",
        status=401,
        code="UNAUTHORIZED",
    )
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


# Presence events ----------------------------------------------------------------------------


def test_coming_online_sends_a_legacy_event(hamlet, othello, clients, come_online):
    queue_id = register_queue(clients(hamlet))
    moment = now_seconds()
    come_online(othello, moment)
    assert poll(clients(hamlet), queue_id) == [legacy_event(othello, moment, 0)]


def test_slim_presence_queues_get_no_email(hamlet, othello, clients, come_online):
    queue_id = register_queue(clients(hamlet), slim_presence=True)
    moment = now_seconds()
    come_online(othello, moment)
    assert poll(clients(hamlet), queue_id) == [legacy_event(othello, moment, 0, email=False)]


def test_simplified_presence_events(hamlet, othello, clients, come_online):
    queue_id = register_queue(
        clients(hamlet), client_capabilities={"simplified_presence_events": True}
    )
    moment = now_seconds()
    come_online(othello, moment)
    assert poll(clients(hamlet), queue_id) == [
        {
            "type": "presence",
            "presences": {
                str(othello.user_id): {"active_timestamp": ts(moment), "idle_timestamp": ts(moment)}
            },
            "id": 0,
        }
    ]


def test_legacy_events_follow_the_70_second_rule(hamlet, make_member, clients, come_online):
    moment = now_seconds()
    # An idle report creates the row: last active falls back to the join date, a day before.
    newcomer = make_member(date_joined=moment - timedelta(days=1))
    queue_id = register_queue(clients(hamlet))
    come_online(newcomer, moment, status="idle")
    (event,) = poll(clients(hamlet), queue_id)
    assert event["presence"] == {
        "website": {
            "client": "website",
            "status": "idle",
            "timestamp": ts(moment),
            "pushable": False,
        }
    }


def test_the_subject_gets_its_own_event(hamlet, clients, come_online):
    queue_id = register_queue(clients(hamlet))
    moment = now_seconds()
    come_online(hamlet, moment)
    assert poll(clients(hamlet), queue_id) == [legacy_event(hamlet, moment, 0)]


def test_no_event_for_an_ordinary_refresh(hamlet, othello, clients, come_online):
    start = now_seconds()
    come_online(othello, start)
    queue_id = register_queue(clients(hamlet))
    # Written (more than 55 s later) but not "came online" (less than 130 s): no event.
    come_online(othello, start + timedelta(seconds=100))
    assert poll(clients(hamlet), queue_id) == []
    # Back after more than 130 s without an active report: an event.
    later = start + timedelta(seconds=300)
    come_online(othello, later)
    assert poll(clients(hamlet), queue_id) == [legacy_event(othello, later, 0)]


def test_event_ids_count_up_and_acknowledged_events_are_dropped(
    hamlet, othello, make_member, clients, come_online
):
    iago = make_member()
    queue_id = register_queue(clients(hamlet))
    first, second = now_seconds(), now_seconds() + timedelta(seconds=1)
    come_online(othello, first)
    come_online(iago, second)
    both = [legacy_event(othello, first, 0), legacy_event(iago, second, 1)]
    assert poll(clients(hamlet), queue_id) == both
    # Unacknowledged events come again, with the same ids.
    assert poll(clients(hamlet), queue_id, last_event_id=-1) == both
    assert poll(clients(hamlet), queue_id, last_event_id=0) == both[1:]
    assert poll(clients(hamlet), queue_id, last_event_id=1) == []
    assert poll(clients(hamlet), queue_id, last_event_id=1) == []


def test_acknowledging_the_wrong_event_ids(hamlet, othello, clients, come_online):
    queue_id = register_queue(clients(hamlet))
    come_online(othello)
    assert [event["id"] for event in poll(clients(hamlet), queue_id)] == [0]
    args = {"queue_id": queue_id, "dont_block": True}
    assert_error(
        get_events(clients(hamlet), last_event_id=5, **args), "Event 5 was not in this queue"
    )
    # As in Zulip, the events up to the bad id were dropped all the same.
    assert_error(
        get_events(clients(hamlet), last_event_id=-1, **args),
        "An event newer than -1 has already been pruned!",
    )


def test_a_queue_that_wants_no_presence_gets_none(hamlet, othello, clients, come_online):
    queue_id = register_queue(clients(hamlet), event_types=[])
    come_online(othello)
    assert poll(clients(hamlet), queue_id) == []


def test_other_realms_get_no_event(hamlet, make_member, clients, come_online):
    stranger = make_member(realm=RealmFactory())
    queue_id = register_queue(clients(stranger))
    come_online(hamlet)
    assert poll(clients(stranger), queue_id) == []


# Long polls and heartbeats ------------------------------------------------------------------


@override_settings(PRESENCE_EVENT_LONG_POLL_SECS=1)
def test_a_long_poll_with_nothing_to_say_ends_with_a_heartbeat(hamlet, clients):
    queue_id = register_queue(clients(hamlet))
    started = time.monotonic()
    body = success(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1))
    assert time.monotonic() - started >= 1
    assert body == {
        "result": "success",
        "msg": "",
        "events": [{"type": "heartbeat", "id": 0}],
        "queue_id": queue_id,
    }
    # The heartbeat is an event like any other: acknowledged, it is gone.
    assert poll(clients(hamlet), queue_id, last_event_id=0) == []


def test_a_long_poll_returns_as_soon_as_an_event_comes(hamlet, othello, clients):
    queue_id = register_queue(clients(hamlet))
    entry = {
        "user_id": othello.user_id,
        "email": othello.email,
        "server_timestamp": 1700000000.5,
        "presence": {"active_timestamp": 1700000000, "idle_timestamp": 1700000000},
    }
    started = time.monotonic()
    with after(0.3, lambda: get_event_backend().publish(hamlet.realm_id, entry)):
        body = success(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1))
    assert time.monotonic() - started < 5
    assert body["queue_id"] == queue_id
    assert body["events"] == [
        {
            "type": "presence",
            "user_id": othello.user_id,
            "email": othello.email,
            "server_timestamp": 1700000000.5,
            "presence": {
                "website": {
                    "client": "website",
                    "status": "active",
                    "timestamp": 1700000000,
                    "pushable": False,
                }
            },
            "id": 0,
        }
    ]


def test_deleting_a_queue_ends_its_long_poll(hamlet, clients):
    queue_id = register_queue(clients(hamlet))

    def delete() -> None:
        async def load_and_delete() -> None:
            backend = get_event_backend()
            queue = await backend.load_queue(queue_id)
            assert queue is not None
            await backend.delete_queue(queue)

        asyncio.run(load_and_delete())

    with after(0.3, delete):
        body = success(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1))
    assert body == {"result": "success", "msg": "", "events": [], "queue_id": queue_id}


# Queue ids, expiry and DELETE ---------------------------------------------------------------


def bad_queue(response, queue_id: str) -> None:
    assert_error(
        response,
        f"Bad event queue ID: {queue_id}",
        code="BAD_EVENT_QUEUE_ID",
        queue_id=queue_id,
    )


def test_unknown_and_other_peoples_queues_are_bad_queue_ids(hamlet, othello, clients):
    bad_queue(get_events(clients(hamlet), queue_id="nope", last_event_id=-1), "nope")
    queue_id = register_queue(clients(othello))
    bad_queue(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1), queue_id)


def test_idle_queues_expire(hamlet, clients, monkeypatch):
    queue_id = register_queue(clients(hamlet))
    registered = time.time()
    monkeypatch.setattr(queues, "now", lambda: registered + 599)
    assert poll(clients(hamlet), queue_id) == []
    # 599 s after that poll: still there. 600 s: gone.
    monkeypatch.setattr(queues, "now", lambda: registered + 599 + 599)
    assert poll(clients(hamlet), queue_id) == []
    monkeypatch.setattr(queues, "now", lambda: registered + 599 + 599 + 600)
    bad_queue(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1), queue_id)


@override_settings(PRESENCE_EVENT_QUEUE_TIMEOUT_SECS=30)
def test_the_queue_timeout_is_a_setting(hamlet, clients, monkeypatch):
    queue_id = register_queue(clients(hamlet))
    registered = time.time()
    monkeypatch.setattr(queues, "now", lambda: registered + 31)
    bad_queue(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1), queue_id)


def test_missing_and_malformed_events_parameters(hamlet, clients):
    client = clients(hamlet)
    assert_error(get_events(client, last_event_id=-1), "Missing 'queue_id' argument")
    assert_error(get_events(client, queue_id="q"), "Missing 'last_event_id' argument")
    assert_error(
        get_events(client, queue_id="q", last_event_id="x"), "last_event_id is not valid JSON"
    )
    assert_error(
        get_events(client, queue_id="q", last_event_id=-1, dont_block="yes"),
        "dont_block is not valid JSON",
    )
    # Types are checked before the queue is looked at, as in Zulip.
    assert_error(
        get_events(client, queue_id="q", last_event_id=1.5), "last_event_id is not an integer"
    )


def test_events_reports_parameters_it_does_not_use(hamlet, clients):
    queue_id = register_queue(clients(hamlet))
    body = success(
        get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1, dont_block=True, x="1")
    )
    assert body == {
        "result": "success",
        "msg": "",
        "events": [],
        "ignored_parameters_unsupported": ["x"],
    }


def test_delete_removes_the_queue(hamlet, clients):
    queue_id = register_queue(clients(hamlet))
    assert success(delete_queue(clients(hamlet), queue_id=queue_id)) == {
        "result": "success",
        "msg": "",
    }
    bad_queue(get_events(clients(hamlet), queue_id=queue_id, last_event_id=-1), queue_id)
    bad_queue(delete_queue(clients(hamlet), queue_id=queue_id), queue_id)


def test_delete_errors(hamlet, othello, clients):
    queue_id = register_queue(clients(othello))
    assert_error(
        delete_queue(clients(hamlet), queue_id=queue_id),
        "You are not authorized to access this queue",
    )
    assert_error(
        delete_queue(clients(hamlet)),
        "Missing 'queue_id' argument",
        code="REQUEST_VARIABLE_MISSING",
        var_name="queue_id",
    )
    # Still there for its owner.
    assert poll(clients(othello), queue_id) == []


def test_other_methods_are_not_allowed(hamlet, clients):
    assert_error(
        clients(hamlet).post("/api/v1/events"),
        "Method Not Allowed",
        status=405,
        allowed_methods=["GET", "DELETE"],
    )


# Authentication -----------------------------------------------------------------------------


def test_events_authentication_errors(hamlet, clients):
    queue_id = register_queue(clients(hamlet))
    params = {"queue_id": queue_id, "last_event_id": "-1", "dont_block": "true"}
    anonymous = Client().get("/api/v1/events", params)
    assert_error(
        anonymous,
        "Not logged in: API authentication or user session required",
        status=401,
        code="UNAUTHORIZED",
    )
    assert anonymous["WWW-Authenticate"] == WWW_AUTHENTICATE
    wrong_key = Client(HTTP_AUTHORIZATION=basic_auth(hamlet.email, "a" * 32))
    response = wrong_key.get("/api/v1/events", params)
    assert_error(response, "Invalid API key", status=401, code="UNAUTHORIZED")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    actions.do_deactivate_member(hamlet)
    assert_error(
        clients(hamlet).get("/api/v1/events", params),
        "Account is deactivated",
        status=401,
        code="USER_DEACTIVATED",
    )


def test_sessions_work_and_delete_needs_the_csrf_token(hamlet, clients):
    queue_id = register_queue(clients(hamlet))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(hamlet.user)
    assert poll(browser, queue_id) == []
    assert_error(
        delete_queue(browser, queue_id=queue_id),
        "CSRF error: CSRF cookie not set.",
        status=403,
        code="CSRF_FAILED",
        reason="CSRF cookie not set.",
    )
    token = "a" * 32
    browser.cookies["csrftoken"] = token
    response = browser.delete(
        EVENTS_URL, form(queue_id=queue_id), content_type=FORM, headers={"X-CSRFToken": token}
    )
    assert success(response) == {"result": "success", "msg": ""}


# Who gets which event -----------------------------------------------------------------------


@override_settings(PRESENCE_LIMIT_TO_ACCESSIBLE_USERS=True)
def test_access_limiting_applies_to_events(hamlet, othello, make_member, clients, come_online):
    lonely_guest = make_member(role=RealmMember.Role.GUEST)
    friendly_guest = make_member(role=RealmMember.Role.GUEST)
    team = Group.objects.create(name="team")
    team.user_set.add(friendly_guest.user, othello.user)
    queues_by_member = {
        member: register_queue(clients(member)) for member in (hamlet, lonely_guest, friendly_guest)
    }
    moment = now_seconds()
    come_online(othello, moment)
    received = {
        member: [event["user_id"] for event in poll(clients(member), queue_id)]
        for member, queue_id in queues_by_member.items()
    }
    assert received == {
        hamlet: [othello.user_id],
        lonely_guest: [],
        friendly_guest: [othello.user_id],
    }
    # Guests' own changes reach members.
    come_online(lonely_guest, moment)
    assert [e["user_id"] for e in poll(clients(hamlet), queues_by_member[hamlet], 0)] == [
        lonely_guest.user_id
    ]


def test_invisible_mode_toggles_force_events(
    hamlet, othello, make_member, clients, come_online, django_capture_on_commit_callbacks
):
    moment = now_seconds()
    come_online(othello, moment)
    queue_id = register_queue(clients(hamlet))
    with override_settings(PRESENCE_USER_LIMIT_FOR_EVENTS=1):  # forced events ignore the limit
        with frozen_now(moment), django_capture_on_commit_callbacks(execute=True):
            actions.do_set_presence_enabled(othello, False, log_time=moment)
        backdated = ts(moment) - 265
        (event,) = poll(clients(hamlet), queue_id)
        assert (event["id"], event["presence"]["website"]["timestamp"]) == (0, backdated)
        back = moment + timedelta(seconds=10)
        with frozen_now(back), django_capture_on_commit_callbacks(execute=True):
            actions.do_set_presence_enabled(othello, True, log_time=back)
        assert poll(clients(hamlet), queue_id, last_event_id=0) == [legacy_event(othello, back, 1)]


def test_a_failing_event_backend_does_not_fail_the_presence_write(
    hamlet, clients, settings, caplog, django_capture_on_commit_callbacks
):
    settings.PRESENCE_EVENT_BACKEND = "django_presence.events.backends.redis.RedisBackend"
    settings.PRESENCE_EVENT_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with django_capture_on_commit_callbacks(execute=True):
        response = post_presence(clients(hamlet), status="active")
    assert success(response)["presences"] != {}
    assert f"Could not publish the presence event of user {hamlet.user_id}" in caplog.text
    assert PresenceSequence.objects.get(realm=hamlet.realm).events_lost == 1


def test_an_event_that_could_not_be_published_ends_the_realms_older_queues(
    hamlet, othello, make_member, clients, come_online, monkeypatch
):
    """Its queues would miss it for good: their next poll is BAD_EVENT_QUEUE_ID, so their
    clients register again and fetch the state afresh. Queues registered later, and other
    realms' queues, carry on."""
    older = register_queue(clients(hamlet))
    elsewhere = make_member(realm=RealmFactory())
    elsewhere_queue = register_queue(clients(elsewhere))

    def down(realm_id: int, entry: Any) -> None:
        raise ConnectionError("the event backend is down")

    with monkeypatch.context() as patch:
        patch.setattr(get_event_backend(), "publish", down)
        come_online(othello)
    bad_queue(get_events(clients(hamlet), queue_id=older, last_event_id=-1), older)
    newer = register_queue(clients(hamlet))
    assert poll(clients(hamlet), newer) == []
    iago = make_member()
    come_online(iago)
    assert [event["user_id"] for event in poll(clients(hamlet), newer)] == [iago.user_id]
    assert poll(clients(elsewhere), elsewhere_queue) == []


def test_a_loss_that_cannot_be_recorded_does_not_fail_the_write(
    hamlet, othello, clients, come_online, monkeypatch, caplog
):
    def down(*args: Any) -> None:
        raise ConnectionError("down")

    monkeypatch.setattr(get_event_backend(), "publish", down)
    monkeypatch.setattr(event_receivers, "do_record_lost_presence_event", down)
    come_online(othello)
    assert f"Could not record the lost presence event of user {othello.user_id}" in caplog.text


def test_a_poll_costs_one_query_only(hamlet, clients, django_assert_num_queries):
    """The API key, with the realm's count of lost events joined: comparing it costs nothing."""
    queue_id = register_queue(clients(hamlet))
    with django_assert_num_queries(1):
        assert poll(clients(hamlet), queue_id) == []


def test_the_realm_size_limit_stops_unforced_events(hamlet, othello, clients, come_online):
    queue_id = register_queue(clients(hamlet))
    with override_settings(PRESENCE_USER_LIMIT_FOR_EVENTS=1):
        come_online(othello)
    assert poll(clients(hamlet), queue_id) == []
    with override_settings(PRESENCE_USER_LIMIT_FOR_EVENTS=2):
        come_online(hamlet)
    assert [event["user_id"] for event in poll(clients(hamlet), queue_id)] == [hamlet.user_id]
