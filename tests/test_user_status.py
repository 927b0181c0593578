"""Zulip's user status: GET users/<id>/status, POST users/me/status, POST users/<id>/status (for
administrators), the user_status event and register's user_status, case by case as the spec's
checklist numbers them (../shared/spec/zulip-user-status-spec.md, section 5), with Zulip's test
realm's names: hamlet (member), iago (administrator), cordelia (member), polonius (guest)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group

from django_presence import actions
from django_presence.emoji import codepoint_to_name, name_to_codepoint, unicode_character
from django_presence.models import RealmMember, UserStatus
from django_presence.signals import user_status_changed

from .api_utils import (
    FORM,
    assert_error,
    form,
    frozen_now,
    now_seconds,
    post_presence,
    recording,
    success,
    user_presence_url,
)
from .events_utils import poll, register, register_queue, use_fresh_backends

pytestmark = pytest.mark.django_db

OWN_STATUS_URL = "/api/v1/users/me/status"
NO_NEW_VALUES = "Client did not pass any new values."
MUST_PASS_NAME = "Client must pass emoji_name if they pass either emoji_code or reaction_type."
CAR = {"emoji_name": "car", "emoji_code": "1f697", "reaction_type": "unicode_emoji"}
NO_EMOJI = {"emoji_name": "", "emoji_code": "", "reaction_type": "unicode_emoji"}


def status_url(user_id: int) -> str:
    return f"/api/v1/users/{user_id}/status"


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    use_fresh_backends(monkeypatch)


@pytest.fixture
def iago(make_member) -> RealmMember:
    return make_member(
        user__username="iago", user__email="iago@zulip.com", role=RealmMember.Role.ADMINISTRATOR
    )


@pytest.fixture
def cordelia(make_member) -> RealmMember:
    return make_member(user__username="cordelia", user__email="cordelia@zulip.com")


@pytest.fixture
def bot(make_member) -> RealmMember:
    return make_member(user__username="bot", user__email="bot@zulip.com", is_bot=True)


class Org:
    """The members' API clients, each request's on-commit work done (events, signals)."""

    def __init__(self, api_client_for: Any, capture: Any) -> None:
        self._api_client_for = api_client_for
        self._capture = capture
        self._clients: dict[int, Any] = {}

    def client(self, member: RealmMember) -> Any:
        if member.user_id not in self._clients:
            self._clients[member.user_id] = self._api_client_for(member)
        return self._clients[member.user_id]

    def post(self, member: RealmMember, url: str, **params: Any) -> Any:
        with self._capture(execute=True):
            return self.client(member).post(url, form(**params), content_type=FORM)

    def set_status(self, member: RealmMember, **params: Any) -> Any:
        return self.post(member, OWN_STATUS_URL, **params)

    def get_status(self, viewer: RealmMember, target: RealmMember) -> dict[str, Any]:
        status: dict[str, Any] = success(self.client(viewer).get(status_url(target.user_id)))[
            "status"
        ]
        return status

    def queue(self, member: RealmMember) -> str:
        return register_queue(self.client(member), event_types=["user_status"])


@pytest.fixture
def org(api_client_for, django_capture_on_commit_callbacks) -> Org:
    return Org(api_client_for, django_capture_on_commit_callbacks)


class Watcher:
    """A member's user_status queue, polled for what arrived since the last look."""

    def __init__(self, org: Org, member: RealmMember) -> None:
        self.org, self.member = org, member
        self.queue_id = org.queue(member)
        self.last_event_id = -1

    def new_events(self) -> list[dict[str, Any]]:
        events = poll(self.org.client(self.member), self.queue_id, self.last_event_id)
        if events:
            self.last_event_id = events[-1]["id"]
        return [{key: value for key, value in event.items() if key != "id"} for event in events]


def status_event(member: RealmMember, **fields: Any) -> dict[str, Any]:
    return {"type": "user_status", "user_id": member.user_id, **fields}


