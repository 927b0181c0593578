"""GET directory/members: the team directory listing (docs/directory.md)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from rest_framework.test import APIClient

from django_presence import actions
from django_presence.models import PresenceSequence, RealmMember

from .api_utils import assert_error, frozen_now, now_seconds, success, ts
from .factories import MemberFactory

URL = "/api/v1/directory/members"


@pytest.fixture
def now():
    return now_seconds()


@pytest.fixture
def viewer(make_member):
    return make_member(user__email="viewer@example.com", user__first_name="Vera")


@pytest.fixture
def client(api_client_for, viewer):
    return api_client_for(viewer)


def report(member: RealmMember, status: str, at: Any) -> None:
    actions.update_user_presence(member, log_time=at, status=status, new_user_input=True)


def entry(
    member: RealmMember, full_name: str, status: str, active=None, idle=None, user_status=None
) -> dict:
    return {
        "user_id": member.user_id,
        "email": member.email,
        "full_name": full_name,
        "role": member.role,
        "status": status,
        "active_timestamp": None if active is None else ts(active),
        "idle_timestamp": None if idle is None else ts(idle),
        "user_status": user_status or {},
    }


def listing(client: Any, now: Any, **params: Any) -> dict[str, Any]:
    with frozen_now(now):
        return success(client.get(URL, params))


@pytest.fixture
def team(make_member, realm, viewer, now):
    """One member per status (by name: Ada active, Bo idle, Cy offline, Di never, Ed invisible
    and a guest), plus members the listing leaves out: a bot, a deactivated member and another
    realm's member (bot, gone, outsider)."""
    members = {
        "ada": make_member(user__first_name="Ada", user__last_name="Lovelace"),
        "bo": make_member(user__first_name="Bo", user__last_name="Diddley"),
        "cy": make_member(user__first_name="Cy", user__last_name="Twombly"),
        "di": make_member(user__first_name="Di", user__last_name="Prima"),
        "ed": make_member(user__first_name="Ed", user__last_name="Ruscha"),
        "noname": make_member(user__email="zz-noname@example.com"),
        "guest": make_member(user__first_name="Gil", role=RealmMember.Role.GUEST),
    }
    report(members["ada"], "active", now - timedelta(seconds=30))
    report(members["bo"], "idle", now - timedelta(seconds=30))
    report(members["cy"], "active", now - timedelta(minutes=30))
    report(members["ed"], "active", now - timedelta(seconds=30))
    actions.do_set_presence_enabled(members["ed"], False, log_time=now)
    members["ed"].refresh_from_db()
    members["bot"] = make_member(user__first_name="Aaron", is_bot=True)
    report(members["bot"], "active", now)
    members["gone"] = make_member(user__first_name="Abe")
    actions.do_deactivate_member(members["gone"])
    members["outsider"] = MemberFactory(user__first_name="Al")  # another realm
    report(members["outsider"], "active", now)
    return members


def expected_entries(team: dict[str, RealmMember], viewer: RealmMember, now: Any) -> list[dict]:
    ed_presence = team["ed"].user.presence
    return [
        entry(
            team["ada"],
            "Ada Lovelace",
            "active",
            now - timedelta(seconds=30),
            now - timedelta(seconds=30),
        ),
        entry(team["bo"], "Bo Diddley", "idle", None, now - timedelta(seconds=30)),
        entry(
            team["cy"],
            "Cy Twombly",
            "offline",
            now - timedelta(minutes=30),
            now - timedelta(minutes=30),
        ),
        entry(team["di"], "Di Prima", "never"),
        entry(
            team["ed"],
            "Ed Ruscha",
            "offline",
            ed_presence.last_active_time,
            ed_presence.last_connected_time,
        ),
        entry(team["guest"], "Gil", "never"),
        entry(viewer, "Vera", "never"),
        # No name: the email stands in, and sorts after every name.
        entry(team["noname"], "zz-noname@example.com", "never"),
    ]


def test_lists_the_realms_active_human_members_with_their_status(client, team, viewer, now):
    body = listing(client, now)
    assert body == {
        "result": "success",
        "msg": "",
        "count": 8,
        "page": 1,
        "page_size": 50,
        "server_timestamp": now.timestamp(),
        "server_presence_offline_threshold_seconds": 200,
        "presence_last_update_id": PresenceSequence.objects.get(realm=viewer.realm).last_update_id,
        "members": expected_entries(team, viewer, now),
    }


