"""Realm isolation: two realms whose members share emails. No response ever names a member of
another realm, and another realm's user id or email gets exactly the error a nonexistent one
gets, so the API does not even reveal that such a user exists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from django_presence import actions
from django_presence.access import can_access
from django_presence.models import RealmMember
from django_presence.queries import count_event_recipients
from django_presence.signals import presence_changed
from loopback.auth import basic_auth

from .api_utils import (
    FORM,
    REALM_PRESENCE_URL,
    SETTINGS_URL,
    MemberClients,
    assert_error,
    form,
    frozen_now,
    post_presence,
    recording,
    success,
    ts,
    user_presence_url,
)
from .factories import RealmFactory

pytestmark = pytest.mark.django_db

SHARED_EMAIL = "hamlet@example.com"
LEAR_ONLY_EMAIL = "cordelia@lear.example"


class TwoRealms:
    """Realm "zulip" (hamlet, othello, the guest polonius) and realm "lear" (another hamlet with
    the same email, cordelia, and a bot). Everyone has reported: zulip at now-100 s, lear at
    now-10 s, so each realm's sequence is at its own member count."""

    def __init__(self, make_member, api_client_for) -> None:
        self.now = timezone.now().replace(microsecond=0)
        self.lear = RealmFactory(string_id="lear", name="Lear")
        self.hamlet = make_member(user__username="zulip-hamlet", user__email=SHARED_EMAIL)
        self.othello = make_member(user__username="othello", user__email="othello@example.com")
        self.polonius = make_member(
            user__username="polonius",
            user__email="polonius@example.com",
            role=RealmMember.Role.GUEST,
        )
        self.zulip = self.hamlet.realm
        self.lear_hamlet = make_member(
            realm=self.lear, user__username="lear-hamlet", user__email=SHARED_EMAIL
        )
        self.cordelia = make_member(
            realm=self.lear, user__username="cordelia", user__email=LEAR_ONLY_EMAIL
        )
        self.lear_bot = make_member(
            realm=self.lear, user__username="lear-bot", user__email="bot@lear.example", is_bot=True
        )
        self.client = MemberClients(api_client_for)
        for members, ago in (
            ((self.hamlet, self.othello, self.polonius), 100),
            ((self.lear_hamlet, self.cordelia), 10),
        ):
            for member in members:
                with frozen_now(self.now - timedelta(seconds=ago)):
                    success(post_presence(self.client(member), status="active"))

    @property
    def zulip_humans(self) -> list[RealmMember]:
        return [self.hamlet, self.othello, self.polonius]

    @property
    def lear_members(self) -> list[RealmMember]:
        return [self.lear_hamlet, self.cordelia, self.lear_bot]


@pytest.fixture
def realms(make_member, api_client_for) -> TwoRealms:
    return TwoRealms(make_member, api_client_for)


def assert_names_no_lear_member(realms: TwoRealms, response: Any) -> None:
    text = response.content.decode()
    assert LEAR_ONLY_EMAIL not in text
    assert "bot@lear.example" not in text
    keys = set(response.json().get("presences", {}))
    assert not keys & {str(member.user_id) for member in realms.lear_members}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"slim_presence": True},
        {"last_update_id": -1},
        {"last_update_id": 0, "history_limit_days": 10**6},
    ],
)
def test_post_lists_only_own_realm(realms, params):
    response = post_presence(realms.client(realms.othello), status="active", **params)
    body = success(response)
    assert_names_no_lear_member(realms, response)
    if params:
        expected = {str(member.user_id) for member in realms.zulip_humans}
    else:
        expected = {member.email for member in realms.zulip_humans}
    assert set(body["presences"]) == expected
    # The shared email's entry is zulip's hamlet (reported 100 s ago), not lear's (10 s ago).
    if not params:
        hamlet_entry = body["presences"][SHARED_EMAIL]["aggregated"]
        assert hamlet_entry["timestamp"] == ts(realms.now) - 100


def test_realm_presence_lists_only_own_realm(realms):
    for viewer, members in (
        (realms.othello, realms.zulip_humans),
        (realms.cordelia, [realms.lear_hamlet, realms.cordelia]),
    ):
        response = realms.client(viewer).get(REALM_PRESENCE_URL)
        assert set(success(response)["presences"]) == {member.email for member in members}
    assert_names_no_lear_member(realms, realms.client(realms.othello).get(REALM_PRESENCE_URL))


def test_session_user_sees_own_realm(realms):
    browser = APIClient()
    browser.force_login(realms.cordelia.user)
    body = success(browser.get(REALM_PRESENCE_URL))
    assert set(body["presences"]) == {SHARED_EMAIL, LEAR_ONLY_EMAIL}
    assert body["presences"][SHARED_EMAIL]["aggregated"]["timestamp"] == (ts(realms.now) - 10)


def test_shared_email_resolves_within_the_callers_realm(realms):
    for viewer, seconds_ago in ((realms.othello, 100), (realms.cordelia, 10)):
        with frozen_now(realms.now):
            body = success(realms.client(viewer).get(user_presence_url(SHARED_EMAIL)))
        entry = {"status": "active", "timestamp": ts(realms.now) - seconds_ago}
        stamp = ts(realms.now) - seconds_ago
        assert body["presence"] == {
            "active_timestamp": stamp,
            "idle_timestamp": stamp,
            "website": entry,
            "aggregated": entry,
        }


