"""{% presence_dot user %} (django_presence.templatetags.presence)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template

from django_presence import actions

from .api_utils import frozen_now, now_seconds

NOW = now_seconds()
TEMPLATE = Template("{% load presence %}{% presence_dot user %}")


def dot(status: str, title: str, user_id: int | None) -> str:
    user = "" if user_id is None else f' data-user-id="{user_id}"'
    return (
        f'<span class="presence-dot presence-dot--{status}"{user} role="img" '
        f'aria-label="{title}" title="{title}"></span>'
    )


def render(user: Any) -> str:
    with frozen_now(NOW):
        return TEMPLATE.render(Context({"user": user}))


def report(member: Any, status: str, seconds_ago: int) -> None:
    actions.update_user_presence(
        member, log_time=NOW - timedelta(seconds=seconds_ago), status=status, new_user_input=True
    )


@pytest.mark.parametrize(
    ("status", "seconds_ago", "expected"),
    [
        ("active", 10, ("active", "active now")),
        ("idle", 10, ("idle", "idle")),
        ("active", 30 * 60, ("offline", "last seen 30 minutes ago")),
        ("idle", 59 * 60 + 59, ("offline", "last seen 59 minutes ago")),
        ("active", 60 * 60, ("offline", "last seen 1 hour ago")),
        ("active", 3 * 24 * 3600, ("offline", "last seen 3 days ago")),
    ],
)
def test_status_and_title(make_member, django_assert_num_queries, status, seconds_ago, expected):
    member = make_member()
    report(member, status, seconds_ago)
    user = get_user_model().objects.get(pk=member.user_id)
    with django_assert_num_queries(1):
        assert render(user) == dot(*expected, member.user_id)


def test_one_minute_is_singular(make_member, settings):
    member = make_member()
    report(member, "active", 70)
    # Lowered after the write, which refuses a threshold this close to the ping interval.
    settings.PRESENCE_OFFLINE_THRESHOLD_SECS = 30
    assert render(member.user) == dot("offline", "last seen 1 minute ago", member.user_id)


def test_an_invisible_user_shows_as_their_backdated_row_makes_them(make_member):
    member = make_member()
    report(member, "active", 10)
    actions.do_set_presence_enabled(member, False, log_time=NOW)
    # Backdated by INVISIBLE_BACKDATE_SECS (270 with the default settings).
    assert render(member.user) == dot("offline", "last seen 4 minutes ago", member.user_id)


def test_no_presence_row_no_user_and_presence_disabled_are_offline(
    make_member, realm, django_assert_num_queries
):
    never = make_member()
    with django_assert_num_queries(1):
        assert render(never.user) == dot("offline", "offline", never.user_id)
    with django_assert_num_queries(0):
        assert render(None) == dot("offline", "offline", None)
    reported = make_member()
    report(reported, "active", 10)
    actions.do_set_realm_presence_disabled(realm, True)
    assert render(reported.user) == dot("offline", "offline", reported.user_id)


def test_presence_loaded_with_the_users_needs_no_query(make_member, django_assert_num_queries):
    active, idle, never = make_member(), make_member(), make_member()
    report(active, "active", 10)
    report(idle, "idle", 10)
    users = list(
        get_user_model()
        .objects.filter(pk__in=[active.user_id, idle.user_id, never.user_id])
        .select_related("presence__realm", "presence_user_status")
        .order_by("pk")
    )
    with django_assert_num_queries(0):
        rendered = [render(user) for user in users]
    assert rendered == [
        dot("active", "active now", active.user_id),
        dot("idle", "idle", idle.user_id),
        dot("offline", "offline", never.user_id),
    ]


def test_the_badge_shows_the_status_and_its_end_time_to_its_owner(
    make_member, django_assert_num_queries
):
    member = make_member()
    other = make_member()
    end = NOW + timedelta(hours=2)
    actions.do_update_user_status(
        member,
        acting_user=None,
        status_text="on vacation",
        emoji=actions.Emoji("car", "1f697", "unicode_emoji"),
        scheduled_end_time=end,
        now=NOW,
    )
    template = Template("{% load presence %}{% presence_dot user %}")

    def render_for(viewer: Any) -> str:
        request = mock.Mock(user=viewer)
        with frozen_now(NOW):
            return template.render(Context({"user": member.user, "request": request}))

    status = '<span class="presence-user-status">\N{AUTOMOBILE} on vacation</span>'
    with django_assert_num_queries(1):
        assert render_for(other.user) == dot("offline", "offline", member.user_id) + status
    owned = render_for(member.user)
    assert owned.startswith(dot("offline", "offline", member.user_id))
    assert "\N{AUTOMOBILE} on vacation (until " in owned
    # An ended status is no status.
    with frozen_now(end):
        ended = template.render(Context({"user": member.user}))
    assert ended == dot("offline", "offline", member.user_id)
    # A custom emoji by name.
    actions.do_update_user_status(
        other,
        acting_user=None,
        emoji=actions.Emoji("green_tick", "7", "realm_emoji"),
        now=NOW,
    )
    assert render(other.user).endswith('<span class="presence-user-status">:green_tick:</span>')
