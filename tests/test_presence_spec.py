"""The behavioural cases of spec section 14 (Zulip's presence tests), one test per case, named
after Zulip's.

Zulip's fixtures map onto ``make_member`` (see ZulipOrg). Cases left out, and why: 1 (the
Client model is not presence), 12 and the activity-interval half of 29 (this app keeps no usage
statistics; new_user_input is accepted and ignored), 14 and 15 (Zephyr mirroring), and the push
token half of 5 (there are no push devices, so pushable is simply always false). Case 13 tests
Zulip's notification rule through the timestamps the API returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from django_presence import actions
from django_presence.models import PresenceSequence, Realm, RealmMember, UserPresence
from django_presence.queries import get_presence_dict_by_realm
from django_presence.signals import presence_changed
from django_presence.status import legacy_status

from .api_utils import (
    FORM,
    PRESENCE_URL,
    REALM_PRESENCE_URL,
    MemberClients,
    assert_error,
    form,
    frozen_now,
    now_seconds,
    post_presence,
    recording,
    success,
    ts,
    user_presence_url,
    without_server_timestamp,
)

pytestmark = pytest.mark.django_db

MODERN_KEYS = {"active_timestamp", "idle_timestamp"}
OFFLINE_THRESHOLD = timedelta(seconds=200)


class ZulipOrg:
    """Zulip's test realm "zulip": the humans hamlet, othello, iago (an administrator) and
    cordelia, the guest polonius, and default_bot. Like Zulip's fixture users, everyone joined
    long ago, so date_joined, which stands in for NULL timestamps, never looks recent."""

    def __init__(
        self, make_member: Callable[..., RealmMember], api_client_for: Callable[..., Any]
    ) -> None:
        joined = timezone.now() - timedelta(days=400)

        def member(name: str, **kwargs: Any) -> RealmMember:
            return make_member(
                user__username=name, user__email=f"{name}@zulip.com", date_joined=joined, **kwargs
            )

        self.hamlet = member("hamlet")
        self.othello = member("othello")
        self.iago = member("iago", role=RealmMember.Role.ADMINISTRATOR)
        self.cordelia = member("cordelia")
        self.polonius = member("polonius", role=RealmMember.Role.GUEST)
        self.default_bot = member("default-bot", is_bot=True)
        self.realm: Realm = self.hamlet.realm
        self.client = MemberClients(api_client_for)

    @property
    def members(self) -> list[RealmMember]:
        return [
            self.hamlet,
            self.othello,
            self.iago,
            self.cordelia,
            self.polonius,
            self.default_bot,
        ]

    def post(self, member: RealmMember, user_agent: str | None = None, **params: Any) -> Any:
        if user_agent is None:
            return post_presence(self.client(member), **params)
        return self.client(member).post(
            PRESENCE_URL, form(**params), content_type=FORM, HTTP_USER_AGENT=user_agent
        )

    def get(self, member: RealmMember, path: str) -> Any:
        return self.client(member).get(path)


@pytest.fixture
def org(make_member, api_client_for) -> ZulipOrg:
    return ZulipOrg(make_member, api_client_for)


@pytest.fixture
def old_rows(org):
    """The setUp of Zulip's POST tests: everyone, bots included, has a 365-day-old row."""
    long_ago = timezone.now() - timedelta(days=365)
    for member in org.members:
        actions.do_update_user_presence(member, log_time=long_ago, status="active")


def stored_max_update_id(realm: Realm) -> int:
    return UserPresence.objects.filter(realm=realm).aggregate(m=Max("last_update_id"))["m"]


def set_timestamps(
    member: RealmMember, *, active: datetime | None, connected: datetime | None
) -> None:
    UserPresence.objects.filter(user_id=member.user_id).update(
        last_active_time=active, last_connected_time=connected
    )


def stored_row(member: RealmMember) -> tuple[datetime | None, datetime | None, int]:
    return UserPresence.objects.values_list(
        "last_active_time", "last_connected_time", "last_update_id"
    ).get(user_id=member.user_id)


# Model and query layer -----------------------------------------------------------------------


