"""GET directory/members with a user model that has no name fields, no get_full_name, no groups
and no is_active field: the email stands in for the name, in the listing, its order and its
search."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_presence import actions
from django_presence.models import RealmMember
from tests.api_utils import frozen_now, success

pytestmark = pytest.mark.django_db

URL = "/api/v1/directory/members"
NOW = timezone.now().replace(microsecond=0)


def test_listing_orders_and_searches_by_email(make_email_member, api_client_for) -> None:
    bea = make_email_member(user__email="bea@example.com")
    ann = make_email_member(user__email="Ann@example.com")
    actions.update_user_presence(
        ann, log_time=NOW - timedelta(seconds=5), status="active", new_user_input=True
    )
    client = api_client_for(bea)
    with frozen_now(NOW):
        body = success(client.get(URL))
        searched = success(client.get(URL, {"search": "BEA@", "status": "never"}))
    assert body["members"] == [
        {
            "user_id": ann.user_id,
            "email": "Ann@example.com",
            "full_name": "Ann@example.com",
            "role": 400,
            "status": "active",
            "active_timestamp": int((NOW - timedelta(seconds=5)).timestamp()),
            "idle_timestamp": int((NOW - timedelta(seconds=5)).timestamp()),
            "user_status": {},
        },
        {
            "user_id": bea.user_id,
            "email": "bea@example.com",
            "full_name": "bea@example.com",
            "role": 400,
            "status": "never",
            "active_timestamp": None,
            "idle_timestamp": None,
            "user_status": {},
        },
    ]
    assert [m["user_id"] for m in searched["members"]] == [bea.user_id]


def test_a_guest_without_groups_sees_only_themself(
    make_email_member, api_client_for, settings
) -> None:
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    make_email_member(user__email="member@example.com")
    guest = make_email_member(user__email="guest@example.com", role=RealmMember.Role.GUEST)
    body = success(api_client_for(guest).get(URL))
    assert [m["user_id"] for m in body["members"]] == [guest.user_id]
    assert body["count"] == 1