def test_other_realms_users_look_nonexistent(realms):
    """Each lear member, by id and by email, gets byte for byte what a nonexistent user gets:
    even lear's bot is not reported as a bot."""
    client = realms.client(realms.othello)
    nobody = [client.get(user_presence_url(path)) for path in (987654, "nobody@example.com")]
    for response in nobody:
        assert_error(response, "No such user")
    actions.do_deactivate_member(realms.lear_hamlet)
    for member in (realms.cordelia, realms.lear_bot):
        by_id = client.get(user_presence_url(member.user_id))
        by_email = client.get(user_presence_url(member.email))
        for response, nonexistent in zip((by_id, by_email), nobody, strict=True):
            assert response.status_code == nonexistent.status_code
            assert response.content == nonexistent.content
    # Deactivating lear's hamlet does not touch zulip's hamlet of the same email.
    success(client.get(user_presence_url(SHARED_EMAIL)))


def test_access_limiting_never_reaches_into_another_realm(realms, settings):
    """A guest who shares a group with a member of another realm still cannot see them."""
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    Group.objects.create(name="players").user_set.add(realms.polonius.user, realms.cordelia.user)
    client = realms.client(realms.polonius)
    assert_error(client.get(user_presence_url(realms.cordelia.user_id)), "No such user")
    assert_error(client.get(user_presence_url(LEAR_ONLY_EMAIL)), "No such user")
    response = client.get(REALM_PRESENCE_URL)
    assert set(success(response)["presences"]) == {realms.polonius.email}
    assert_names_no_lear_member(realms, response)
    # Events about cordelia go to lear's members only, and the guest is not one of them.
    assert count_event_recipients(realms.lear, realms.cordelia, stop_after=100) == len(
        realms.lear_members
    )
    assert not can_access(realms.polonius, realms.cordelia)


def test_update_ids_are_per_realm(realms):
    othello_client = realms.client(realms.othello)
    # Within 55 s of othello's own report, so his polls write nothing themselves.
    with frozen_now(realms.now - timedelta(seconds=90)):
        body = success(post_presence(othello_client, status="active", last_update_id=-1))
    assert body["presence_last_update_id"] == 3
    # Lear's writes move lear's sequence only: zulip's baseline has nothing new.
    success(post_presence(realms.client(realms.cordelia), status="active"))
    with frozen_now(realms.now - timedelta(seconds=80)):
        body = success(post_presence(othello_client, status="idle", last_update_id=3))
    assert (body["presences"], body["presence_last_update_id"]) == ({}, 3)


def test_event_limit_counts_own_realm_only(
    realms, make_member, settings, django_capture_on_commit_callbacks
):
    """A large zulip does not cut lear's presence event off, which has three recipients."""
    settings.PRESENCE_USER_LIMIT_FOR_EVENTS = 3
    zulip_newcomer = make_member(user__username="newcomer", user__email="new@example.com")
    lear_newcomer = make_member(
        realm=realms.lear, user__username="lear-new", user__email="new@lear.example"
    )
    actions.do_deactivate_member(realms.lear_bot)  # lear: 3 active members with the newcomer
    with (
        mock.patch("django_presence.events.receivers.get_event_backend") as backend,
        recording(presence_changed) as sent,
        django_capture_on_commit_callbacks(execute=True),
    ):
        for member in (zulip_newcomer, lear_newcomer):
            actions.do_update_user_presence(member, log_time=realms.now, status="active")
    published = [call.args[1]["user_id"] for call in backend.return_value.publish.call_args_list]
    assert published == [lear_newcomer.user_id]
    # Host receivers hear of both.
    assert [event["member"] for event in sent] == [zulip_newcomer, lear_newcomer]


def test_api_key_belongs_to_one_member(realms):
    client = APIClient()
    cordelia_key = realms.client(realms.cordelia).api_key
    client.credentials(HTTP_AUTHORIZATION=basic_auth(realms.othello.email, cordelia_key))
    assert_error(client.get(REALM_PRESENCE_URL), "Invalid API key", status=401, code="UNAUTHORIZED")
    # The shared email with lear hamlet's key is lear's hamlet.
    lear_key = realms.client(realms.lear_hamlet).api_key
    client.credentials(HTTP_AUTHORIZATION=basic_auth(SHARED_EMAIL, lear_key))
    body = success(client.get(REALM_PRESENCE_URL))
    assert set(body["presences"]) == {SHARED_EMAIL, LEAR_ONLY_EMAIL}


def test_settings_change_only_the_caller(realms):
    response = realms.client(realms.lear_hamlet).patch(
        SETTINGS_URL, form(presence_enabled=False), content_type=FORM
    )
    success(response)
    realms.lear_hamlet.refresh_from_db()
    realms.hamlet.refresh_from_db()
    assert (realms.lear_hamlet.presence_enabled, realms.hamlet.presence_enabled) == (False, True)


def test_realm_flags_stay_in_their_realm(realms):
    actions.do_set_realm_presence_disabled(realms.lear, True)
    body = success(post_presence(realms.client(realms.cordelia), status="active"))
    assert (body["presences"], body["presence_last_update_id"]) == ({}, -1)
    body = success(post_presence(realms.client(realms.othello), status="active"))
    assert len(body["presences"]) == 3
    # The single-user read reveals nothing either: as for a member without presence data.
    response = realms.client(realms.cordelia).get(user_presence_url(realms.cordelia.email))
    assert_error(response, f"No presence data for {realms.cordelia.email}")
    response = realms.client(realms.cordelia).get(user_presence_url(realms.lear_hamlet.user_id))
    assert_error(response, f"No presence data for {realms.lear_hamlet.user_id}")
    # The other realm is untouched.
    response = realms.client(realms.othello).get(user_presence_url(realms.hamlet.user_id))
    assert success(response)["presence"]

    actions.do_set_realm_deactivated(realms.lear, True)
    response = realms.client(realms.cordelia).get(REALM_PRESENCE_URL)
    assert_error(
        response, "This organization has been deactivated", status=401, code="REALM_DEACTIVATED"
    )
    success(realms.client(realms.othello).get(REALM_PRESENCE_URL))