def test_date_logic(org):
    hamlet = org.hamlet
    assert get_presence_dict_by_realm(org.realm, hamlet, slim_presence=False) == ({}, -1)

    success(org.post(hamlet, status="active"))
    max_id = stored_max_update_id(org.realm)
    legacy, legacy_id = get_presence_dict_by_realm(org.realm, hamlet, slim_presence=False)
    assert list(legacy) == [hamlet.email]
    assert legacy[hamlet.email]["website"]["status"] == "active"
    assert legacy_id == max_id
    modern, modern_id = get_presence_dict_by_realm(org.realm, hamlet, slim_presence=True)
    assert list(modern) == [str(hamlet.user_id)]
    assert set(modern[str(hamlet.user_id)]) == MODERN_KEYS
    assert modern_id == max_id

    def back_date(weeks: int) -> None:
        when = timezone.now() - timedelta(weeks=weeks)
        set_timestamps(hamlet, active=when, connected=when)

    # A week old is still within the 14-day window; three weeks old is not.
    back_date(1)
    presences, update_id = get_presence_dict_by_realm(org.realm, hamlet, slim_presence=False)
    assert (list(presences), update_id) == ([hamlet.email], max_id)
    back_date(3)
    assert get_presence_dict_by_realm(org.realm, hamlet, slim_presence=False) == ({}, -1)
    set_timestamps(hamlet, active=None, connected=None)
    assert get_presence_dict_by_realm(org.realm, hamlet, slim_presence=False) == ({}, -1)


def test_user_presence_row_creation_simulated_race(org, caplog, django_capture_on_commit_callbacks):
    hamlet = org.hamlet
    concurrent = now_seconds() - timedelta(seconds=1)
    insert_row = actions._insert_presence_row

    def insert_after_another_request(member, last_active, last_connected, status):
        # The other request's row lands between our SELECT ... FOR UPDATE and our INSERT.
        UserPresence.objects.create(
            user_id=member.user_id,
            realm_id=member.realm_id,
            last_active_time=concurrent,
            last_connected_time=concurrent,
        )
        return insert_row(member, last_active, last_connected, status)

    caplog.set_level(logging.INFO, logger="django_presence.actions")
    with (
        recording(presence_changed) as sent,
        django_capture_on_commit_callbacks(execute=True),
        mock.patch.object(actions, "_insert_presence_row", insert_after_another_request),
    ):
        body = success(org.post(hamlet, status="active"))

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"UserPresence row already created for {hamlet.user_id}, returning.")
    ]
    assert sent == []
    # The other request won: its row stands, and the response shows it.
    assert stored_row(hamlet) == (concurrent, concurrent, 0)
    assert body["presences"][hamlet.email]["website"]["timestamp"] == ts(concurrent)
    # The losing insert had already taken a sequence number: a gap, as in Zulip.
    assert PresenceSequence.objects.get(realm=org.realm).last_update_id == 1


def test_last_update_id_logic(org):
    hamlet, iago = org.hamlet, org.iago
    query = partial(get_presence_dict_by_realm, org.realm, hamlet, slim_presence=True)
    assert query(last_update_id=-1) == ({}, -1)

    success(org.post(hamlet, status="active"))
    presences, max_id = query(last_update_id=-1)
    assert list(presences) == [str(hamlet.user_id)]
    assert max_id == stored_max_update_id(org.realm)
    assert query(last_update_id=max_id) == ({}, max_id)

    success(org.post(iago, status="active"))
    presences, update_id = query(last_update_id=max_id)
    assert list(presences) == [str(iago.user_id)]
    assert update_id == max_id + 1


def test_pushable_always_false(org):
    hamlet = org.hamlet
    body = success(org.post(hamlet, status="active"))
    assert body["presences"][hamlet.email]["website"]["pushable"] is False
    legacy, _ = get_presence_dict_by_realm(org.realm, hamlet, slim_presence=False)
    assert legacy[hamlet.email]["website"]["pushable"] is False
    realm_body = success(org.get(hamlet, REALM_PRESENCE_URL))
    assert realm_body["presences"][hamlet.email]["website"]["pushable"] is False
    # "aggregated" never carries the key at all.
    assert "pushable" not in realm_body["presences"][hamlet.email]["aggregated"]