def test_reports_after_the_listing_come_with_its_last_update_id(client, team, viewer, now):
    # The update id of the listing's read: POST users/me/presence with it returns exactly the
    # presence written since (here the viewer's own report, and Bo's).
    last_update_id = listing(client, now)["presence_last_update_id"]
    report(team["bo"], "active", now + timedelta(seconds=1))
    response = client.post(
        "/api/v1/users/me/presence", {"status": "active", "last_update_id": last_update_id}
    )
    body = success(response)
    assert set(body["presences"]) == {str(team["bo"].user_id), str(viewer.user_id)}
    assert body["presence_last_update_id"] > last_update_id


def test_a_realm_without_presence_writes_lists_update_id_zero(client, viewer):
    PresenceSequence.objects.filter(realm=viewer.realm).delete()
    assert success(client.get(URL))["presence_last_update_id"] == 0


def test_the_server_clock_and_threshold_come_with_the_statuses(client, team):
    before = time.time()
    body = success(client.get(URL))
    assert isinstance(body["server_timestamp"], float)
    assert before <= body["server_timestamp"] <= time.time()
    assert body["server_presence_offline_threshold_seconds"] == 200


def test_the_threshold_is_the_setting(client, team, now):
    # Cy's last report was 30 minutes ago: offline at 200 s, active at an hour.
    with override_settings(PRESENCE_OFFLINE_THRESHOLD_SECS=3600):
        body = listing(client, now, user_ids=json.dumps([team["cy"].user_id]))
    assert body["server_presence_offline_threshold_seconds"] == 3600
    assert [m["status"] for m in body["members"]] == ["active"]


def test_a_client_recomputes_the_servers_statuses_from_the_response(client, team, now):
    body = listing(client, now)
    server_now = body["server_timestamp"]
    threshold = body["server_presence_offline_threshold_seconds"]

    def status(member: dict[str, Any]) -> str:
        # The rule docs/directory.md gives clients.
        active, idle = member["active_timestamp"], member["idle_timestamp"]
        if active is None and idle is None:
            return "never"
        if active is not None and server_now - active < threshold:
            return "active"
        if idle is not None and server_now - idle < threshold:
            return "idle"
        return "offline"

    assert [status(m) for m in body["members"]] == [m["status"] for m in body["members"]]


@pytest.mark.parametrize("age", [199, 200])
def test_the_status_boundary_is_strict(client, make_member, now, age):
    member = make_member()
    report(member, "active", now - timedelta(seconds=age))
    body = listing(client, now, user_ids=json.dumps([member.user_id]))
    assert body["members"][0]["status"] == ("active" if age < 200 else "offline")


def test_an_invisible_member_shows_as_their_backdated_row_makes_them(client, team, now):
    ed = next(m for m in listing(client, now)["members"] if m["user_id"] == team["ed"].user_id)
    assert ed["status"] == "offline"
    assert ed["active_timestamp"] < ts(now - timedelta(seconds=200))


@pytest.mark.parametrize(
    ("status", "names"),
    [
        ("active", ["ada"]),
        ("idle", ["bo"]),
        ("offline", ["cy", "ed"]),
        ("never", ["di", "guest", "viewer", "noname"]),
    ],
)
def test_status_filter(client, team, viewer, now, status, names):
    members = {**team, "viewer": viewer}
    body = listing(client, now, status=status)
    assert [m["user_id"] for m in body["members"]] == [members[n].user_id for n in names]
    assert body["count"] == len(names)
    assert {m["status"] for m in body["members"]} == {status}


@pytest.mark.parametrize(
    ("search", "names"),
    [
        ("lovelace", ["ada"]),
        ("ADA LOVE", ["ada"]),
        ("zz-noname@", ["noname"]),
        ("example.com", ["ada", "bo", "cy", "di", "ed", "guest", "viewer", "noname"]),
        ("nobody", []),
    ],
)
def test_search_matches_name_or_email_in_any_case(client, team, viewer, now, search, names):
    members = {**team, "viewer": viewer}
    body = listing(client, now, search=search)
    assert [m["user_id"] for m in body["members"]] == [members[n].user_id for n in names]


def test_role_filter_and_filters_combine(client, team, now):
    guests = listing(client, now, role="600")
    assert [m["user_id"] for m in guests["members"]] == [team["guest"].user_id]
    combined = listing(client, now, role="400", status="never", search="prima")
    assert [m["user_id"] for m in combined["members"]] == [team["di"].user_id]


