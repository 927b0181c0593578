"""The admin: what each changelist shows, that its query count does not grow with the rows, and
that every edit goes through an action."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_presence import actions
from django_presence.models import ApiKey, PresenceSequence, Realm, RealmMember, UserPresence
from loopback.auth import basic_auth

from .factories import MemberFactory, RealmFactory

NEW_KEY_MESSAGE = re.compile(
    r"New API key for (?P<email>\S+): (?P<key>[A-Za-z0-9]{32}) \(copy it now: it is not stored "
    r"and will not be shown again\)"
)


def url(model: str, view: str = "changelist", *args: object) -> str:
    return reverse(f"admin:django_presence_{model}_{view}", args=args)


def rows(response) -> list[dict[str, str]]:
    """The changelist's rows as {column: text}; boolean icons read as "True"/"False"."""
    assert response.status_code == 200, response.content
    if response.context["cl"].result_count == 0:
        return []  # an empty changelist has no table at all
    content = response.content.decode()
    body = content[content.index("<tbody>") : content.index("</tbody>")]
    table = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r'<t[hd] class="field-(\w+)[^"]*">(.*?)</t[hd]>', row, re.S)
        table.append(
            {
                name: html.unescape(
                    re.sub(r"<[^>]+>", "", re.sub(r'<img [^>]*alt="(\w+)">', r"\1", cell))
                )
                for name, cell in cells
            }
        )
    return table


def column(response, name: str) -> list[str]:
    return [row[name] for row in rows(response)]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def new_key_from(message: str) -> tuple[str, str]:
    match = NEW_KEY_MESSAGE.fullmatch(message)
    assert match, message
    return match["email"], match["key"]


def report(member, seconds_ago: int, status: str = "active") -> None:
    actions.do_update_user_presence(
        member, log_time=timezone.now() - timedelta(seconds=seconds_ago), status=status
    )


def count_queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured.captured_queries)


def populate(count: int) -> None:
    """``count`` realms, each with a member who has a presence row and two API keys."""
    for _ in range(count):
        member = MemberFactory(realm=RealmFactory())
        report(member, 10)
        actions.do_create_api_key(member)
        actions.do_revoke_api_keys(member)
        actions.do_create_api_key(member)


# Changelists -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/admin/django_presence/realm/",
        "/admin/django_presence/realm/?q=realm",
        "/admin/django_presence/realmmember/",
        "/admin/django_presence/realmmember/?q=example.com&is_bot__exact=0",
        "/admin/django_presence/userpresence/",
        "/admin/django_presence/userpresence/?status=active",
        "/admin/django_presence/apikey/",
        "/admin/django_presence/apikey/?state=active",
        "/admin/django_presence/presencesequence/",
    ],
)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, path, django_assert_max_num_queries
):
    populate(2)
    small = count_queries(admin_client, path)
    populate(5)
    with django_assert_max_num_queries(small):
        response = admin_client.get(path)
    # The larger page really shows the new rows.
    assert len(rows(response)) >= 7


@pytest.mark.django_db
def test_realm_changelist(admin_client, realm, make_member):
    make_member()
    make_member()
    RealmFactory(string_id="empty", name="Empty", presence_disabled=True)
    response = admin_client.get(url("realm"))
    assert [{k: v for k, v in row.items() if k != "created_at"} for row in rows(response)] == [
        {
            "name": "Empty",
            "string_id": "empty",
            "presence_disabled": "True",
            "deactivated": "False",
            "member_count": "0",
            "active_count": "0",
            "idle_count": "0",
            "offline_count": "0",
            "never_reported_count": "0",
            "invisible_mode_allowed": "True",
        },
        {
            "name": "Zulip Dev",
            "string_id": "zulip",
            "presence_disabled": "False",
            "deactivated": "False",
            "member_count": "2",
            "active_count": "0",
            "idle_count": "0",
            "offline_count": "0",
            "never_reported_count": "2",
            "invisible_mode_allowed": "True",
        },
    ]
    assert column(admin_client.get(url("realm") + "?q=Zul"), "string_id") == ["zulip"]
    # "o" counts list_display columns from 0, after the selection checkbox where there is one.
    assert column(admin_client.get(url("realm") + "?o=-4"), "string_id") == ["zulip", "empty"]