# POST users/me/presence ----------------------------------------------------------------------


@pytest.mark.usefixtures("old_rows")
def test_invalid_presence(org):
    assert_error(org.post(org.hamlet, status="foo"), "Invalid status: foo")


@pytest.mark.usefixtures("old_rows")
def test_history_limit_days_api(org):
    hamlet, othello, iago = org.hamlet, org.othello, org.iago
    UserPresence.objects.all().delete()
    for member in (hamlet, othello):
        success(org.post(member, status="idle", last_update_id=-1))
    UserPresence.objects.filter(user_id=othello.user_id).update(
        last_connected_time=timezone.now() - timedelta(days=100)
    )

    def fetch(history_limit_days: int) -> tuple[set[str], int]:
        body = success(
            org.post(iago, status="idle", last_update_id=-1, history_limit_days=history_limit_days)
        )
        return set(body["presences"]), body["presence_last_update_id"]

    ids = {name: str(getattr(org, name).user_id) for name in ("hamlet", "othello", "iago")}
    assert fetch(50)[0] == {ids["hamlet"], ids["iago"]}
    assert fetch(101)[0] == {ids["hamlet"], ids["iago"], ids["othello"]}
    # 0 days means no data at all; the id is the client's own.
    assert fetch(0) == (set(), -1)


@pytest.mark.usefixtures("old_rows")
def test_last_update_id_api(org):
    hamlet, othello = org.hamlet, org.othello
    hamlet_id, othello_id = str(hamlet.user_id), str(othello.user_id)

    body = success(org.post(hamlet, status="idle", last_update_id=-1))
    last_id = stored_max_update_id(org.realm)
    assert (set(body["presences"]), body["presence_last_update_id"]) == ({hamlet_id}, last_id)

    # A repeat within 55 s writes nothing; the legacy format carries the id too.
    body = success(org.post(hamlet, status="idle", slim_presence=False))
    assert (set(body["presences"]), body["presence_last_update_id"]) == ({hamlet.email}, last_id)
    assert stored_max_update_id(org.realm) == last_id

    body = success(org.post(othello, status="idle", last_update_id=-1))
    assert (set(body["presences"]), body["presence_last_update_id"]) == (
        {hamlet_id, othello_id},
        last_id + 1,
    )
    body = success(org.post(othello, status="idle", last_update_id=last_id + 1))
    assert (body["presences"], body["presence_last_update_id"]) == ({}, last_id + 1)

    success(org.post(hamlet, status="active"))
    assert stored_max_update_id(org.realm) == last_id + 2
    body = success(org.post(othello, status="idle", last_update_id=last_id + 1))
    assert (set(body["presences"]), body["presence_last_update_id"]) == ({hamlet_id}, last_id + 2)


@pytest.mark.usefixtures("old_rows")
def test_last_update_id_api_no_data_edge_cases(org):
    UserPresence.objects.all().delete()
    # Writing nothing, as update_user_presence says by returning None.
    with mock.patch("django_presence.views.update_user_presence", return_value=None) as write:
        with_baseline = success(org.post(org.hamlet, status="active", last_update_id=-1))
        without_baseline = success(org.post(org.hamlet, status="active"))
    assert write.call_count == 2
    expected = {"result": "success", "msg": "", "presences": {}, "presence_last_update_id": -1}
    assert without_server_timestamp(with_baseline) == expected
    assert without_server_timestamp(without_baseline) == expected
    assert not UserPresence.objects.exists()


