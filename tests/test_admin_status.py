"""The admin of statuses, custom emoji and the realm's invisible-mode policy: what it shows, and
that every change goes through an action (so that each status change sends its event)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_presence import actions
from django_presence.models import RealmEmoji, UserStatus
from django_presence.signals import user_status_changed

from .api_utils import recording
from .factories import MemberFactory
from .test_admin import column, count_queries, messages_of, rows

pytestmark = pytest.mark.django_db


def url(model: str, view: str = "changelist", *args: object) -> str:
    return reverse(f"admin:django_presence_{model}_{view}", args=args)


def set_status(member, text: str, **kwargs) -> None:
    actions.check_update_user_status(member, acting_user=None, status_text=text, **kwargs)


def errors_of(response) -> list[str]:
    assert response.status_code == 200, response
    form = response.context["adminform"].form
    return [str(error) for errors in form.errors.values() for error in errors]


def test_status_changelist(admin_client, realm, make_member, django_assert_max_num_queries):
    hamlet = make_member(user__email="hamlet@zulip.com")
    set_status(hamlet, "on vacation", emoji_name="car")
    ended = make_member(user__email="ended@zulip.com")
    actions.do_update_user_status(
        ended,
        acting_user=None,
        status_text="gone",
        scheduled_end_time=timezone.now() - timedelta(seconds=1),
        now=timezone.now() - timedelta(hours=1),
    )
    response = admin_client.get(url("userstatus") + "?o=1")
    table = [{k: v for k, v in row.items() if k != "scheduled_end_time"} for row in rows(response)]
    assert table == [
        {
            "email": "ended@zulip.com",
            "realm": "zulip",
            "status_text": "gone",
            "emoji": "-",
            "shown": "False",
        },
        {
            "email": "hamlet@zulip.com",
            "realm": "zulip",
            "status_text": "on vacation",
            "emoji": "\N{AUTOMOBILE} :car:",
            "shown": "True",
        },
    ]
    assert column(admin_client.get(url("userstatus") + "?q=vacation"), "email") == [
        "hamlet@zulip.com"
    ]
    small = count_queries(admin_client, url("userstatus"))
    for _ in range(5):
        set_status(make_member(), "busy")
    with django_assert_max_num_queries(small):
        assert len(rows(admin_client.get(url("userstatus")))) == 7


def test_changing_a_status_goes_through_the_actions(
    admin_client, make_member, django_capture_on_commit_callbacks
):
    hamlet = make_member()
    set_status(hamlet, "on vacation", emoji_name="car")
    row = UserStatus.objects.get(user_id=hamlet.user_id)
    end = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    with recording(user_status_changed) as sent, django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("userstatus", "change", row.pk),
            {
                "status_text": "in a meeting",
                "emoji_name": "car",
                "scheduled_end_time_0": end.strftime("%Y-%m-%d"),
                "scheduled_end_time_1": end.strftime("%H:%M:%S"),
                "_save": "Save",
            },
        )
    assert response.status_code == 302, errors_of(response)
    [signal] = sent
    assert signal["changed"] == {
        "status_text": "in a meeting",
        "scheduled_end_time": int(end.timestamp()),
    }
    assert signal["acting_user"].is_superuser
    row.refresh_from_db()
    assert (row.status_text, row.emoji_name, row.scheduled_end_time) == ("in a meeting", "car", end)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"emoji_name": "no_such_emoji"}, "Emoji 'no_such_emoji' does not exist"),
        ({"status_text": "x" * 61}, "status_text is too long (limit: 60 characters)"),
        (
            {
                "status_text": "",
                "emoji_name": "",
                "scheduled_end_time_0": "2999-01-01",
                "scheduled_end_time_1": "00:00:00",
            },
            "Client does not have any status set.",
        ),
        (
            {"scheduled_end_time_0": "2000-01-01", "scheduled_end_time_1": "00:00:00"},
            "scheduled_end_time must be in the future",
        ),
    ],
)
def test_the_admin_refuses_what_the_api_refuses(admin_client, make_member, data, error):
    hamlet = make_member()
    set_status(hamlet, "hi")
    row = UserStatus.objects.get(user_id=hamlet.user_id)
    form = {"status_text": "hi", "emoji_name": "", "_save": "Save", **data}
    response = admin_client.post(url("userstatus", "change", row.pk), form)
    if response.status_code == 302:
        pytest.fail(f"accepted: {data}")
    assert any(error in message for message in errors_of(response)), errors_of(response)


def test_adding_a_status_and_clearing_statuses(
    admin_client, make_member, django_capture_on_commit_callbacks
):
    hamlet = make_member()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("userstatus", "add"),
            {"user": hamlet.user_id, "status_text": "new", "emoji_name": "", "_save": "Save"},
        )
    assert response.status_code == 302, errors_of(response)
    row = UserStatus.objects.get(user_id=hamlet.user_id)
    assert row.status_text == "new"
    bot = make_member(is_bot=True)
    response = admin_client.post(
        url("userstatus", "add"), {"user": bot.user_id, "status_text": "x", "_save": "Save"}
    )
    assert "Only human members of a realm have statuses." in errors_of(response)

    with recording(user_status_changed) as sent, django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("userstatus"), {"action": "clear", "_selected_action": [row.pk]}, follow=True
        )
    assert messages_of(response) == ["Cleared 1 status."]
    assert [signal["changed"] for signal in sent] == [
        {"status_text": "", "emoji_name": "", "emoji_code": "", "reaction_type": "unicode_emoji"}
    ]
    assert (
        admin_client.post(url("userstatus", "delete", row.pk), {"post": "yes"}).status_code == 403
    )


def test_custom_emoji_admin(admin_client, realm):
    response = admin_client.post(
        url("realmemoji", "add"),
        {"realm": realm.pk, "name": "green_tick", "image_url": "/static/tick.png", "_save": "Save"},
    )
    assert response.status_code == 302
    emoji = RealmEmoji.objects.get()
    assert (emoji.name, emoji.image_url, emoji.deactivated) == (
        "green_tick",
        "/static/tick.png",
        False,
    )
    for name, error in (
        ("Green Tick", "Use lowercase letters, digits, underscores and hyphens only."),
        ("green_tick", "The realm already has an active emoji of that name."),
    ):
        response = admin_client.post(
            url("realmemoji", "add"), {"realm": realm.pk, "name": name, "_save": "Save"}
        )
        assert error in errors_of(response)
    admin_client.post(url("realmemoji"), {"action": "deactivate", "_selected_action": [emoji.pk]})
    emoji.refresh_from_db()
    assert emoji.deactivated
    namesake = actions.do_add_realm_emoji(realm, "green_tick")
    response = admin_client.post(
        url("realmemoji"), {"action": "reactivate", "_selected_action": [emoji.pk]}, follow=True
    )
    assert "Not reactivated: :green_tick: has an active namesake." in messages_of(response)
    actions.do_set_realm_emoji_deactivated(namesake, True)
    admin_client.post(url("realmemoji"), {"action": "reactivate", "_selected_action": [emoji.pk]})
    emoji.refresh_from_db()
    assert not emoji.deactivated
    assert sorted(column(admin_client.get(url("realmemoji")), "code")) == sorted(
        [str(emoji.pk), str(namesake.pk)]
    )
    assert (
        admin_client.post(url("realmemoji", "delete", emoji.pk), {"post": "yes"}).status_code == 403
    )


def test_forbidding_invisible_mode_in_the_admin(
    admin_client, realm, django_capture_on_commit_callbacks
):
    invisible = MemberFactory(realm=realm)
    actions.do_set_presence_enabled(invisible, False)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url("realm", "change", realm.pk), {"_save": "Save"})
    assert response.status_code == 302
    realm.refresh_from_db()
    invisible.refresh_from_db()
    assert (realm.invisible_mode_allowed, invisible.presence_enabled) == (False, True)


def test_the_admin_keeps_the_invisible_mode_policy(
    admin_client, realm, django_capture_on_commit_callbacks
):
    member = MemberFactory(realm=realm)
    actions.do_set_realm_invisible_mode_allowed(realm, False)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("realmmember"),
            {"action": "turn_invisible_mode_on", "_selected_action": [member.pk]},
            follow=True,
        )
    assert messages_of(response)[:2] == [
        "Skipped 1 member: their organization does not allow invisible mode.",
        "Turned invisible mode on for 0 members.",
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url("realmmember", "change", member.pk),
            {"role": member.role, "is_active": "on", "_save": "Save"},
            follow=True,
        )
    assert "Presence stays enabled: the organization does not allow invisible mode." in (
        messages_of(response)
    )
    member.refresh_from_db()
    assert member.presence_enabled is True
