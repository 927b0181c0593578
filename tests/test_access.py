"""django_presence.access: the one access rule. A host states its policy once (one adapter
method) and the realm read, the single-user endpoint, the directory, event delivery and the
event recipients count all agree with it."""

from __future__ import annotations

import pytest
from django.db.models import QuerySet
from django.db.models.functions import Mod
from django.test import override_settings
from django.utils import timezone

from django_presence import access, actions
from django_presence.adapter import DefaultAccessAdapter
from django_presence.models import RealmMember
from django_presence.queries import count_event_recipients, has_more_event_recipients_than

from .api_utils import REALM_PRESENCE_URL, assert_error, success, user_presence_url
from .events_utils import poll, register_queue
from .factories import RealmFactory

pytestmark = pytest.mark.django_db


class OddSeesOdd(DefaultAccessAdapter):
    """A host policy stated once: members with an odd user id see only odd user ids (and the
    others see everyone)."""

    def accessible_user_ids(self, viewer: RealmMember) -> QuerySet[RealmMember, int] | None:
        if viewer.user_id % 2 == 0:
            return None
        members = RealmMember.objects.filter(realm_id=viewer.realm_id)
        odd = members.annotate(parity=Mod("user_id", 2)).filter(parity=1)
        return odd.values_list("user_id", flat=True)


@pytest.fixture
def policy(settings):
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    settings.PRESENCE_ACCESS_ADAPTER = f"{__name__}.OddSeesOdd"


@pytest.fixture
def team(make_member):
    """Six members, user ids 1 to 6, each with a presence row."""
    members = [make_member() for _ in range(6)]
    for member in members:
        actions.do_update_user_presence(member, log_time=timezone.now(), status="active")
    return members


def _odd(members: list[RealmMember]) -> list[RealmMember]:
    return [member for member in members if member.user_id % 2 == 1]


@pytest.mark.usefixtures("policy")
def test_every_consumer_follows_the_one_policy(team, api_client_for):
    viewer = _odd(team)[0]
    odd_ids = {member.user_id for member in _odd(team)}
    client = api_client_for(viewer)

    realm_read = success(client.get(REALM_PRESENCE_URL))["presences"]
    assert {member.user_id for member in team if member.email in realm_read} == odd_ids

    for member in team:
        response = client.get(user_presence_url(member.user_id))
        if member.user_id in odd_ids:
            success(response)
        else:
            assert_error(response, "Insufficient permission")
        assert access.can_access(viewer, member) is (member.user_id in odd_ids)

    directory = success(client.get("/api/v1/directory/members"))["members"]
    assert {entry["user_id"] for entry in directory} == odd_ids

    assert access.visible_subjects(viewer, {m.user_id for m in team}) == odd_ids
    # Who may see an even member: the even members only (3 of 6); an odd one: everyone.
    even = team[1]
    assert count_event_recipients(even.realm, even, stop_after=100) == 3
    assert count_event_recipients(even.realm, viewer, stop_after=100) == 6
    assert count_event_recipients(even.realm, viewer, stop_after=4) == 4


@pytest.mark.usefixtures("policy")
def test_event_delivery_follows_the_policy(
    team, api_client_for, django_capture_on_commit_callbacks
):
    viewer = _odd(team)[0]
    client = api_client_for(viewer)
    queue_id = register_queue(client)
    with django_capture_on_commit_callbacks(execute=True):
        for member in team:
            actions.do_set_presence_enabled(member, False)
    seen = {event["user_id"] for event in poll(client, queue_id)}
    assert seen == {member.user_id for member in _odd(team)}


@pytest.mark.usefixtures("policy")
def test_the_event_limit_is_decided_by_the_policy_only_above_the_realm_size(
    team, monkeypatch, django_assert_num_queries
):
    even = team[1]
    asked: list[int] = []
    ask = OddSeesOdd.accessible_user_ids

    def counted(adapter: OddSeesOdd, viewer: RealmMember) -> QuerySet[RealmMember, int] | None:
        asked.append(viewer.user_id)
        return ask(adapter, viewer)

    monkeypatch.setattr(OddSeesOdd, "accessible_user_ids", counted)
    # Six members: a limit of six or more is never exceeded, whoever sees whom, which one
    # capped count says without asking the policy about any viewer.
    for limit in (6, 100):
        with django_assert_num_queries(1):
            assert has_more_event_recipients_than(even.realm, even, limit) is False
    assert asked == []
    # Below the realm's size the policy decides: three members see an even one, six an odd one.
    assert has_more_event_recipients_than(even.realm, even, 2) is True
    assert has_more_event_recipients_than(even.realm, even, 3) is False
    assert has_more_event_recipients_than(even.realm, team[0], 5) is True
    assert asked


def test_without_access_limiting_one_count_decides_the_event_limit(team, django_assert_num_queries):
    viewer = team[0]
    for limit, exceeded in ((5, True), (6, False)):
        with django_assert_num_queries(1):
            assert has_more_event_recipients_than(viewer.realm, viewer, limit) is exceeded


def test_without_access_limiting_everyone_sees_everyone(team):
    viewer = team[0]
    assert access.accessible_user_ids(viewer) is None
    assert all(access.can_access(viewer, member) for member in team)
    assert count_event_recipients(viewer.realm, viewer, stop_after=100) == 6


@override_settings(PRESENCE_LIMIT_TO_ACCESSIBLE_USERS=True)
def test_nobody_accesses_another_realm(make_member, realm):
    other = make_member(realm=RealmFactory())
    member = make_member()
    assert not access.can_access(member, other)
    assert access.can_access(member, member)