# Checklist 1-6: errors of POST users/me/status, in Zulip's order -----------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, NO_NEW_VALUES),  # 1
        ({"status_text": "In a meeting", "emoji_code": "1f4bb"}, MUST_PASS_NAME),  # 2
        (
            {"status_text": "In a meeting", "emoji_code": "1f4bb", "emoji_name": "invalid"},
            "Emoji 'invalid' does not exist",
        ),  # 3
        (
            {"status_text": "In a meeting", "emoji_code": "1f4bb", "emoji_name": "car"},
            "Invalid emoji name.",
        ),  # 4
        (
            {
                "status_text": "In a meeting",
                "emoji_code": "1f4bb",
                "emoji_name": "car",
                "reaction_type": "realm_emoji",
            },
            "Invalid custom emoji.",
        ),  # 5
        ({"status_text": "x" * 61}, "status_text is too long (limit: 60 characters)"),  # 6
        ({"away": "maybe"}, "away is not valid JSON"),  # 26
        ({"away": "1"}, "away is not a boolean"),  # 26
        ({"away": '"yes"'}, "away is not a boolean"),
        ({"emoji_code": "1f697", "reaction_type": "unicode_emoji"}, NO_NEW_VALUES),
        ({"reaction_type": "realm_emoji", "status_text": "hi"}, MUST_PASS_NAME),
        ({"emoji_name": "car", "emoji_code": "1F697"}, "Invalid emoji code."),  # 28
        ({**CAR, "reaction_type": "foo"}, "Invalid emoji type."),  # 28
        (
            {"emoji_name": "car", "emoji_code": "zulip", "reaction_type": "zulip_extra_emoji"},
            "Invalid emoji name.",
        ),
        (
            {"emoji_name": "zulip", "emoji_code": "1f697", "reaction_type": "zulip_extra_emoji"},
            "Invalid emoji code.",
        ),
        # Too long is checked before anything else but the bot refusal.
        (
            {"status_text": "x" * 61, "emoji_code": "1f4bb"},
            "status_text is too long (limit: 60 characters)",
        ),
        ({"status_text": "a\x00b"}, "status_text contains NULL (0x00) characters."),
    ],
)
def test_refusals(org, hamlet, params, message):
    assert_error(org.set_status(hamlet, **params), message)
    assert not UserStatus.objects.exists()


def test_sixty_characters_after_stripping_are_enough(org, hamlet):
    success(org.set_status(hamlet, status_text="  " + "é" * 60 + "\n"))
    assert org.get_status(hamlet, hamlet) == {"status_text": "é" * 60}


# Checklist 7-13: a sequence of changes, its events and reads ---------------------------------


def test_the_sequence_of_zulips_test(org, hamlet, othello):
    watcher = Watcher(org, othello)
    success(org.set_status(hamlet, away="true", status_text="on vacation"))  # 7
    assert watcher.new_events() == [status_event(hamlet, away=True, status_text="on vacation")]
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is False
    assert org.get_status(othello, hamlet) == {"away": True, "status_text": "on vacation"}
    assert success(org.client(othello).get(status_url(hamlet.user_id))) == {
        "result": "success",
        "msg": "",
        "status": {"away": True, "status_text": "on vacation"},
    }

    success(org.set_status(hamlet, emoji_name="car"))  # 8
    assert watcher.new_events() == [status_event(hamlet, **CAR)]
    assert org.get_status(othello, hamlet) == {"away": True, "status_text": "on vacation", **CAR}

    success(org.set_status(hamlet, emoji_name=""))  # 9
    assert watcher.new_events() == [status_event(hamlet, **NO_EMOJI)]
    assert org.get_status(othello, hamlet) == {"away": True, "status_text": "on vacation"}

    success(org.set_status(hamlet, away="false"))  # 10
    assert watcher.new_events() == [status_event(hamlet, away=False)]
    assert org.get_status(othello, hamlet) == {"status_text": "on vacation"}
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is True

    success(org.set_status(hamlet, status_text="   in office  "))  # 11
    assert watcher.new_events() == [status_event(hamlet, status_text="in office")]

    success(org.set_status(hamlet, status_text=""))  # 12
    assert watcher.new_events() == [status_event(hamlet, status_text="")]
    assert org.get_status(othello, hamlet) == {}
    state = success(register(org.client(othello), fetch_event_types=["user_status"]))
    assert state["user_status"] == {}

    success(org.set_status(hamlet, away="true"))  # 13
    assert watcher.new_events() == [status_event(hamlet, away=True)]
    success(org.set_status(hamlet, status_text="   at the beach  "))
    assert org.get_status(othello, hamlet) == {"status_text": "at the beach", "away": True}