@pytest.mark.usefixtures("old_rows")
def test_set_idle(org):
    hamlet, othello = org.hamlet, org.othello
    body = success(org.post(hamlet, status="idle"))
    website = body["presences"][hamlet.email]["website"]
    assert website["status"] == "idle"
    assert isinstance(website["timestamp"], int)
    # Everyone else's row is a year old, outside the window.
    assert list(body["presences"]) == [hamlet.email]

    body = success(org.post(othello, status="idle", slim_presence=True))
    presences = body["presences"]
    assert set(presences) == {str(hamlet.user_id), str(othello.user_id)}
    assert all(set(entry) == MODERN_KEYS for entry in presences.values())
    assert (
        presences[str(othello.user_id)]["idle_timestamp"]
        >= presences[str(hamlet.user_id)]["idle_timestamp"]
    )


@pytest.mark.usefixtures("old_rows")
def test_set_active(org):
    hamlet, othello = org.hamlet, org.othello

    def statuses(body: dict[str, Any]) -> dict[str, str]:
        return {email: entry["website"]["status"] for email, entry in body["presences"].items()}

    assert statuses(success(org.post(hamlet, status="idle"))) == {hamlet.email: "idle"}
    body = success(org.post(othello, status="idle"))
    assert statuses(body) == {hamlet.email: "idle", othello.email: "idle"}
    body = success(org.post(othello, status="active"))
    assert statuses(body) == {hamlet.email: "idle", othello.email: "active"}

    body = success(org.post(hamlet, status="active", slim_presence=True))
    presences = body["presences"]
    assert set(presences) == {str(hamlet.user_id), str(othello.user_id)}
    assert all(set(entry) == MODERN_KEYS for entry in presences.values())
    assert (
        presences[str(hamlet.user_id)]["active_timestamp"]
        >= presences[str(othello.user_id)]["active_timestamp"]
    )


def test_filter_presence_idle_user_ids(org):
    """Zulip's notification rule, "idle unless last_active_time >= now - offline threshold",
    read from the modern timestamps the API returns."""
    hamlet = org.hamlet

    def is_idle() -> bool:
        presences, _ = get_presence_dict_by_realm(org.realm, hamlet, slim_presence=True)
        entry = presences.get(str(hamlet.user_id))
        threshold = ts(timezone.now() - OFFLINE_THRESHOLD)
        return entry is None or entry["active_timestamp"] < threshold

    assert is_idle()  # no row
    success(org.post(hamlet, status="idle"))
    assert is_idle()  # never active: the join date stands in
    success(org.post(hamlet, status="active"))
    assert not is_idle()

    long_ago = timezone.now() - OFFLINE_THRESHOLD - timedelta(seconds=1)
    UserPresence.objects.filter(user_id=hamlet.user_id).update(last_active_time=long_ago)
    assert is_idle()
    success(org.post(hamlet, status="idle"))
    assert is_idle()
    # The client does not matter: an active report from the mobile app counts.
    success(org.post(hamlet, user_agent="ZulipMobile/1.0", status="active"))
    assert not is_idle()


@pytest.mark.usefixtures("old_rows")
def test_same_realm(org, make_member, api_client_for):
    lear = actions.do_create_realm("lear", "Lear")
    king = make_member(realm=lear, user__username="king", user__email="king@lear.example")
    success(post_presence(api_client_for(king), status="idle"))

    body = success(org.post(org.hamlet, status="idle"))
    assert list(body["presences"]) == [org.hamlet.email]
    assert body["presences"][org.hamlet.email]["website"]["status"] == "idle"


@pytest.mark.usefixtures("old_rows")
def test_null_timestamps_handling(org):
    hamlet, othello = org.hamlet, org.othello
    joined = now_seconds() - timedelta(days=1)
    RealmMember.objects.filter(pk=othello.pk).update(date_joined=joined)
    set_timestamps(othello, active=None, connected=None)

    body = success(org.get(hamlet, user_presence_url(othello.email)))
    assert body["presence"] == {
        "active_timestamp": ts(joined),
        "idle_timestamp": ts(joined),
        "aggregated": {"status": "offline", "timestamp": ts(joined)},
        "website": {"status": "active", "timestamp": ts(joined)},
    }
    assert success(org.get(hamlet, REALM_PRESENCE_URL))["presences"] == {}

    now = timezone.now()
    set_timestamps(othello, active=now, connected=now)
    assert list(success(org.get(hamlet, REALM_PRESENCE_URL))["presences"]) == [othello.email]