@pytest.mark.django_db
def test_member_changelist_filters_and_search(admin_client, realm, make_member):
    make_member(user__email="hamlet@example.com")
    make_member(user__email="guest@example.com", role=RealmMember.Role.GUEST)
    make_member(user__email="bot@example.com", is_bot=True)
    other = MemberFactory(user__email="iago@other.org", realm=RealmFactory(string_id="other"))
    actions.do_set_presence_enabled(other, False)

    everyone = rows(admin_client.get(url("realmmember") + "?o=1"))
    assert everyone == [
        {
            "email": "bot@example.com",
            "realm": "zulip",
            "role": "member",
            "is_bot": "True",
            "is_active": "True",
            "presence_enabled": "True",
        },
        {
            "email": "guest@example.com",
            "realm": "zulip",
            "role": "guest",
            "is_bot": "False",
            "is_active": "True",
            "presence_enabled": "True",
        },
        {
            "email": "hamlet@example.com",
            "realm": "zulip",
            "role": "member",
            "is_bot": "False",
            "is_active": "True",
            "presence_enabled": "True",
        },
        {
            "email": "iago@other.org",
            "realm": "other",
            "role": "member",
            "is_bot": "False",
            "is_active": "True",
            "presence_enabled": "False",
        },
    ]

    def emails(query: str) -> list[str]:
        return column(admin_client.get(url("realmmember") + "?o=1&" + query), "email")

    assert emails(f"realm__id__exact={other.realm_id}") == ["iago@other.org"]
    assert emails("role__exact=600") == ["guest@example.com"]
    assert emails("is_bot__exact=1") == ["bot@example.com"]
    assert emails("presence_enabled__exact=0") == ["iago@other.org"]
    assert emails("is_active__exact=0") == []
    assert emails("q=HAMLET@example") == ["hamlet@example.com"]


# Presence status ---------------------------------------------------------------------------


@pytest.fixture
def presence_rows(make_member):
    """One member per status, each named after it; timestamps in seconds before now."""
    members = {
        name: make_member(user__email=f"{name}@example.com")
        for name in ("active", "idle", "offline", "idle_only", "long_gone")
    }
    report(members["active"], 10)
    report(members["idle"], 1000)
    report(members["idle"], 10, "idle")
    report(members["offline"], 1000)
    # Only idle reports: no last_active_time at all.
    report(members["idle_only"], 10, "idle")
    report(members["long_gone"], 5000, "idle")
    return members


@pytest.mark.django_db
def test_presence_changelist_status_column(admin_client, presence_rows):
    table = rows(admin_client.get(url("userpresence")))
    assert {row["email"]: row["status"] for row in table} == {
        "active@example.com": "active",
        "idle@example.com": "idle",
        "offline@example.com": "offline",
        "idle_only@example.com": "idle",
        "long_gone@example.com": "offline",
    }
    idle = presence_rows["idle"]
    (idle_row,) = [row for row in table if row["email"] == "idle@example.com"]
    assert idle_row["realm"] == "zulip"
    assert idle_row["last_update_id"] == str(
        UserPresence.objects.get(user_id=idle.user_id).last_update_id
    )
    assert idle_row["last_active_time"] not in ("", "-")
    only_idle = [row for row in table if row["email"] == "idle_only@example.com"]
    assert only_idle[0]["last_active_time"] == "-"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", ["active@example.com"]),
        ("idle", ["idle@example.com", "idle_only@example.com"]),
        ("offline", ["long_gone@example.com", "offline@example.com"]),
    ],
)
def test_presence_status_filter(admin_client, presence_rows, status, expected):
    response = admin_client.get(url("userpresence") + f"?o=0&status={status}")
    assert column(response, "email") == expected
    assert set(column(response, "status")) == {status}


@pytest.mark.django_db
def test_presence_status_follows_the_offline_threshold_setting(
    admin_client, presence_rows, settings
):
    settings.PRESENCE_OFFLINE_THRESHOLD_SECS = 2000
    response = admin_client.get(url("userpresence") + "?o=0&status=active")
    assert column(response, "email") == [
        "active@example.com",
        "idle@example.com",
        "offline@example.com",
    ]