def test_emoji_cleared_whatever_code_and_type_come_with_it(org, hamlet, othello):
    success(org.set_status(hamlet, **CAR))
    watcher = Watcher(org, othello)
    success(org.set_status(hamlet, emoji_name="", emoji_code="bogus", reaction_type="foo"))
    assert watcher.new_events() == [status_event(hamlet, **NO_EMOJI)]


def test_an_empty_code_without_a_name_is_ignored(org, hamlet, othello):  # 30
    success(org.set_status(hamlet, **CAR))
    watcher = Watcher(org, othello)
    success(org.set_status(hamlet, status_text="hi", emoji_code=""))
    assert watcher.new_events() == [status_event(hamlet, status_text="hi")]
    assert org.get_status(othello, hamlet) == {"status_text": "hi", **CAR}


def test_one_event_per_write_even_when_nothing_changes(org, hamlet, othello):
    success(org.set_status(hamlet, status_text="same"))
    watcher = Watcher(org, othello)
    success(org.set_status(hamlet, status_text="same"))
    assert watcher.new_events() == [status_event(hamlet, status_text="same")]


def test_unknown_parameters_are_reported(org, hamlet):
    body = success(org.set_status(hamlet, status_text="x", bogus="1", client="test"))
    assert body == {"result": "success", "msg": "", "ignored_parameters_unsupported": ["bogus"]}


def test_aliases_are_names_and_echoed_as_sent(org, hamlet):
    assert name_to_codepoint()["thumbs_up"] == name_to_codepoint()["+1"]
    success(org.set_status(hamlet, emoji_name="thumbs_up"))
    assert org.get_status(hamlet, hamlet) == {
        "emoji_name": "thumbs_up",
        "emoji_code": "1f44d",
        "reaction_type": "unicode_emoji",
    }


def test_the_table_is_zulips():
    assert name_to_codepoint()["car"] == "1f697"
    assert codepoint_to_name()["1f697"] == "car"
    assert unicode_character("1f697") == "\N{AUTOMOBILE}"
    # Codes are lowercase, without the variation selector.
    assert all(code == code.lower() and "fe0f" not in code for code in codepoint_to_name())


def test_the_zulip_extra_emoji(org, hamlet, othello):  # 27
    watcher = Watcher(org, othello)
    success(org.set_status(hamlet, emoji_name="zulip"))
    extra = {"emoji_name": "zulip", "emoji_code": "zulip", "reaction_type": "zulip_extra_emoji"}
    assert watcher.new_events() == [status_event(hamlet, **extra)]
    success(org.set_status(hamlet, **extra))


def test_custom_emoji(org, hamlet, realm):  # 29
    green_tick = actions.do_add_realm_emoji(realm, "green_tick")
    code = str(green_tick.pk)
    success(org.set_status(hamlet, emoji_name="green_tick"))
    assert org.get_status(hamlet, hamlet) == {
        "emoji_name": "green_tick",
        "emoji_code": code,
        "reaction_type": "realm_emoji",
    }
    realm_emoji = {"emoji_code": code, "reaction_type": "realm_emoji"}
    assert_error(
        org.set_status(hamlet, emoji_name="other", **realm_emoji), "Invalid custom emoji name."
    )
    actions.do_set_realm_emoji_deactivated(green_tick, True)
    assert_error(
        org.set_status(hamlet, emoji_name="green_tick", **realm_emoji),
        "This custom emoji has been deactivated.",
    )
    # Deactivated, the name no longer resolves to it.
    assert_error(
        org.set_status(hamlet, emoji_name="green_tick"), "Emoji 'green_tick' does not exist"
    )


def test_custom_emoji_shadow_unicode_names_and_stay_in_their_realm(org, hamlet, realm):
    car = actions.do_add_realm_emoji(realm, "car")
    success(org.set_status(hamlet, emoji_name="car"))
    assert org.get_status(hamlet, hamlet)["emoji_code"] == str(car.pk)
    other = actions.do_create_realm("other", "Other")
    elsewhere = actions.do_add_realm_emoji(other, "elsewhere")
    assert_error(
        org.set_status(
            hamlet,
            emoji_name="elsewhere",
            emoji_code=str(elsewhere.pk),
            reaction_type="realm_emoji",
        ),
        "Invalid custom emoji.",
    )
    assert_error(
        org.set_status(
            hamlet,
            emoji_name="x",
            emoji_code="99999999999999999999999",
            reaction_type="realm_emoji",
        ),
        "Invalid custom emoji.",
    )