# The exact statements of each kind of POST. Authentication is one query (the key, with member,
# user, presence row and realm joined). The write is a SELECT ... FOR UPDATE, then the sequence
# increment and the row write: one data-modifying CTE on PostgreSQL, two statements elsewhere.
# A write that sends presence_changed counts the recipients after commit. Inside the test's
# transaction the write's own atomic block adds a SAVEPOINT and its RELEASE. A report that
# changes nothing is known from the row authentication loaded: no transaction at all.
def post_query_count(*, writes: bool, signals: bool) -> int:
    auth, lock, read, savepoint = 1, 1, 1, 2
    if not writes:
        return auth + read + (1 if signals else 0)
    write = 1 if connection.vendor == "postgresql" else 2
    return auth + savepoint + lock + write + read + (1 if signals else 0)


@pytest.mark.usefixtures("old_rows")
def test_query_counts(org, django_assert_num_queries, django_capture_on_commit_callbacks):
    client = org.client(org.hamlet)  # its API key is made here, outside the counts
    UserPresence.objects.filter(user_id=org.hamlet.user_id).delete()

    def post(status: str) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            success(post_presence(client, status=status))

    # As in Zulip, where the first report's event is delivered: a receiver is listening.
    with (
        recording(presence_changed) as sent,
        django_assert_num_queries(post_query_count(writes=True, signals=True)),
    ):
        post("active")
    assert len(sent) == 1
    # Zulip's warm-cache repeat: the row loaded with the API key shows nothing to write.
    with django_assert_num_queries(post_query_count(writes=False, signals=False)):
        post("active")
    with django_assert_num_queries(post_query_count(writes=False, signals=False)):
        post("idle")


# GET users/<user_id_or_email>/presence -------------------------------------------------------


def test_email_access(org):
    hamlet, othello = org.hamlet, org.othello
    get_user_model().objects.filter(pk=othello.user_id).update(email="email@zulip.com")
    # Only the current email finds a user: not an address the user had before, nor one
    # nobody in the realm has.
    assert_error(org.get(hamlet, user_presence_url("othello@zulip.com")), "No such user")
    assert_error(org.get(hamlet, user_presence_url("nobody@zulip.com")), "No such user")
    assert_error(
        org.get(hamlet, user_presence_url("email@zulip.com")),
        "No presence data for email@zulip.com",
    )
    # The email matches case-insensitively, and the path value is echoed as given.
    assert_error(
        org.get(hamlet, user_presence_url("EMAIL@zulip.com")),
        "No presence data for EMAIL@zulip.com",
    )


def test_single_user_get(org, settings, make_member, api_client_for):
    hamlet, othello, cordelia, polonius = org.hamlet, org.othello, org.cordelia, org.polonius
    now = now_seconds()
    with frozen_now(now):
        success(org.post(othello, status="active"))
        success(org.post(othello, user_agent="ZulipDesktop/1.0", status="active"))
        success(org.post(othello, user_agent="ZulipAndroid/1.0", status="idle"))

    def get(viewer: RealmMember, user_id_or_email: object) -> Any:
        with frozen_now(now):
            return org.get(viewer, user_presence_url(user_id_or_email))

    assert_error(get(hamlet, "nonexistence@zulip.com"), "No such user")
    assert_error(get(hamlet, cordelia.email), "No presence data for cordelia@zulip.com")
    assert_error(get(hamlet, cordelia.user_id), f"No presence data for {cordelia.user_id}")
    actions.do_deactivate_member(cordelia)
    assert_error(get(hamlet, cordelia.email), "No such user")
    assert_error(get(hamlet, cordelia.user_id), "No such user")
    assert_error(get(hamlet, org.default_bot.email), "Presence is not supported for bot users.")

    lear = actions.do_create_realm("lear", "Lear")
    king = make_member(realm=lear, user__username="king", user__email="king@lear.example")
    king_client = api_client_for(king)
    assert_error(king_client.get(user_presence_url(othello.email)), "No such user")
    assert_error(king_client.get(user_presence_url(othello.user_id)), "No such user")

    # With access limiting on, a guest sees only those who share a group with them.
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    assert_error(get(polonius, othello.email), "Insufficient permission")
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = False
    # Zulip 12.0 (feature level 497): the modern timestamps beside the legacy entries.
    expected = {
        "active_timestamp": ts(now),
        "idle_timestamp": ts(now),
        "aggregated": {"status": "active", "timestamp": ts(now)},
        "website": {"status": "active", "timestamp": ts(now)},
    }
    assert success(get(polonius, othello.email))["presence"] == expected

    for user_id_or_email in (othello.email, othello.user_id):
        body = without_server_timestamp(success(get(hamlet, user_id_or_email)))
        assert body == {"result": "success", "msg": "", "presence": expected}


