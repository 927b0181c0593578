"""The presence endpoints cost a fixed number of SQL queries, however large the realm.

Each test measures one request at a realm of 3 members and again after the realm grows to 30,
all with recent presence rows, and expects the same exact count both times. The tests are
transactional, so the counts are those of production: BEGIN and COMMIT of the write's own
transaction, and the presence_changed recipient count that runs after commit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_presence import actions
from django_presence.events import receivers as event_receivers
from django_presence.models import RealmMember, UserPresence, UserStatus
from django_presence.signals import presence_changed
from django_presence.user_status import UNSET

from .api_utils import REALM_PRESENCE_URL, post_presence, success, user_presence_url
from .events_utils import register

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = (3, 30)

# One query each:
AUTH = 1  # the API key, joined with its member, user, realm and the caller's presence row
LOCK = 1  # SELECT ... FOR UPDATE of the caller's presence row
REALM_READ = 1  # the realm's presence rows, access limiting included as a subquery
RECIPIENTS = 1  # after commit, counting presence_changed recipients (up to the limit)
TARGET = 1  # single-user endpoint: the target member
TARGET_ROW = 1  # single-user endpoint: the target's presence row
ACCESS_CHECK = 1  # single-user endpoint, guest viewer with access limiting on
TRANSACTION = 2  # BEGIN and COMMIT of the write's durable transaction


def write_statements() -> int:
    """The sequence increment and the row write: one data-modifying CTE on PostgreSQL."""
    return 1 if connection.vendor == "postgresql" else 2


class GrowingRealm:
    """A realm whose members all reported two minutes ago: recent enough for the 14-day window,
    old enough that the viewer's next active report writes, too recent to count as coming
    online. With ``guest=True`` the viewer is a guest who shares a group with every other
    member that joins."""

    def __init__(self, make_member, api_client_for, *, guest: bool = False) -> None:
        self._make_member = make_member
        self.reported_at = timezone.now() - timedelta(minutes=2)
        self.members: list[RealmMember] = []
        role = RealmMember.Role.GUEST if guest else RealmMember.Role.MEMBER
        self.viewer = self._add(role=role)
        self.group = Group.objects.create(name="viewer's group") if guest else None
        if self.group:
            self.group.user_set.add(self.viewer.user)
        self.client = api_client_for(self.viewer)

    def _add(self, **kwargs: Any) -> RealmMember:
        member = self._make_member(**kwargs)
        actions.do_update_user_presence(member, log_time=self.reported_at, status="active")
        self.members.append(member)
        return member

    def grow_to(self, size: int) -> None:
        while len(self.members) < size:
            member = self._add()
            if self.group and len(self.members) % 2 == 0:
                self.group.user_set.add(member.user)

    def reset_viewer_row(self) -> None:
        UserPresence.objects.filter(user_id=self.viewer.user_id).update(
            last_active_time=self.reported_at, last_connected_time=self.reported_at
        )

    @property
    def target(self) -> RealmMember:
        """A member the guest viewer shares a group with."""
        return self.members[1]


@pytest.fixture
def realm_of_members(make_member, api_client_for) -> GrowingRealm:
    return GrowingRealm(make_member, api_client_for)


@pytest.fixture
def realm_with_guest(make_member, api_client_for, settings) -> GrowingRealm:
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    return GrowingRealm(make_member, api_client_for, guest=True)


@pytest.mark.parametrize("params", [{}, {"last_update_id": -1}, {"slim_presence": True}])
def test_post_presence_that_writes(realm_of_members, django_assert_num_queries, params):
    sized = realm_of_members
    expected = AUTH + TRANSACTION + LOCK + write_statements() + REALM_READ
    for size in SIZES:
        sized.grow_to(size)
        sized.reset_viewer_row()
        with django_assert_num_queries(expected):
            body = success(post_presence(sized.client, status="active", **params))
        assert len(body["presences"]) == size


def _ignore_presence_changed(sender: Any, **kwargs: Any) -> None:
    pass


@pytest.mark.parametrize("receivers", [0, 1])
def test_post_presence_first_report(realm_of_members, django_assert_num_queries, receivers):
    """The row is created and presence_changed goes out, which counts its recipients; with no
    receiver connected (not even the app's own, which feeds the event queues) the count is
    skipped."""
    sized = realm_of_members
    expected = AUTH + TRANSACTION + LOCK + write_statements() + REALM_READ
    if receivers:
        presence_changed.connect(_ignore_presence_changed)
        expected += RECIPIENTS
    else:
        presence_changed.disconnect(sender=UserPresence, dispatch_uid=event_receivers.DISPATCH_UID)
    try:
        _assert_first_report_queries(sized, expected, django_assert_num_queries)
    finally:
        presence_changed.disconnect(_ignore_presence_changed)
        event_receivers.connect()


def _assert_first_report_queries(sized, expected, django_assert_num_queries):
    for size in SIZES:
        sized.grow_to(size)
        UserPresence.objects.filter(user_id=sized.viewer.user_id).delete()
        with django_assert_num_queries(expected):
            body = success(post_presence(sized.client, status="active", last_update_id=-1))
        assert len(body["presences"]) == size


def test_post_presence_without_write(realm_of_members, django_assert_num_queries):
    """A report that changes nothing is seen from the row loaded with the API key: no
    transaction, no lock."""
    sized = realm_of_members
    success(post_presence(sized.client, status="active"))
    for size in SIZES:
        sized.grow_to(size)
        with django_assert_num_queries(AUTH + REALM_READ):
            body = success(post_presence(sized.client, status="idle"))
        assert len(body["presences"]) == size


def test_incremental_poll_with_nothing_new(realm_of_members, django_assert_num_queries):
    """last_update_id = the realm's current id, by a member whose report changes nothing: the
    realm's sequence comes with authentication and shows nothing newer, so nothing is read."""
    sized = realm_of_members
    for size in SIZES:
        sized.grow_to(size)
        start = success(post_presence(sized.client, status="active", last_update_id=-1))
        current = start["presence_last_update_id"]
        with django_assert_num_queries(AUTH):
            body = success(post_presence(sized.client, status="active", last_update_id=current))
        assert (body["presences"], body["presence_last_update_id"]) == ({}, current)


def test_incremental_poll_with_news(realm_of_members, django_assert_num_queries):
    """One member reported after the viewer's cursor: one read, whatever the realm's size."""
    sized = realm_of_members
    for size in SIZES:
        sized.grow_to(size)
        start = success(post_presence(sized.client, status="active", last_update_id=-1))
        current = start["presence_last_update_id"]
        newest = sized.members[-1]  # reported two minutes ago: this report writes
        actions.do_update_user_presence(newest, log_time=timezone.now(), status="active")
        with django_assert_num_queries(AUTH + REALM_READ):
            body = success(post_presence(sized.client, status="active", last_update_id=current))
        assert (list(body["presences"]), body["presence_last_update_id"]) == (
            [str(newest.user_id)],
            current + 1,
        )


def test_ping_only(realm_of_members, django_assert_num_queries):
    sized = realm_of_members
    for size in SIZES:
        sized.grow_to(size)
        sized.reset_viewer_row()
        with django_assert_num_queries(AUTH + TRANSACTION + LOCK + write_statements()):
            success(post_presence(sized.client, status="active", ping_only=True))


def test_realm_presence(realm_of_members, django_assert_num_queries):
    sized = realm_of_members
    for size in SIZES:
        sized.grow_to(size)
        with django_assert_num_queries(AUTH + REALM_READ):
            body = success(sized.client.get(REALM_PRESENCE_URL))
        assert len(body["presences"]) == size


def test_single_user_presence(realm_of_members, django_assert_num_queries):
    sized = realm_of_members
    for size in SIZES:
        sized.grow_to(size)
        for user_id_or_email in (sized.target.user_id, sized.target.email):
            with django_assert_num_queries(AUTH + TARGET + TARGET_ROW):
                success(sized.client.get(user_presence_url(user_id_or_email)))


def accessible_count(sized: GrowingRealm) -> int:
    """The guest viewer and every member sharing their group."""
    return sized.group.user_set.count() if sized.group else len(sized.members)


def test_guest_post_presence(realm_with_guest, django_assert_num_queries):
    sized = realm_with_guest
    expected = AUTH + TRANSACTION + LOCK + write_statements() + REALM_READ
    for size in SIZES:
        sized.grow_to(size)
        sized.reset_viewer_row()
        with django_assert_num_queries(expected):
            body = success(post_presence(sized.client, status="active", last_update_id=-1))
        assert len(body["presences"]) == accessible_count(sized) < size


def test_guest_realm_presence(realm_with_guest, django_assert_num_queries):
    sized = realm_with_guest
    for size in SIZES:
        sized.grow_to(size)
        with django_assert_num_queries(AUTH + REALM_READ):
            body = success(sized.client.get(REALM_PRESENCE_URL))
        assert len(body["presences"]) == accessible_count(sized) < size


def test_guest_single_user_presence(realm_with_guest, django_assert_num_queries):
    sized = realm_with_guest
    for size in SIZES:
        sized.grow_to(size)
        with django_assert_num_queries(AUTH + TARGET + ACCESS_CHECK + TARGET_ROW):
            success(sized.client.get(user_presence_url(sized.target.user_id)))


# register, with the user statuses -----------------------------------------------------------

STATUS_READ = 1  # register's user_status: the realm's statuses, access limiting as a subquery


def _give_statuses(sized: GrowingRealm) -> None:
    """A status, one in three with an end time, for every member who has none yet."""
    for index, member in enumerate(sized.members):
        if not UserStatus.objects.filter(user_id=member.user_id).exists():
            actions.check_update_user_status(
                member,
                acting_user=None,
                status_text=f"status {index}",
                emoji_name="car",
                scheduled_end_time=int(timezone.now().timestamp()) + 3600 if index % 3 else UNSET,
            )


@pytest.mark.parametrize("guest", [False, True])
def test_register_with_user_status(make_member, api_client_for, settings, guest):
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = guest
    sized = GrowingRealm(make_member, api_client_for, guest=guest)
    counts = []
    for size in SIZES:
        sized.grow_to(size)
        _give_statuses(sized)
        with CaptureQueriesContext(connection) as captured:
            body = success(register(sized.client))
        counts.append(len(captured.captured_queries))
        assert len(body["user_status"]) == (size if not guest else len(body["presences"]))
    # The API key, the realm's presence, its statuses.
    assert counts == [AUTH + REALM_READ + STATUS_READ] * 2