@pytest.mark.django_db
def test_presence_changelist_realm_filter_and_search(admin_client, presence_rows):
    other = MemberFactory(user__email="iago@other.org", realm=RealmFactory(string_id="other"))
    report(other, 10)
    by_realm = admin_client.get(url("userpresence") + f"?realm__id__exact={other.realm_id}")
    assert column(by_realm, "email") == ["iago@other.org"]
    searched = admin_client.get(url("userpresence") + "?q=IDLE_only")
    assert column(searched, "email") == ["idle_only@example.com"]


@pytest.mark.django_db
def test_unknown_status_filter_value_is_refused(admin_client, presence_rows):
    response = admin_client.get(url("userpresence") + "?status=away")
    assert response.status_code == 302
    assert response["Location"] == url("userpresence") + "?e=1"


@pytest.mark.django_db
def test_presence_rows_and_sequences_are_read_only(admin_client, presence_rows):
    row = UserPresence.objects.get(user_id=presence_rows["active"].user_id)
    before = (row.last_active_time, row.last_connected_time, row.last_update_id)
    assert admin_client.get(url("userpresence", "add")).status_code == 403
    view = admin_client.get(url("userpresence", "change", row.pk))
    assert view.status_code == 200
    assert view.context["title"] == "View user presence"
    assert b'name="last_update_id"' not in view.content
    posted = admin_client.post(
        url("userpresence", "change", row.pk), {"last_update_id": "999", "_save": "Save"}
    )
    assert posted.status_code == 403
    assert admin_client.post(
        url("userpresence", "delete", row.pk), {"post": "yes"}
    ).status_code == (403)
    row.refresh_from_db()
    assert (row.last_active_time, row.last_connected_time, row.last_update_id) == before

    sequence = PresenceSequence.objects.get()
    assert rows(admin_client.get(url("presencesequence"))) == [
        {"realm": "zulip", "last_update_id": str(sequence.last_update_id)}
    ]
    assert admin_client.get(url("presencesequence", "add")).status_code == 403
    assert admin_client.get(url("presencesequence", "change", sequence.pk)).context["title"] == (
        "View presence sequence"
    )
    assert (
        admin_client.post(
            url("presencesequence", "change", sequence.pk), {"last_update_id": "0"}
        ).status_code
        == 403
    )


# Realm overview ----------------------------------------------------------------------------

OVERVIEW_COLUMNS = ("member_count", "active_count", "idle_count", "offline_count")


def overview(response) -> dict[str, list[str]]:
    """{string_id: [members, active, idle, offline, never reported]} from the realm changelist."""
    return {
        row["string_id"]: [row[name] for name in (*OVERVIEW_COLUMNS, "never_reported_count")]
        for row in rows(response)
    }


@pytest.mark.django_db
def test_realm_changelist_counts_members_by_status(admin_client, presence_rows, make_member):
    make_member(user__email="silent@example.com")  # never reported
    deactivated = make_member(user__email="gone@example.com")
    report(deactivated, 10)
    actions.do_deactivate_member(deactivated)
    other = MemberFactory(user__email="iago@other.org", realm=RealmFactory(string_id="other"))
    report(other, 1000, "idle")
    # Deactivated members are counted like the others: the columns describe every membership.
    assert overview(admin_client.get(url("realm"))) == {
        "other": ["1", "0", "0", "1", "0"],
        "zulip": ["7", "2", "2", "2", "1"],
    }
    # "o" counts list_display columns from 0, after the selection checkbox: 5 is "active".
    assert column(admin_client.get(url("realm") + "?o=-5"), "string_id") == ["zulip", "other"]
    assert column(admin_client.get(url("realm") + "?o=7"), "string_id") == ["other", "zulip"]


@pytest.mark.django_db
def test_realm_overview_follows_the_offline_threshold_setting(
    admin_client, presence_rows, settings
):
    settings.PRESENCE_OFFLINE_THRESHOLD_SECS = 2000
    # idle and offline reported active 1000 s ago; long_gone is still offline at 5000 s.
    assert overview(admin_client.get(url("realm"))) == {"zulip": ["5", "3", "1", "1", "0"]}