def test_ping_only(org):
    response = org.post(org.othello, status="active", ping_only=True)
    assert response.status_code == 200
    assert response.json() == {"result": "success", "msg": ""}


# Aggregation (legacy output) -----------------------------------------------------------------


def send_presence_for_aggregated_tests(
    org: ZulipOrg, member: RealmMember, status: str, base: datetime
) -> None:
    """Zulip's helper: a year-old report, then the web at base-5 s, Android at base-2 s and iOS
    at base-7 s, all with ``status``. Only the base-5 s report writes: the Android one comes
    within 55 s of it, and the iOS one is older than what is stored."""
    reports = [
        (timedelta(days=365), "ZulipTestDev/1.0"),
        (timedelta(seconds=5), "Mozilla/5.0 (X11; Linux x86_64)"),
        (timedelta(seconds=2), "ZulipAndroid/1.0"),
        (timedelta(seconds=7), "ZulipIOS/1.0"),
    ]
    for ago, user_agent in reports:
        with frozen_now(base - ago):
            body = success(org.post(member, user_agent=user_agent, status=status))
    assert body["presences"][member.email]["aggregated"] == {
        "status": status,
        "timestamp": ts(base - timedelta(seconds=5)),
        "client": "website",
    }


def test_aggregated_info(org):
    hamlet = org.hamlet
    now = now_seconds()
    send_presence_for_aggregated_tests(org, hamlet, "active", now - timedelta(seconds=56))
    with frozen_now(now):
        body = success(org.post(hamlet, user_agent="ZulipTestDev/1.0", status="active"))
    assert body["presences"][hamlet.email]["aggregated"] == {
        "status": "active",
        "timestamp": ts(now),
        "client": "website",
    }


def assert_single_user_aggregate(org: ZulipOrg, status: str) -> None:
    """After the helper, GET of the user gives the base-5 s report, without client or pushable."""
    now = now_seconds()
    send_presence_for_aggregated_tests(org, org.hamlet, status, now)
    with frozen_now(now):
        body = success(org.get(org.othello, user_presence_url(org.hamlet.email)))
    entry = {"status": status, "timestamp": ts(now - timedelta(seconds=5))}
    legacy = {key: body["presence"][key] for key in ("website", "aggregated")}
    assert legacy == {"website": entry, "aggregated": entry}
    assert body["presence"]["idle_timestamp"] == ts(now - timedelta(seconds=5))


def test_aggregated_presence_active(org):
    assert_single_user_aggregate(org, "active")


def test_aggregated_presence_idle(org):
    assert_single_user_aggregate(org, "idle")


def test_aggregated_presence_mixed(org):
    hamlet = org.hamlet
    now = now_seconds()
    send_presence_for_aggregated_tests(org, hamlet, "idle", now)
    three_seconds_ago = now - timedelta(seconds=3)
    with frozen_now(three_seconds_ago):
        body = success(org.post(hamlet, status="active"))
    assert body["presences"][hamlet.email]["aggregated"] == {
        "status": "active",
        "timestamp": ts(three_seconds_ago),
        "client": "website",
    }
    # last_active is written, and last_connected moves up to match it.
    last_active, last_connected, _ = stored_row(hamlet)
    assert last_active == last_connected == three_seconds_ago