def test_pages(client, team, viewer, now):
    everyone = expected_entries(team, viewer, now)
    second = listing(client, now, page="2", page_size="3")
    assert (second["count"], second["page"], second["page_size"]) == (8, 2, 3)
    assert second["members"] == everyone[3:6]
    assert listing(client, now, page="3", page_size="3")["members"] == everyone[6:]
    past_the_end = listing(client, now, page="4", page_size="3")
    assert (past_the_end["count"], past_the_end["members"]) == (8, [])


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        ({"status": "busy"}, "Invalid status: busy is not one of active, idle, offline, never"),
        ({"role": "500"}, "Invalid role: 500 is not one of 100, 200, 300, 400, 600"),
        ({"role": "member"}, "Invalid role: member is not one of 100, 200, 300, 400, 600"),
        ({"search": "a" * 1001}, "Invalid search: at most 1000 characters are allowed"),
        # Past SQLite's 50,000-byte LIKE patterns, escaped or not.
        ({"search": "%" * 60_000}, "Invalid search: at most 1000 characters are allowed"),
        ({"page": "0"}, "page must be at least 1"),
        ({"page": "two"}, "page is not valid JSON"),
        ({"page": "1.5"}, "page is not an integer"),
        ({"page_size": "0"}, "page_size must be between 1 and 200"),
        ({"page_size": "201"}, "page_size must be between 1 and 200"),
        ({"page_size": "true"}, "page_size is not an integer"),
        ({"user_ids": '[1,"a"]'}, "user_ids[1] is not an integer"),
        ({"user_ids": "[true]"}, "user_ids[0] is not an integer"),
        ({"user_ids": "[1.5]"}, "user_ids[0] is not an integer"),
        ({"user_ids": "[null]"}, "user_ids[0] is not an integer"),
        ({"user_ids": "{}"}, "user_ids is not a list"),
        ({"user_ids": "1"}, "user_ids is not a list"),
        ({"user_ids": '"1,2"'}, "user_ids is not a list"),
        ({"user_ids": "["}, "user_ids is not valid JSON"),
        ({"user_ids": "1,2"}, "user_ids is not valid JSON"),
        ({"user_ids": ""}, "user_ids is not valid JSON"),
        (
            {"user_ids": json.dumps(list(range(201)))},
            "Invalid user_ids: at most 200 ids are allowed",
        ),
    ],
)
def test_bad_values_get_zulips_error(client, params, msg):
    assert_error(client.get(URL, params), msg)


def test_the_longest_search_is_allowed(client, team, now):
    assert listing(client, now, search="\U0001f600%_" * 333 + "x")["count"] == 0


def test_user_ids_lists_only_those_members_in_the_listings_order(client, team, now):
    ids = [team[name].user_id for name in ("cy", "ada", "cy", "guest")]
    body = listing(client, now, user_ids=json.dumps(ids))
    assert [m["user_id"] for m in body["members"]] == [
        team[name].user_id for name in ("ada", "cy", "guest")
    ]
    assert body["count"] == 3
    assert listing(client, now, user_ids="[]")["count"] == 0


def test_user_ids_combine_with_the_filters_and_pages(client, team, now):
    ids = json.dumps([team[name].user_id for name in ("ada", "bo", "cy", "ed", "guest")])
    offline = listing(client, now, user_ids=ids, status="offline")
    assert [m["user_id"] for m in offline["members"]] == [team["cy"].user_id, team["ed"].user_id]
    searched = listing(client, now, user_ids=ids, search="DIDDLEY", role="400")
    assert [m["user_id"] for m in searched["members"]] == [team["bo"].user_id]
    second = listing(client, now, user_ids=ids, page="2", page_size="2")
    assert second["count"] == 5
    assert [m["user_id"] for m in second["members"]] == [team["cy"].user_id, team["ed"].user_id]


def test_user_ids_the_listing_leaves_out_are_not_returned(client, team, now):
    left_out = [team[name].user_id for name in ("bot", "gone", "outsider")]
    body = listing(client, now, user_ids=json.dumps([*left_out, 999_999, team["ada"].user_id]))
    assert [m["user_id"] for m in body["members"]] == [team["ada"].user_id]
    assert body["count"] == 1


def test_user_ids_a_guest_may_not_access_are_not_returned(
    settings, api_client_for, team, viewer, now
):
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    ids = json.dumps([team["ada"].user_id, viewer.user_id, team["guest"].user_id])
    body = listing(api_client_for(team["guest"]), now, user_ids=ids)
    assert [m["user_id"] for m in body["members"]] == [team["guest"].user_id]


def test_user_ids_of_any_size_are_not_errors(client, team, now):
    # Beyond 64 bits SQLite cannot compare them: they match no one.
    ids = [-1, 0, 2**31, 2**63 - 1, 2**63, 2**70, -(2**70), team["ada"].user_id]
    body = listing(client, now, user_ids=json.dumps(ids))
    assert [m["user_id"] for m in body["members"]] == [team["ada"].user_id]


def test_200_user_ids_are_allowed(client, team, now):
    ids = [*range(-199, 0), team["di"].user_id]
    body = listing(client, now, user_ids=json.dumps(ids))
    assert [m["user_id"] for m in body["members"]] == [team["di"].user_id]