def test_bots_cannot_set_their_own_status(org, bot):  # 22
    assert_error(
        org.set_status(bot, status_text="x"), "This endpoint does not accept bot requests."
    )
    # Before any parameter is read.
    assert_error(org.set_status(bot, away="maybe"), "This endpoint does not accept bot requests.")


# Checklist 14, 15, 24: GET users/<id>/status ------------------------------------------------


def test_get_errors(org, hamlet, bot, make_member):
    client = org.client(hamlet)
    assert_error(client.get(status_url(12345)), "No such user")  # 14
    assert_error(client.get(status_url(bot.user_id)), "No such user")  # 24
    gone = make_member()
    actions.do_deactivate_member(gone)
    assert_error(client.get(status_url(gone.user_id)), "User is deactivated")
    assert_error(client.get(status_url(10**30)), "No such user")
    assert client.get("/api/v1/users/hamlet/status").status_code == 404


def test_get_without_a_status_and_unknown_parameters(org, hamlet, iago):  # 15
    body = success(org.client(hamlet).get(status_url(iago.user_id), {"bogus": "1"}))
    assert body == {"result": "success", "msg": "", "status": {}}


def test_bots_may_read_statuses(org, hamlet, bot):
    success(org.set_status(hamlet, status_text="hi"))
    assert org.get_status(bot, hamlet) == {"status_text": "hi"}


def test_get_users_me_status_is_not_served(org, hamlet):
    response = org.client(hamlet).get(OWN_STATUS_URL)
    assert_error(response, "Method Not Allowed", status=405, allowed_methods=["POST"])


def test_invisible_without_a_status_row_reads_empty(org, hamlet, othello):
    actions.do_set_presence_enabled(hamlet, False)
    assert org.get_status(othello, hamlet) == {}


# Checklist 16-21, 23: POST users/<id>/status ------------------------------------------------


def test_admin_endpoint_refusals(org, hamlet, iago, bot):
    assert_error(org.post(hamlet, status_url(12345)), "No such user")  # 16
    params = {"status_text": "x", "emoji_code": "1f4bb", "emoji_name": "car"}
    assert_error(
        org.post(hamlet, status_url(iago.user_id), **params, reaction_type="realm_emoji"),
        "Insufficient permission",
    )  # 17
    assert_error(org.post(iago, status_url(hamlet.user_id)), NO_NEW_VALUES)  # 20
    assert_error(
        org.post(iago, status_url(hamlet.user_id), status_text="x" * 61),
        "status_text is too long (limit: 60 characters)",
    )
    # Too long before the lookup.
    assert_error(
        org.post(hamlet, status_url(12345), status_text="x" * 61),
        "status_text is too long (limit: 60 characters)",
    )
    assert_error(org.post(iago, status_url(bot.user_id), status_text="x"), "No such user")
    assert_error(org.post(iago, status_url(hamlet.user_id), away="true"), NO_NEW_VALUES)  # 21


def test_admin_changes_a_status(org, hamlet, iago, othello):  # 18, 19, 21
    success(org.set_status(hamlet, **CAR))
    watcher = Watcher(org, othello)
    success(org.post(iago, status_url(hamlet.user_id), emoji_name=""))
    assert watcher.new_events() == [status_event(hamlet, **NO_EMOJI)]
    success(org.post(iago, status_url(hamlet.user_id), status_text="   at the beach  "))
    assert watcher.new_events() == [status_event(hamlet, status_text="at the beach")]
    body = success(org.post(iago, status_url(hamlet.user_id), away="true", status_text="hi"))
    assert body["ignored_parameters_unsupported"] == ["away"]
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is True
    assert org.get_status(othello, hamlet) == {"status_text": "hi"}


def test_owners_change_statuses_and_admins_change_owners(org, hamlet, make_member):
    owner = make_member(role=RealmMember.Role.OWNER)
    admin = make_member(role=RealmMember.Role.ADMINISTRATOR)
    moderator = make_member(role=RealmMember.Role.MODERATOR)
    success(org.post(owner, status_url(hamlet.user_id), status_text="a"))
    success(org.post(admin, status_url(owner.user_id), status_text="b"))
    assert_error(
        org.post(moderator, status_url(hamlet.user_id), status_text="c"),
        "Insufficient permission",
    )