def test_aggregated_presence_offline(org):
    now = now_seconds()
    send_presence_for_aggregated_tests(org, org.hamlet, "idle", now)
    five_seconds_ago = now - timedelta(seconds=5)

    def aggregated_status(at: datetime) -> str:
        with frozen_now(at):
            body = success(org.get(org.othello, user_presence_url(org.hamlet.email)))
        assert body["presence"]["website"] == {"status": "idle", "timestamp": ts(five_seconds_ago)}
        assert body["presence"]["aggregated"]["timestamp"] == ts(five_seconds_ago)
        return body["presence"]["aggregated"]["status"]

    assert aggregated_status(now + OFFLINE_THRESHOLD + timedelta(seconds=1)) == "offline"
    # Offline means strictly older than the threshold.
    assert aggregated_status(five_seconds_ago + OFFLINE_THRESHOLD) == "idle"
    assert aggregated_status(five_seconds_ago + OFFLINE_THRESHOLD + timedelta(seconds=1)) == (
        "offline"
    )


# GET realm/presence and the realm and user flags ---------------------------------------------


def test_get_statuses(org, settings):
    hamlet, othello, polonius = org.hamlet, org.othello, org.polonius
    # Bots cannot report presence, but a bot's row (say, from before it became one) is
    # never listed either.
    actions.do_update_user_presence(org.default_bot, log_time=timezone.now(), status="active")
    success(org.post(othello, user_agent="ZulipAndroid/1.0", status="active"))
    body = success(org.post(hamlet, user_agent="ZulipDesktop/1.0", status="idle"))
    assert set(body["presences"]) == {hamlet.email, othello.email}
    body = success(org.post(hamlet, status="idle", slim_presence=True))
    assert set(body["presences"]) == {str(hamlet.user_id), str(othello.user_id)}

    # Bots may read the realm's presence.
    body = success(org.get(org.default_bot, REALM_PRESENCE_URL))
    assert set(body["presences"]) == {hamlet.email, othello.email}

    # The guest shares a group with hamlet only.
    Group.objects.create(name="elsinore").user_set.add(hamlet.user, polonius.user)
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    assert set(success(org.get(polonius, REALM_PRESENCE_URL))["presences"]) == {hamlet.email}
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = False
    body = success(org.get(polonius, REALM_PRESENCE_URL))
    assert set(body["presences"]) == {hamlet.email, othello.email}

    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    body = success(org.post(polonius, status="active"))
    assert set(body["presences"]) == {hamlet.email, polonius.email}
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = False
    body = success(org.post(polonius, status="active"))
    assert set(body["presences"]) == {hamlet.email, polonius.email, othello.email}


def test_do_change_user_setting_presence_enabled(org):
    hamlet = org.hamlet
    now = now_seconds()
    backdated = now - timedelta(seconds=200 + 55 + 10)
    long_ago = now - timedelta(days=100)

    # With no row, going invisible creates none; coming back records an active report.
    actions.do_set_presence_enabled(hamlet, False, log_time=now)
    assert not UserPresence.objects.filter(user_id=hamlet.user_id).exists()
    actions.do_set_presence_enabled(hamlet, True, log_time=now)
    assert stored_row(hamlet)[:2] == (now, now)

    actions.do_set_presence_enabled(hamlet, False, log_time=now)
    assert stored_row(hamlet)[:2] == (backdated, backdated)

    # Timestamps already older than the backdate stay as they are, with no write.
    actions.do_set_presence_enabled(hamlet, True, log_time=now)
    set_timestamps(hamlet, active=long_ago, connected=long_ago)
    update_id = stored_row(hamlet)[2]
    actions.do_set_presence_enabled(hamlet, False, log_time=now)
    assert stored_row(hamlet) == (long_ago, long_ago, update_id)

    # Only the timestamp newer than the backdate moves; last_active never moves forward.
    actions.do_set_presence_enabled(hamlet, True, log_time=now)
    set_timestamps(hamlet, active=long_ago, connected=now - timedelta(seconds=1))
    actions.do_set_presence_enabled(hamlet, False, log_time=now)
    assert stored_row(hamlet)[:2] == (long_ago, backdated)