@pytest.mark.django_db
def test_realm_change_page_shows_presence_now(admin_client, presence_rows, make_member):
    make_member()  # never reported
    realm = Realm.objects.get()
    page = admin_client.get(url("realm", "change", realm.pk))
    assert page.status_code == 200
    fields = page.context["adminform"].readonly_fields
    assert "presence_overview" in fields
    content = page.content.decode()
    assert "Presence now:" in content
    assert "6 members: 1 active, 2 idle, 2 offline, 1 never reported" in content
    add_page = admin_client.get(url("realm", "add")).content.decode()
    assert "Presence now:" not in add_page

    lone = MemberFactory(realm=RealmFactory(string_id="lone"))
    lone_page = admin_client.get(url("realm", "change", lone.realm_id)).content.decode()
    assert "1 member: 0 active, 0 idle, 0 offline, 1 never reported" in lone_page


@pytest.mark.django_db
def test_realm_changelist_counts_in_one_query(admin_client, django_assert_num_queries):
    populate(3)
    # Session and user, the paginator's two counts (filtered and total), then one query for
    # the page of realms with all their counts.
    with django_assert_num_queries(5) as captured:
        response = admin_client.get(url("realm"))
    assert len(rows(response)) == 3
    (page_query,) = [q["sql"] for q in captured.captured_queries if "FILTER" in q["sql"]]
    assert page_query.count("COUNT(") == 5


# Realms ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_adding_a_realm_creates_its_sequence(admin_client):
    with mock.patch.object(actions, "do_create_realm", wraps=actions.do_create_realm) as create:
        response = admin_client.post(
            url("realm", "add"),
            {"name": "Denmark", "string_id": "denmark", "presence_disabled": "on", "_save": "Save"},
        )
    assert response.status_code == 302, response.context["adminform"].errors
    create.assert_called_once_with("denmark", "Denmark", presence_disabled=True)
    realm = Realm.objects.get(string_id="denmark")
    assert (realm.name, realm.presence_disabled, realm.deactivated) == ("Denmark", True, False)
    assert PresenceSequence.objects.get(realm=realm).last_update_id == 0
    # The admin's own log entry and message point at the created row.
    assert response["Location"] == url("realm")
    assert messages_of(admin_client.get(url("realm"))) == [
        f'The realm “<a href="{url("realm", "change", realm.pk)}">denmark</a>” was added '
        "successfully."
    ]
    assert LogEntry.objects.get().object_id == str(realm.pk)


@pytest.mark.django_db
def test_adding_a_realm_with_a_taken_or_invalid_string_id_fails(admin_client, realm):
    taken = admin_client.post(url("realm", "add"), {"name": "Again", "string_id": "zulip"})
    assert taken.status_code == 200
    assert taken.context["adminform"].errors == {
        "string_id": ["Realm with this String id already exists."]
    }
    invalid = admin_client.post(url("realm", "add"), {"name": "Bad", "string_id": "no spaces"})
    assert list(invalid.context["adminform"].errors) == ["string_id"]
    assert Realm.objects.count() == 1


@pytest.mark.django_db
def test_realm_changes_go_through_actions(admin_client, realm):
    with (
        mock.patch.object(
            actions, "do_set_realm_deactivated", wraps=actions.do_set_realm_deactivated
        ) as deactivate,
        mock.patch.object(
            actions,
            "do_set_realm_presence_disabled",
            wraps=actions.do_set_realm_presence_disabled,
        ) as disable,
    ):
        response = admin_client.post(
            url("realm", "change", realm.pk),
            # name and string_id are read-only: posting them changes nothing.
            {"name": "Renamed", "string_id": "renamed", "deactivated": "on", "_save": "Save"},
        )
        assert response.status_code == 302
        deactivate.assert_called_once_with(mock.ANY, True)
        disable.assert_not_called()

        admin_client.post(
            url("realm", "change", realm.pk), {"presence_disabled": "on", "_save": "Save"}
        )
        disable.assert_called_once_with(mock.ANY, True)
        deactivate.assert_called_with(mock.ANY, False)
    realm.refresh_from_db()
    assert (realm.name, realm.string_id, realm.presence_disabled, realm.deactivated) == (
        "Zulip Dev",
        "zulip",
        True,
        False,
    )
    assert admin_client.post(url("realm", "delete", realm.pk), {"post": "yes"}).status_code == 403