def test_bots_with_an_admin_role_may_change_statuses(org, hamlet, make_member):  # 23
    admin_bot = make_member(is_bot=True, role=RealmMember.Role.ADMINISTRATOR)
    member_bot = make_member(is_bot=True)
    success(org.post(admin_bot, status_url(hamlet.user_id), status_text="x"))
    assert_error(
        org.post(member_bot, status_url(hamlet.user_id), status_text="x"),
        "Insufficient permission",
    )


def test_other_realms_users_are_not_found(org, hamlet, iago):
    other = actions.do_create_realm("elsewhere", "Elsewhere")
    from .factories import MemberFactory

    stranger = MemberFactory(realm=other)
    assert_error(org.client(hamlet).get(status_url(stranger.user_id)), "No such user")
    assert_error(org.post(iago, status_url(stranger.user_id), status_text="x"), "No such user")
    success(org.set_status(stranger, status_text="theirs"))
    state = success(register(org.client(hamlet), fetch_event_types=["user_status"]))
    assert state["user_status"] == {}


# Checklist 25: guests ------------------------------------------------------------------------


def test_guests_see_only_the_users_they_may_access(org, settings, hamlet, cordelia, make_member):
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    polonius = make_member(user__username="polonius", role=RealmMember.Role.GUEST)
    group = Group.objects.create(name="denmark")
    group.user_set.add(hamlet.user, polonius.user)
    success(org.set_status(hamlet, status_text="hamlet's"))
    success(org.set_status(cordelia, status_text="cordelia's"))
    state = success(register(org.client(polonius), fetch_event_types=["user_status"]))
    assert state["user_status"] == {str(hamlet.user_id): {"status_text": "hamlet's"}}
    assert_error(org.client(polonius).get(status_url(cordelia.user_id)), "Insufficient permission")
    watcher = Watcher(org, polonius)
    success(org.set_status(cordelia, status_text="changed"))
    success(org.set_status(hamlet, status_text="changed"))
    assert watcher.new_events() == [status_event(hamlet, status_text="changed")]


# Checklist 31: register ----------------------------------------------------------------------


def test_register_user_status(org, hamlet, othello, iago):
    success(org.set_status(hamlet, away="true", status_text="on vacation"))
    success(org.set_status(hamlet, emoji_name="car"))
    success(org.set_status(iago, emoji_name="car"))
    success(org.set_status(iago, emoji_name=""))  # nothing left to show: left out
    state = success(register(org.client(othello), fetch_event_types=["user_status"]))
    assert state["user_status"] == {
        str(hamlet.user_id): {"away": True, "status_text": "on vacation", **CAR}
    }
    presence_only = success(register(org.client(othello), fetch_event_types=["presence"]))
    assert "user_status" not in presence_only
    everything = success(register(org.client(othello)))
    assert str(hamlet.user_id) in everything["user_status"]
    by_event_types = success(register(org.client(othello), event_types=["user_status"]))
    assert "user_status" in by_event_types and "presences" not in by_event_types


def test_queues_get_only_the_event_types_they_asked_for(org, hamlet, othello):
    presence_queue = register_queue(org.client(othello), event_types=["presence"])
    status_queue = org.queue(othello)
    success(org.set_status(hamlet, status_text="x"))
    with frozen_now(now_seconds()), org._capture(execute=True):
        success(post_presence(org.client(hamlet), status="active"))
    assert [event["type"] for event in poll(org.client(othello), presence_queue)] == ["presence"]
    assert [event["type"] for event in poll(org.client(othello), status_queue)] == ["user_status"]


# Checklist 32, 33: Zulip 12's single-user presence -------------------------------------------


def test_single_user_presence_has_modern_and_legacy_fields(org, hamlet, othello, bot):
    moment = now_seconds() - timedelta(seconds=300)
    with frozen_now(moment), org._capture(execute=True):
        success(post_presence(org.client(hamlet), status="active"))
    body = success(org.client(othello).get(user_presence_url(hamlet.user_id)))
    assert list(body) == ["result", "msg", "server_timestamp", "presence"]
    assert isinstance(body["server_timestamp"], float)
    stamp = int(moment.timestamp())
    assert body["presence"] == {
        "active_timestamp": stamp,
        "idle_timestamp": stamp,
        "aggregated": {"status": "offline", "timestamp": stamp},
        "website": {"status": "active", "timestamp": stamp},
    }
    assert_error(
        org.client(othello).get(user_presence_url(bot.user_id)),
        "Presence is not supported for bot users.",
    )
    assert_error(
        org.client(hamlet).get(user_presence_url(othello.user_id)),
        f"No presence data for {othello.user_id}",
    )