@pytest.mark.usefixtures("old_rows")
def test_presence_disabled(org):
    hamlet, othello = org.hamlet, org.othello
    actions.do_set_presence_enabled(othello, False)
    othello_row = stored_row(othello)
    success(org.post(othello, status="active", new_user_input=True))
    assert stored_row(othello) == othello_row

    assert list(success(org.post(hamlet, status="active"))["presences"]) == [hamlet.email]
    body = success(org.post(hamlet, status="active", slim_presence=True))
    assert list(body["presences"]) == [str(hamlet.user_id)]


def test_legacy_status_rule():
    now = now_seconds()
    fifty_seconds_ago = now - timedelta(seconds=50)
    three_minutes_ago = now - timedelta(minutes=3)
    assert legacy_status(now, now, 70) == ("active", ts(now))
    assert legacy_status(fifty_seconds_ago, now, 70) == ("active", ts(fifty_seconds_ago))
    assert legacy_status(three_minutes_ago, now, 70) == ("idle", ts(now))


# Events: the presence_changed signal ---------------------------------------------------------


def test_presence_events(org, django_capture_on_commit_callbacks):
    hamlet = org.hamlet
    now = now_seconds()
    with (
        recording(presence_changed) as sent,
        django_capture_on_commit_callbacks(execute=True),
        frozen_now(now),
    ):
        success(org.post(hamlet, status="active"))
    assert sent == [
        {
            "signal": presence_changed,
            "user": hamlet.user,
            "member": hamlet,
            "realm": org.realm,
            "presence": {"active_timestamp": ts(now), "idle_timestamp": ts(now)},
            "last_update_id": 1,
            "server_timestamp": now.timestamp(),
            "forced": False,
        }
    ]


def test_presence_events_multiple_clients(org, django_capture_on_commit_callbacks):
    hamlet = org.hamlet
    now = now_seconds()
    actions.do_update_user_presence(hamlet, log_time=now - timedelta(days=365), status="active")

    def report(seconds: int, status: str, user_agent: str) -> list[dict[str, Any]]:
        with (
            recording(presence_changed) as sent,
            django_capture_on_commit_callbacks(execute=True),
            frozen_now(now + timedelta(seconds=seconds)),
        ):
            success(org.post(hamlet, user_agent=user_agent, status=status))
        return sent

    assert report(0, "idle", "ZulipAndroid/1.0") == []
    sent = report(1, "active", "Mozilla/5.0")
    assert [event["presence"] for event in sent] == [
        {"active_timestamp": ts(now) + 1, "idle_timestamp": ts(now) + 1}
    ]
    row = stored_row(hamlet)
    assert report(30, "idle", "ZulipAndroid/1.0") == []
    assert stored_row(hamlet) == row
    # More than 130 s since the last active report: the user came online again.
    sent = report(302, "active", "Mozilla/5.0")
    assert [event["presence"] for event in sent] == [
        {"active_timestamp": ts(now) + 302, "idle_timestamp": ts(now) + 302}
    ]


def test_presence_events_disabled_on_larger_realm(
    org, settings, django_capture_on_commit_callbacks
):
    """Zulip's cut-off, for event queues: only the forced event is published. Host receivers
    hear of both changes."""
    settings.PRESENCE_USER_LIMIT_FOR_EVENTS = 3  # the realm has 6 active members
    now = now_seconds()
    with (
        mock.patch("django_presence.events.receivers.get_event_backend") as backend,
        recording(presence_changed) as sent,
        django_capture_on_commit_callbacks(execute=True),
    ):
        actions.do_update_user_presence(
            org.hamlet, log_time=now, status="active", force_send_update=True
        )
        success(org.post(org.othello, status="active"))
    published = [call.args[1]["user_id"] for call in backend.return_value.publish.call_args_list]
    assert published == [org.hamlet.user_id]
    assert [(event["member"], event["forced"]) for event in sent] == [
        (org.hamlet, True),
        (org.othello, False),
    ]