# Members -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_adding_a_member_goes_through_the_action(admin_client, realm):
    user = get_user_model().objects.create_user("hamlet", "hamlet@example.com")
    with mock.patch.object(
        actions, "do_add_realm_member", wraps=actions.do_add_realm_member
    ) as add:
        response = admin_client.post(
            url("realmmember", "add"),
            {"user": user.pk, "realm": realm.pk, "role": "600", "is_bot": "on", "_save": "Save"},
        )
    assert response.status_code == 302
    add.assert_called_once_with(user, realm, role=600, is_bot=True)
    member = RealmMember.objects.get(user=user)
    assert (member.realm, member.role, member.is_bot, member.is_active) == (realm, 600, True, True)

    again = admin_client.post(
        url("realmmember", "add"), {"user": user.pk, "realm": realm.pk, "role": "400"}
    )
    assert again.context["adminform"].errors == {
        "user": ["Realm member with this User already exists."]
    }


@pytest.mark.django_db
def test_adding_a_member_refuses_an_email_taken_in_the_realm(admin_client, make_member, realm):
    taken = make_member(user__email="Hamlet@example.com")
    user = get_user_model().objects.create_user("hamlet2", "hamlet@example.com")
    response = admin_client.post(
        url("realmmember", "add"), {"user": user.pk, "realm": realm.pk, "role": "400"}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Another member of realm 'zulip' already has the email Hamlet@example.com "
        f"(user id {taken.user_id})."
    ]
    assert not RealmMember.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_member_role_and_activity_changes_go_through_actions(admin_client, make_member):
    member = make_member()
    change = url("realmmember", "change", member.pk)
    with (
        mock.patch.object(
            actions, "do_change_member_role", wraps=actions.do_change_member_role
        ) as change_role,
        mock.patch.object(
            actions, "do_deactivate_member", wraps=actions.do_deactivate_member
        ) as deactivate,
        mock.patch.object(
            actions, "do_reactivate_member", wraps=actions.do_reactivate_member
        ) as reactivate,
    ):
        # presence_enabled stays on; the read-only fields are ignored.
        data = {"role": "200", "presence_enabled": "on", "is_bot": "on", "_save": "Save"}
        assert admin_client.post(change, data).status_code == 302
        change_role.assert_called_once_with(mock.ANY, 200)
        deactivate.assert_called_once()
        reactivate.assert_not_called()
        member.refresh_from_db()
        assert (member.role, member.is_active, member.is_bot) == (200, False, False)

        data["is_active"] = "on"
        assert admin_client.post(change, data).status_code == 302
        reactivate.assert_called_once()
        change_role.assert_called_once()
    member.refresh_from_db()
    assert member.is_active
    assert admin_client.post(
        url("realmmember", "delete", member.pk), {"post": "yes"}
    ).status_code == (403)