@pytest.mark.parametrize("page", [2**62, 2**63, 2**70])
def test_a_page_far_past_the_end_is_empty(client, team, now, page):
    body = listing(client, now, page=str(page), page_size="200")
    assert (body["count"], body["page"], body["members"]) == (8, page, [])


def test_unknown_parameters_are_reported_as_ignored(client, viewer, now):
    body = listing(client, now, colour="red", status="never")
    assert body["ignored_parameters_unsupported"] == ["colour"]
    assert [m["user_id"] for m in body["members"]] == [viewer.user_id]


def test_a_guest_sees_only_the_members_they_may_access(
    settings, api_client_for, make_member, team, now
):
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    group = Group.objects.create(name="crew")
    team["guest"].user.groups.add(group)
    team["bo"].user.groups.add(group)
    body = listing(api_client_for(team["guest"]), now)
    assert [m["user_id"] for m in body["members"]] == [team["bo"].user_id, team["guest"].user_id]
    assert body["count"] == 2


def test_a_realm_with_presence_disabled_shows_everyone_as_never(client, team, realm, now):
    actions.do_set_realm_presence_disabled(realm, True)
    body = listing(client, now)
    assert {(m["status"], m["active_timestamp"], m["idle_timestamp"]) for m in body["members"]} == {
        ("never", None, None)
    }
    assert listing(client, now, status="active")["count"] == 0
    assert listing(client, now, status="never")["count"] == 8


def test_session_authentication(viewer, now):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(viewer.user)
    with frozen_now(now):
        body = success(browser.get(URL))
    assert body["members"] == [entry(viewer, "Vera", "never")]


def test_needs_authentication_and_only_allows_get(client):
    assert_error(
        APIClient().get(URL),
        "Not logged in: API authentication or user session required",
        status=401,
        code="UNAUTHORIZED",
    )
    assert_error(client.post(URL), "Method Not Allowed", status=405, allowed_methods=["GET"])


@pytest.mark.parametrize(
    ("filters", "by_user_ids"),
    [
        ({}, False),
        ({"status": "active", "search": "user", "role": "400"}, False),
        ({"status": "active", "search": "user", "role": "400"}, True),
    ],
)
def test_constant_query_count_at_two_realm_sizes(
    client, make_member, now, django_assert_num_queries, filters, by_user_ids
):
    # API-key authentication (the key with its member, realm, sequence and presence row
    # in one query), the count and the page.
    for size in (3, 30):
        while RealmMember.objects.count() < size:
            member = make_member()
            report(member, "active", now)
            # Statuses come in the page's query too.
            actions.check_update_user_status(member, acting_user=None, status_text="busy")
        params = dict(filters)
        if by_user_ids:
            # Every member's id, and one no member has.
            ids = list(RealmMember.objects.values_list("user_id", flat=True))
            params["user_ids"] = json.dumps([*ids, 999_999])
        with django_assert_num_queries(3):
            body = listing(client, now, page_size="200", **params)
        assert body["count"] == (size - 1 if filters else size)


# User statuses in the listing ----------------------------------------------------------------


def test_statuses_in_the_listing_and_in_the_search(client, viewer, make_member, now):
    busy = make_member(user__first_name="Busy", user__email="busy@example.com")
    ended = make_member(user__first_name="Ended", user__email="ended@example.com")
    end = now + timedelta(hours=1)
    actions.check_update_user_status(
        busy, acting_user=None, status_text="In a Meeting", emoji_name="car", now=now
    )
    actions.check_update_user_status(
        viewer,
        acting_user=None,
        status_text="meeting prep",
        scheduled_end_time=int(end.timestamp()),
        now=now,
    )
    actions.do_update_user_status(
        ended,
        acting_user=None,
        status_text="meeting long ago",
        scheduled_end_time=now - timedelta(seconds=1),
        now=now - timedelta(hours=1),
    )
    body = listing(client, now)
    statuses = {member["email"]: member["user_status"] for member in body["members"]}
    assert statuses == {
        "busy@example.com": {
            "status_text": "In a Meeting",
            "emoji_name": "car",
            "emoji_code": "1f697",
            "reaction_type": "unicode_emoji",
        },
        "ended@example.com": {},
        # The end time to its owner only.
        "viewer@example.com": {
            "status_text": "meeting prep",
            "scheduled_end_time": int(end.timestamp()),
        },
    }
    found = listing(client, now, search="MEETING")
    assert [member["email"] for member in found["members"]] == [
        "busy@example.com",
        "viewer@example.com",
    ]
    # Once it ended, a status is not found any more.
    later = listing(client, end, search="prep")
    assert later["members"] == []