# The signal ----------------------------------------------------------------------------------


def test_the_signal(org, hamlet, iago):
    with recording(user_status_changed) as sent:
        success(org.set_status(hamlet, status_text="hi", emoji_name="car"))
        success(org.post(iago, status_url(hamlet.user_id), emoji_name=""))
    assert [(s["member"].pk, s["acting_user"].pk) for s in sent] == [
        (hamlet.pk, hamlet.user.pk),
        (hamlet.pk, iago.user.pk),
    ]
    assert sent[0]["status"] == {"status_text": "hi", **CAR}
    assert sent[0]["changed"] == {"status_text": "hi", **CAR}
    assert sent[1]["status"] == {"status_text": "hi"}
    assert sent[1]["changed"] == NO_EMOJI
    assert sent[0]["realm"] == hamlet.realm
    assert not sent[0]["ended"] and not sent[0]["late"]


# Organization policy: no invisible mode ----------------------------------------------------


def test_a_realm_that_forbids_invisible_mode(org, realm, hamlet, othello, settings):
    success(org.set_status(hamlet, away="true"))
    org.post(othello, "/api/v1/users/me/presence", status="active")
    presence_queue = register_queue(
        org.client(othello),
        event_types=["presence"],
        client_capabilities={"simplified_presence_events": True},
    )
    with org._capture(execute=True):
        actions.do_set_realm_invisible_mode_allowed(realm, False)
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is True
    # Made visible again as turning invisible mode off does: with a forced presence event.
    [presence_event] = poll(org.client(othello), presence_queue)
    assert list(presence_event["presences"]) == [str(hamlet.user_id)]

    refusal = "This organization does not allow invisible mode."
    assert_error(org.set_status(hamlet, away="true"), refusal)
    assert_error(org.set_status(hamlet, away="true", status_text="x"), refusal)
    settings_url = "/api/v1/settings"
    with org._capture(execute=True):
        response = org.client(hamlet).patch(
            settings_url, form(presence_enabled=False), content_type=FORM
        )
    assert_error(response, refusal)
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is True
    success(org.set_status(hamlet, away="false"))
    with org._capture(execute=True):
        success(
            org.client(hamlet).patch(settings_url, form(presence_enabled=True), content_type=FORM)
        )

    actions.do_set_realm_invisible_mode_allowed(realm, True)
    success(org.set_status(hamlet, away="true"))
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is False


def test_a_status_event_that_could_not_be_published_ends_the_realms_older_queues(
    org, hamlet, othello, monkeypatch, caplog
):
    from django_presence.events.backends import get_event_backend
    from django_presence.models import PresenceSequence

    older = org.queue(othello)

    def down(realm_id: int, entry: Any) -> None:
        raise ConnectionError("the event backend is down")

    with monkeypatch.context() as patch:
        patch.setattr(get_event_backend(), "publish", down)
        success(org.set_status(hamlet, status_text="unheard"))
    assert f"Could not publish the user_status event of user {hamlet.user_id}" in caplog.text
    assert PresenceSequence.objects.get(realm=hamlet.realm).events_lost == 1
    response = org.client(othello).get(
        "/api/v1/events", {"queue_id": older, "last_event_id": "-1", "dont_block": "true"}
    )
    assert response.json()["code"] == "BAD_EVENT_QUEUE_ID"


def test_the_tables_agree_with_the_packages_own_lookups():
    """name_to_codepoint and codepoint_to_name are the package's table read as Zulip's
    build_emoji reads it: checked against the package's own lookups (every 10th name; each
    lookup scans the whole table)."""
    from zulip_emoji_mapping import ZulipEmojiMapping

    names = sorted(name_to_codepoint())
    assert len(names) > 2000
    for name in names[::10]:
        code = name_to_codepoint()[name]
        character = ZulipEmojiMapping.get_emoji_by_name(name)
        assert unicode_character(code) == character.replace("\ufe0f", ""), name
        # (The package's reverse lookup, get_emoji_name, does not zero-pad codes such as
        # 00a9, so it is not used.)
        assert name_to_codepoint()[codepoint_to_name()[code]] == code, name