@pytest.mark.django_db(transaction=True)
def test_turning_presence_off_in_the_admin_backdates_the_row(admin_client, make_member):
    """A real transaction, as in production: the admin saves inside one, and the action needs
    its own."""
    member = make_member()
    report(member, 5)
    change = url("realmmember", "change", member.pk)
    with mock.patch.object(
        actions, "do_set_presence_enabled", wraps=actions.do_set_presence_enabled
    ) as set_enabled:
        response = admin_client.post(change, {"role": "400", "is_active": "on", "_save": "Save"})
        assert response.status_code == 302
        set_enabled.assert_called_once_with(mock.ANY, False)
    member.refresh_from_db()
    assert member.presence_enabled is False
    row = UserPresence.objects.get(user_id=member.user_id)
    backdated_by = timezone.now() - row.last_active_time
    # INVISIBLE_BACKDATE_SECS = 200 + 55 + 10
    assert timedelta(seconds=265) <= backdated_by < timedelta(seconds=275)
    assert row.last_connected_time == row.last_active_time
    assert column(admin_client.get(url("userpresence")), "status") == ["offline"]

    response = admin_client.post(
        change, {"role": "400", "is_active": "on", "presence_enabled": "on", "_save": "Save"}
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.presence_enabled is True
    # Turning presence back on records an active report at once.
    assert column(admin_client.get(url("userpresence")), "status") == ["active"]


@pytest.mark.django_db
def test_member_action_issue_api_key_shows_it_once(admin_client, client, make_member):
    member = make_member(user__email="hamlet@example.com")
    response = admin_client.post(
        url("realmmember"),
        {"action": "issue_api_key", "_selected_action": [member.pk], "index": "0"},
        follow=True,
    )
    (message,) = messages_of(response)
    email, key = new_key_from(message)
    assert email == "hamlet@example.com"
    assert key in response.content.decode()

    stored = ApiKey.objects.get(member=member)
    assert (stored.key_digest, stored.prefix) == (hashlib.sha256(key.encode()).hexdigest(), key[:6])
    assert key not in repr(list(ApiKey.objects.values()))
    assert key not in admin_client.get(url("realmmember")).content.decode()

    api = client.get("/api/v1/realm/presence", HTTP_AUTHORIZATION=basic_auth(email, key))
    assert api.status_code == 200
    assert api.json()["presences"] == {}


@pytest.mark.django_db
def test_member_action_revoke_api_keys(admin_client, client, make_member):
    hamlet = make_member()
    iago = make_member()
    othello = make_member()
    keys = [actions.do_create_api_key(m)[1] for m in (hamlet, hamlet, iago, othello)]
    response = admin_client.post(
        url("realmmember"),
        {"action": "revoke_api_keys", "_selected_action": [hamlet.pk, iago.pk], "index": "0"},
        follow=True,
    )
    assert messages_of(response) == ["Revoked 3 API keys."]
    assert ApiKey.objects.filter(revoked_at__isnull=True).get().member == othello
    refused = client.get(
        "/api/v1/realm/presence", HTTP_AUTHORIZATION=basic_auth(hamlet.email, keys[0])
    )
    assert refused.status_code == 401
    assert refused.json() == {"result": "error", "msg": "Invalid API key", "code": "UNAUTHORIZED"}


@pytest.mark.django_db(transaction=True)
def test_member_actions_turn_invisible_mode_on_and_off(admin_client, make_member):
    """A real transaction, as in production: the actions run do_set_presence_enabled, which
    needs its own, after the request's (ATOMIC_REQUESTS) commits."""
    hamlet = make_member(user__email="hamlet@example.com")
    iago = make_member(user__email="iago@example.com")
    othello = make_member(user__email="othello@example.com")
    for member in (hamlet, iago, othello):
        report(member, 5)
    actions.do_set_presence_enabled(iago, False)

    def act(action: str, *members: RealmMember) -> list[str]:
        selected = [member.pk for member in members]
        with (
            mock.patch.dict(connection.settings_dict, {"ATOMIC_REQUESTS": True}),
            mock.patch.object(
                actions, "do_set_presence_enabled", wraps=actions.do_set_presence_enabled
            ) as set_enabled,
        ):
            response = admin_client.post(
                url("realmmember"),
                {"action": action, "_selected_action": selected, "index": "0"},
                follow=True,
            )
        called.append(sorted((c.args[0].pk, c.args[1]) for c in set_enabled.call_args_list))
        return messages_of(response)

    def invisible() -> list[str]:
        return sorted(
            member.email
            for member in RealmMember.objects.select_related("user")
            if not member.presence_enabled
        )

    called: list[list[tuple[int, bool]]] = []
    # iago is invisible already: only hamlet changes.
    assert act("turn_invisible_mode_on", hamlet, iago) == ["Turned invisible mode on for 1 member."]
    assert called[-1] == [(hamlet.pk, False)]
    assert invisible() == ["hamlet@example.com", "iago@example.com"]
    statuses = {row["email"]: row["status"] for row in rows(admin_client.get(url("userpresence")))}
    # Turning it on backdates the row, so hamlet looks offline at once.
    assert statuses == {
        "hamlet@example.com": "offline",
        "iago@example.com": "offline",
        "othello@example.com": "active",
    }

    assert act("turn_invisible_mode_off", hamlet, iago, othello) == [
        "Turned invisible mode off for 2 members."
    ]
    assert called[-1] == sorted([(hamlet.pk, True), (iago.pk, True)])
    assert invisible() == []
    # Turning it off records an active report.
    assert set(column(admin_client.get(url("userpresence")), "status")) == {"active"}


@pytest.mark.django_db
def test_invisible_mode_actions_need_the_change_permission(client, make_member):
    member = make_member()
    staff = get_user_model().objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_realmmember"))
    client.force_login(staff)
    assert client.get(url("realmmember")).context["action_form"] is None
    response = client.post(
        url("realmmember"),
        {"action": "turn_invisible_mode_on", "_selected_action": [member.pk], "index": "0"},
    )
    assert response.status_code == 200
    member.refresh_from_db()
    assert member.presence_enabled is True

    staff.user_permissions.add(Permission.objects.get(codename="change_realmmember"))
    choices = client.get(url("realmmember")).context["action_form"].fields["action"].choices
    assert [name for name, _label in choices if "invisible" in name] == [
        "turn_invisible_mode_on",
        "turn_invisible_mode_off",
    ]
    assert dict(choices)["turn_invisible_mode_on"] == "Turn invisible mode on"


@pytest.mark.django_db
def test_member_key_actions_need_api_key_permissions(client, make_member):
    member = make_member()
    staff = get_user_model().objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_realmmember"))
    client.force_login(staff)
    choices = client.get(url("realmmember")).context["action_form"].fields["action"].choices
    # Only the invisible-mode actions, which need no API key permission.
    assert [name for name, _label in choices if name] == [
        "turn_invisible_mode_on",
        "turn_invisible_mode_off",
    ]
    response = client.post(
        url("realmmember"),
        {"action": "issue_api_key", "_selected_action": [member.pk], "index": "0"},
    )
    # An action not offered is refused with the changelist's "no action selected" message.
    assert response.status_code == 302
    assert messages_of(client.get(url("realmmember"))) == ["No action selected."]
    assert not ApiKey.objects.exists()


# API keys ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_adding_an_api_key_shows_it_once_and_stores_the_digest(admin_client, client, make_member):
    member = make_member(user__email="hamlet@example.com")
    with mock.patch.object(actions, "do_create_api_key", wraps=actions.do_create_api_key) as issue:
        response = admin_client.post(
            url("apikey", "add"), {"member": member.pk, "_save": "Save"}, follow=True
        )
    issue.assert_called_once_with(member)
    new_key_message, added_message = messages_of(response)
    email, key = new_key_from(new_key_message)
    stored = ApiKey.objects.get()
    assert added_message == f"The API key “{stored}” was added successfully."
    assert (stored.key_digest, stored.prefix, stored.revoked_at) == (
        hashlib.sha256(key.encode()).hexdigest(),
        key[:6],
        None,
    )
    assert key not in repr(list(ApiKey.objects.values()))
    assert key not in admin_client.get(url("apikey")).content.decode()
    api = client.get("/api/v1/realm/presence", HTTP_AUTHORIZATION=basic_auth(email, key))
    assert api.status_code == 200


@pytest.mark.django_db
def test_api_key_changelist_and_revoke_action(admin_client, make_member):
    hamlet = make_member(user__email="hamlet@example.com")
    first, _ = actions.do_create_api_key(hamlet)
    revoked, _ = actions.do_create_api_key(hamlet)
    actions.do_revoke_api_key(revoked)
    table = rows(admin_client.get(url("apikey") + "?o=2"))
    assert [(r["email"], r["prefix"], r["active"]) for r in table] == sorted(
        [
            ("hamlet@example.com", first.prefix, "True"),
            ("hamlet@example.com", revoked.prefix, "False"),
        ],
        key=lambda r: r[1],
    )
    assert column(admin_client.get(url("apikey") + "?state=active"), "prefix") == [first.prefix]
    assert column(admin_client.get(url("apikey") + "?state=revoked"), "prefix") == [revoked.prefix]
    assert admin_client.get(url("apikey") + "?state=lost").status_code == 302
    assert column(admin_client.get(url("apikey") + f"?q={first.prefix}"), "prefix") == [
        first.prefix
    ]

    with mock.patch.object(actions, "do_revoke_api_key", wraps=actions.do_revoke_api_key) as revoke:
        response = admin_client.post(
            url("apikey"),
            {"action": "revoke", "_selected_action": [first.pk, revoked.pk], "index": "0"},
            follow=True,
        )
    # The key revoked earlier keeps its revocation time.
    revoke.assert_called_once_with(first)
    assert messages_of(response) == ["Revoked 1 API key."]
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()


@pytest.mark.django_db
def test_api_keys_are_never_editable(admin_client, make_member):
    api_key, _ = actions.do_create_api_key(make_member())
    change = url("apikey", "change", api_key.pk)
    view = admin_client.get(change)
    assert view.context["title"] == "View API key"
    assert admin_client.post(change, {"member": api_key.member_id}).status_code == 403
    assert (
        admin_client.post(url("apikey", "delete", api_key.pk), {"post": "yes"}).status_code == 403
    )
    assert ApiKey.objects.get() == api_key
