"""The operator commands: every option, every error, and keys that really authenticate."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from io import StringIO
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import UserManager
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_presence import actions, timers
from django_presence.management.commands.presence_purge import Command as PurgeCommand
from django_presence.models import ApiKey, PresenceSequence, Realm, RealmMember, UserPresence
from django_presence.queries import RealmPresenceStats, get_realm_presence_stats
from django_presence.signals import presence_status_changed
from loopback.auth import basic_auth

from .api_utils import frozen_now, now_seconds, post_presence, recording, success
from .factories import MemberFactory, RealmFactory, UserFactory

pytestmark = pytest.mark.django_db

REALM_PRESENCE_URL = "/api/v1/realm/presence"


def run(name: str, *args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def fails(name: str, *args: str) -> str:
    with pytest.raises(CommandError) as raised:
        run(name, *args)
    return str(raised.value)


def presence_status(client, email: str, key: str) -> tuple[int, dict]:
    response = client.get(REALM_PRESENCE_URL, HTTP_AUTHORIZATION=basic_auth(email, key))
    return response.status_code, response.json()


INVALID_API_KEY = {"result": "error", "msg": "Invalid API key", "code": "UNAUTHORIZED"}


# presence_add_member -----------------------------------------------------------------------


def test_add_member_to_existing_realm(realm):
    user = UserFactory(email="hamlet@example.com")
    out, err = run("presence_add_member", "hamlet@example.com", "--realm", "zulip")
    assert out == "Added hamlet@example.com to realm 'zulip' (role: member, bot: no).\n"
    assert err == ""
    member = RealmMember.objects.get(user=user)
    assert (member.realm, member.role, member.is_bot, member.is_active) == (
        realm,
        RealmMember.Role.MEMBER,
        False,
        True,
    )


def test_add_member_finds_the_user_case_insensitively(realm):
    user = UserFactory(email="Hamlet@Example.com")
    out, _ = run("presence_add_member", " hamlet@EXAMPLE.com ", "--realm", "zulip")
    assert out == "Added Hamlet@Example.com to realm 'zulip' (role: member, bot: no).\n"
    assert RealmMember.objects.get().user == user


def test_add_member_as_guest_bot(realm):
    UserFactory(email="bot@example.com")
    out, _ = run("presence_add_member", "bot@example.com", "--realm", "zulip", "--bot", "--guest")
    assert out == "Added bot@example.com to realm 'zulip' (role: guest, bot: yes).\n"
    member = RealmMember.objects.get()
    assert (member.role, member.is_bot) == (RealmMember.Role.GUEST, True)


def test_add_member_with_create_realm():
    UserFactory(email="hamlet@example.com")
    out, _ = run(
        "presence_add_member",
        "hamlet@example.com",
        "--realm",
        "denmark",
        "--create-realm",
        "--realm-name",
        "Kingdom of Denmark",
    )
    assert out == (
        "Created realm 'denmark' named 'Kingdom of Denmark'.\n"
        "Added hamlet@example.com to realm 'denmark' (role: member, bot: no).\n"
    )
    realm = Realm.objects.get()
    assert (realm.string_id, realm.name) == ("denmark", "Kingdom of Denmark")
    assert PresenceSequence.objects.get(realm=realm).last_update_id == 0


def test_create_realm_names_the_realm_after_its_string_id_by_default():
    UserFactory(email="hamlet@example.com")
    out, _ = run(
        "presence_add_member", "hamlet@example.com", "--realm", "elsinore", "--create-realm"
    )
    assert out.splitlines()[0] == "Created realm 'elsinore' named 'elsinore'."
    assert Realm.objects.get().name == "elsinore"


def test_create_realm_uses_an_existing_realm(realm):
    UserFactory(email="hamlet@example.com")
    out, _ = run("presence_add_member", "hamlet@example.com", "--realm", "zulip", "--create-realm")
    assert out == "Added hamlet@example.com to realm 'zulip' (role: member, bot: no).\n"
    assert Realm.objects.get() == realm


def test_add_member_with_create_user(realm):
    out, _ = run("presence_add_member", "ophelia@example.com", "--realm", "zulip", "--create-user")
    user = get_user_model().objects.get()
    assert out == (
        f"Created user ophelia@example.com (id {user.pk}) with no usable password.\n"
        "Added ophelia@example.com to realm 'zulip' (role: member, bot: no).\n"
    )
    assert (user.username, user.email) == ("ophelia@example.com", "ophelia@example.com")
    assert not user.has_usable_password()
    assert RealmMember.objects.get().user == user


def test_create_user_uses_an_existing_user(realm):
    user = UserFactory(email="hamlet@example.com")
    out, _ = run("presence_add_member", "HAMLET@example.com", "--realm", "zulip", "--create-user")
    assert out == "Added hamlet@example.com to realm 'zulip' (role: member, bot: no).\n"
    assert get_user_model().objects.get() == user


def test_create_realm_and_user_together():
    out, _ = run(
        "presence_add_member", "a@b.org", "--realm", "new", "--create-realm", "--create-user"
    )
    user = get_user_model().objects.get()
    assert out == (
        "Created realm 'new' named 'new'.\n"
        f"Created user a@b.org (id {user.pk}) with no usable password.\n"
        "Added a@b.org to realm 'new' (role: member, bot: no).\n"
    )


def test_add_member_requires_the_realm_option():
    assert fails("presence_add_member", "hamlet@example.com") == (
        "Error: the following arguments are required: --realm"
    )


def test_add_member_to_a_missing_realm_fails():
    UserFactory(email="hamlet@example.com")
    assert fails("presence_add_member", "hamlet@example.com", "--realm", "nowhere") == (
        "No realm has the string id 'nowhere'. Pass --create-realm to create it."
    )
    assert not RealmMember.objects.exists()


def test_realm_name_without_create_realm_fails(realm):
    UserFactory(email="hamlet@example.com")
    message = fails(
        "presence_add_member", "hamlet@example.com", "--realm", "zulip", "--realm-name", "Z"
    )
    assert message == "--realm-name only applies with --create-realm."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--realm", "not a slug"],
            "Invalid realm string id 'not a slug': Enter a valid “slug” consisting of letters, "
            "numbers, underscores or hyphens.",
        ),
        (
            ["--realm", "x" * 65],
            f"Invalid realm string id '{'x' * 65}': Ensure this value has at most 64 characters "
            "(it has 65).",
        ),
        (
            ["--realm", "ok", "--realm-name", "n" * 101],
            f"Invalid realm name '{'n' * 101}': Ensure this value has at most 100 characters "
            "(it has 101).",
        ),
    ],
)
def test_create_realm_validates_the_realm(args, message):
    UserFactory(email="hamlet@example.com")
    assert fails("presence_add_member", "hamlet@example.com", "--create-realm", *args) == message
    assert not Realm.objects.exists()


def test_add_missing_user_fails(realm):
    assert fails("presence_add_member", "nobody@example.com", "--realm", "zulip") == (
        "No user has the email nobody@example.com. Pass --create-user to create one."
    )


def test_failure_leaves_no_new_realm_behind():
    message = fails("presence_add_member", "nobody@example.com", "--realm", "new", "--create-realm")
    assert message == "No user has the email nobody@example.com. Pass --create-user to create one."
    assert not Realm.objects.exists()


def test_create_user_validates_the_email(realm):
    assert fails("presence_add_member", "not-an-email", "--realm", "zulip", "--create-user") == (
        "Invalid email 'not-an-email': Enter a valid email address."
    )
    assert not get_user_model().objects.exists()


def test_create_user_refuses_a_taken_username(realm):
    UserFactory(username="ophelia@example.com", email="other@example.com")
    message = fails(
        "presence_add_member", "ophelia@example.com", "--realm", "zulip", "--create-user"
    )
    assert message == "Cannot create a user: another user has the username ophelia@example.com."


def test_user_already_in_a_realm_fails(realm):
    MemberFactory(user__email="hamlet@example.com", realm=RealmFactory(string_id="other"))
    assert fails("presence_add_member", "hamlet@example.com", "--realm", "zulip") == (
        "hamlet@example.com already belongs to realm 'other'."
    )
    assert fails("presence_add_member", "hamlet@example.com", "--realm", "other") == (
        "hamlet@example.com already belongs to realm 'other'."
    )


def test_email_taken_in_the_realm_fails(realm):
    """Two users whose emails differ only in case: the exact match is the one meant, and it
    may not join a realm where the other is a member."""
    taken = MemberFactory(user__email="Hamlet@example.com", realm=realm)
    UserFactory(email="hamlet@example.com")
    assert fails("presence_add_member", "hamlet@example.com", "--realm", "zulip") == (
        f"Another member of realm 'zulip' already has the email Hamlet@example.com "
        f"(user id {taken.user_id})."
    )
    # The same user may join another realm.
    RealmFactory(string_id="other")
    out, _ = run("presence_add_member", "hamlet@example.com", "--realm", "other")
    assert out == "Added hamlet@example.com to realm 'other' (role: member, bot: no).\n"


def test_ambiguous_email_fails(realm):
    first = UserFactory(email="hamlet@example.com")
    second = UserFactory(email="hamlet@example.com")
    assert fails("presence_add_member", "hamlet@example.com", "--realm", "zulip") == (
        f"Several users have the email hamlet@example.com (user ids {first.pk}, {second.pk})."
    )
    third = UserFactory(email="HAMLET@example.com")
    assert fails("presence_add_member", "Hamlet@example.com", "--realm", "zulip") == (
        "Several users have the email Hamlet@example.com "
        f"(user ids {first.pk}, {second.pk}, {third.pk})."
    )
    assert not RealmMember.objects.exists()


# presence_api_key --------------------------------------------------------------------------


def test_api_key_prints_only_the_key_and_it_authenticates(client, make_member):
    member = make_member(user__email="hamlet@example.com")
    out, err = run("presence_api_key", "hamlet@example.com")
    assert re.fullmatch(r"[A-Za-z0-9]{32}\n", out)
    assert err == ""
    key = out.strip()
    stored = ApiKey.objects.get(member=member)
    assert (stored.key_digest, stored.prefix) == (hashlib.sha256(key.encode()).hexdigest(), key[:6])
    status, body = presence_status(client, "hamlet@example.com", key)
    assert status == 200
    assert (body["result"], body["msg"], body["presences"]) == ("success", "", {})


def test_api_key_revokes_older_keys(client, make_member):
    member = make_member(user__email="hamlet@example.com")
    _, old_key = actions.do_create_api_key(member)
    _, older_key = actions.do_create_api_key(member)
    out, err = run("presence_api_key", "HAMLET@example.com")
    assert err == "Revoked 2 older API keys of hamlet@example.com.\n"
    assert presence_status(client, "hamlet@example.com", old_key) == (401, INVALID_API_KEY)
    assert presence_status(client, "hamlet@example.com", older_key) == (401, INVALID_API_KEY)
    assert presence_status(client, "hamlet@example.com", out.strip())[0] == 200
    assert ApiKey.objects.filter(member=member, revoked_at__isnull=True).count() == 1

    _, err = run("presence_api_key", "hamlet@example.com")
    assert err == "Revoked 1 older API key of hamlet@example.com.\n"


def test_api_key_keep_existing(client, make_member):
    member = make_member(user__email="hamlet@example.com")
    _, old_key = actions.do_create_api_key(member)
    out, err = run("presence_api_key", "hamlet@example.com", "--keep-existing")
    assert err == ""
    assert presence_status(client, "hamlet@example.com", old_key)[0] == 200
    assert presence_status(client, "hamlet@example.com", out.strip())[0] == 200
    assert ApiKey.objects.filter(member=member, revoked_at__isnull=True).count() == 2


def test_api_key_for_unknown_member_fails(realm):
    UserFactory(email="outsider@example.com")
    assert fails("presence_api_key", "outsider@example.com") == (
        "No member has the email outsider@example.com."
    )
    assert fails("presence_api_key", "nobody@example.com") == (
        "No member has the email nobody@example.com."
    )
    assert not ApiKey.objects.exists()


def test_api_key_with_email_shared_across_realms(realm):
    zulip_member = MemberFactory(user__email="hamlet@example.com", realm=realm)
    MemberFactory(user__email="Hamlet@example.com", realm=RealmFactory(string_id="other"))
    assert fails("presence_api_key", "hamlet@example.com") == (
        "Several members have the email hamlet@example.com (realms 'other', 'zulip'). "
        "Pass --realm to choose one."
    )
    out, _ = run("presence_api_key", "hamlet@example.com", "--realm", "zulip")
    assert ApiKey.objects.get().member == zulip_member
    assert ApiKey.objects.get().key_digest == hashlib.sha256(out.strip().encode()).hexdigest()
    assert fails("presence_api_key", "hamlet@example.com", "--realm", "nowhere") == (
        "No member of realm 'nowhere' has the email hamlet@example.com."
    )


def test_api_key_warns_when_the_key_cannot_be_used_yet(client, make_member):
    member = make_member(user__email="hamlet@example.com")
    actions.do_deactivate_member(member)
    out, err = run("presence_api_key", "hamlet@example.com")
    assert err == "Warning: the key will be refused until this changes: Account is deactivated\n"
    assert presence_status(client, "hamlet@example.com", out.strip()) == (
        401,
        {"result": "error", "msg": "Account is deactivated", "code": "USER_DEACTIVATED"},
    )

    actions.do_reactivate_member(member)
    actions.do_set_realm_deactivated(member.realm, True)
    _, err = run("presence_api_key", "hamlet@example.com", "--keep-existing")
    assert err == (
        "Warning: the key will be refused until this changes: "
        "This organization has been deactivated\n"
    )


# presence_stats ----------------------------------------------------------------------------


def report(member, seconds_ago: int, status: str = "active") -> None:
    actions.do_update_user_presence(
        member, log_time=now_seconds() - timedelta(seconds=seconds_ago), status=status
    )


@pytest.fixture
def two_realms(make_member):
    """zulip: one member per status and one who never reported; denmark: one idle member."""
    members = {
        name: make_member(user__email=f"{name}@example.com")
        for name in ("active", "idle", "offline", "silent")
    }
    report(members["active"], 10)
    report(members["idle"], 10, "idle")
    report(members["offline"], 5000)
    denmark = MemberFactory(user__email="hamlet@dk.org", realm=RealmFactory(string_id="denmark"))
    report(denmark, 1000)
    report(denmark, 10, "idle")
    return members


def test_stats_table(two_realms):
    out, err = run("presence_stats")
    assert err == ""
    assert out == (
        "realm    members  active  idle  offline  never reported  rows  last_update_id\n"
        "denmark        1       0     1        0               0     1               2\n"
        "zulip          4       1     1        1               1     3               3\n"
    )


def test_stats_json_for_one_realm(two_realms):
    out, _ = run("presence_stats", "--realm", "zulip", "--json")
    assert json.loads(out) == [
        {
            "string_id": "zulip",
            "members": 4,
            "active": 1,
            "idle": 1,
            "offline": 1,
            "never_reported": 1,
            "rows": 3,
            "last_update_id": 3,
        }
    ]
    assert json.loads(run("presence_stats", "--json", "--realm", "denmark")[0])[0]["idle"] == 1


def test_stats_of_no_realm_and_of_an_unknown_realm(db):
    assert run("presence_stats") == (
        "realm  members  active  idle  offline  never reported  rows  last_update_id\n",
        "",
    )
    assert json.loads(run("presence_stats", "--json")[0]) == []
    assert fails("presence_stats", "--realm", "nowhere") == "No realm has the string id 'nowhere'."


def test_stats_count_rows_left_without_a_member(two_realms):
    """rows counts the realm's presence rows themselves, members their memberships."""
    offline = two_realms["offline"]
    # Only Django's delete cascade removes a membership (the app has no action for it).
    RealmMember.objects.filter(pk=offline.pk).delete()
    (zulip,) = get_realm_presence_stats(Realm.objects.get(string_id="zulip"))
    assert zulip == RealmPresenceStats(
        string_id="zulip",
        members=3,
        active=1,
        idle=1,
        offline=0,
        never_reported=1,
        rows=3,
        last_update_id=3,
    )


def test_stats_use_one_query_however_many_realms(two_realms, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert len(get_realm_presence_stats()) == 2
    for number in range(3):
        realm = RealmFactory(string_id=f"extra{number}")
        report(MemberFactory(realm=realm), 10)
    with django_assert_num_queries(1):
        stats = get_realm_presence_stats()
    assert [entry.string_id for entry in stats] == [
        "denmark",
        "extra0",
        "extra1",
        "extra2",
        "zulip",
    ]
    assert [entry.active for entry in stats] == [0, 1, 1, 1, 1]


# presence_purge ----------------------------------------------------------------------------

DAY = 24 * 3600


@pytest.fixture
def aged_rows(make_member):
    """Presence rows of every age around a 30-day cutoff; the stale ones are named old*."""
    members = {
        name: make_member(user__email=f"{name}@example.com")
        for name in ("recent", "recent_idle", "connected_lately", "old", "old_idle", "no_times")
    }
    report(members["recent"], DAY)
    report(members["recent_idle"], 2 * DAY, "idle")
    # Active 40 days ago, but connected 10 days ago: not stale.
    report(members["connected_lately"], 40 * DAY)
    report(members["connected_lately"], 10 * DAY, "idle")
    report(members["old"], 40 * DAY)
    report(members["old_idle"], 31 * DAY, "idle")
    report(members["no_times"], DAY)
    # No action leaves a row without timestamps; rows imported from elsewhere may have none.
    UserPresence.objects.filter(user_id=members["no_times"].user_id).update(
        last_active_time=None, last_connected_time=None
    )
    other = MemberFactory(user__email="old@other.org", realm=RealmFactory(string_id="other"))
    report(other, 50 * DAY)
    return members


def emails_with_rows() -> list[str]:
    return sorted(UserPresence.objects.values_list("user__email", flat=True))


def purge(days: int, *args: str) -> tuple[str, str, str]:
    """Run presence_purge --older-than-days ``days`` at a frozen now; returns stdout, stderr
    and the cutoff as the command prints it."""
    now = now_seconds()
    with frozen_now(now):
        out, err = run("presence_purge", "--older-than-days", str(days), *args)
    return out, err, (now - timedelta(days=days)).isoformat(timespec="seconds")


ALL_ROWS = [
    "connected_lately@example.com",
    "no_times@example.com",
    "old@example.com",
    "old@other.org",
    "old_idle@example.com",
    "recent@example.com",
    "recent_idle@example.com",
]
FRESH_ROWS = ["connected_lately@example.com", "recent@example.com", "recent_idle@example.com"]


def test_purge_dry_run_counts_and_deletes_nothing(aged_rows):
    out, err, cutoff = purge(30, "--dry-run")
    assert out == f"Would delete 4 presence rows (all realms) with no report since {cutoff}.\n"
    assert err == ""
    assert emails_with_rows() == ALL_ROWS


def test_purge_deletes_stale_rows_in_batches(aged_rows):
    sequences = dict(PresenceSequence.objects.values_list("realm_id", "last_update_id"))
    out, err, cutoff = purge(30, "--batch-size", "3")
    assert out == f"Deleted 4 presence rows (all realms) with no report since {cutoff}.\n"
    assert err == "deleted 3/4\ndeleted 4/4\n"
    assert emails_with_rows() == FRESH_ROWS
    # Deleting is not a presence write: no realm's sequence moves.
    assert dict(PresenceSequence.objects.values_list("realm_id", "last_update_id")) == sequences
    # Memberships stay: only presence rows go.
    assert RealmMember.objects.count() == 7


def test_purge_one_realm(aged_rows):
    out, err, cutoff = purge(30, "--realm", "zulip")
    assert out == f"Deleted 3 presence rows (realm 'zulip') with no report since {cutoff}.\n"
    assert err == "deleted 3/3\n"
    assert emails_with_rows() == [*FRESH_ROWS[:1], "old@other.org", *FRESH_ROWS[1:]]


def test_purge_of_a_single_row_then_of_none(aged_rows):
    # Only the row without timestamps is older than 60 days.
    out, err, cutoff = purge(60)
    assert out == f"Deleted 1 presence row (all realms) with no report since {cutoff}.\n"
    assert err == "deleted 1/1\n"
    out, err, cutoff = purge(60)
    assert out == f"Deleted 0 presence rows (all realms) with no report since {cutoff}.\n"
    assert err == ""


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_purge_progress_is_not_coloured_as_an_error_on_a_terminal(aged_rows):
    """On a terminal Django colours stderr as errors; the progress lines stay plain."""
    stderr = Terminal()
    command = PurgeCommand(stdout=StringIO(), stderr=stderr, force_color=True)
    with frozen_now(now_seconds()):
        call_command(command, "--older-than-days", "30")
    assert stderr.getvalue() == "deleted 4/4\n"


def test_purge_warns_below_the_history_window(aged_rows, settings):
    settings.PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS = 35
    _, err, _ = purge(30, "--dry-run")
    assert err == (
        "Warning: 30 days is less than PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS (35): users seen "
        "within that window disappear from full presence fetches.\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error: the following arguments are required: --older-than-days"),
        (
            ("--older-than-days", "0"),
            "Error: argument --older-than-days: must be at least 1, not 0",
        ),
        (
            ("--older-than-days", "soon"),
            "Error: argument --older-than-days: invalid integer: 'soon'",
        ),
        (
            ("--older-than-days", "30", "--batch-size", "-5"),
            "Error: argument --batch-size: must be at least 1, not -5",
        ),
        (
            ("--older-than-days", "30", "--realm", "nowhere"),
            "No realm has the string id 'nowhere'.",
        ),
    ],
)
def test_purge_refuses_bad_arguments(aged_rows, args, message):
    assert fails("presence_purge", *args) == message
    assert emails_with_rows() == ALL_ROWS


def test_purge_action_reports_progress_and_validates_the_batch_size(aged_rows):
    older_than = now_seconds() - timedelta(days=30)
    with pytest.raises(ValueError, match="^batch_size must be at least 1, not 0$"):
        actions.do_purge_presence_rows(None, older_than, batch_size=0)
    progress: list[int] = []
    zulip = Realm.objects.get(string_id="zulip")
    assert (
        actions.do_purge_presence_rows(zulip, older_than, batch_size=1, on_progress=progress.append)
        == 3
    )
    assert progress == [1, 2, 3]
    assert actions.do_purge_presence_rows(zulip, older_than, on_progress=progress.append) == 0
    assert progress == [1, 2, 3]


def test_a_purged_user_who_returns_reaches_incremental_readers(aged_rows, api_client_for):
    viewer = api_client_for(aged_rows["recent"])
    old = aged_rows["old"]
    baseline = success(post_presence(viewer, status="active", last_update_id=-1))
    assert str(old.user_id) not in baseline["presences"]
    last_id = baseline["presence_last_update_id"]

    purge(30)
    # The purge sends nothing: an incremental fetch has nothing new.
    body = success(post_presence(viewer, status="active", last_update_id=last_id))
    assert (body["presences"], body["presence_last_update_id"]) == ({}, last_id)

    # The user reports again: a new row, with an id above every id readers hold.
    success(post_presence(api_client_for(old), status="active"))
    body = success(post_presence(viewer, status="active", last_update_id=last_id))
    assert list(body["presences"]) == [str(old.user_id)]
    assert body["presence_last_update_id"] == last_id + 1


# A custom user model -----------------------------------------------------------------------

CUSTOM_USER_MODELS = """
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class AccountManager(BaseUserManager):
    def create_user(self, handle, contact=None, password=None):
        # Unlike Django's manager, this one never calls set_password.
        account = self.model(handle=handle, contact=contact)
        account.save(using=self._db)
        return account


class Account(AbstractBaseUser):
    handle = models.CharField(max_length=150, unique=True)
    contact = models.EmailField()
    USERNAME_FIELD = "handle"
    EMAIL_FIELD = "contact"
    objects = AccountManager()
"""

CUSTOM_USER_SCRIPT = """
import json
import sys
from io import StringIO

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="x",
    USE_TZ=True,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "rest_framework",
        "django_presence",
        "accounts",
    ],
    AUTH_USER_MODEL="accounts.Account",
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
)
django.setup()

from django.core.management import call_command

from django_presence.authentication import authenticate_api_key
from accounts.models import Account

call_command("makemigrations", "accounts", verbosity=0)
call_command("migrate", verbosity=0)
Account.objects.create_user("ophelia", "Ophelia@Example.com")


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


result = {
    "created": run(
        "presence_add_member", "hamlet@example.com", "--realm", "dk", "--create-realm",
        "--create-user",
    ),
    "existing": run("presence_add_member", "ophelia@example.com", "--realm", "dk"),
}
key = run("presence_api_key", "OPHELIA@example.com").strip()
hamlet = Account.objects.get(contact="hamlet@example.com")
result["hamlet"] = [hamlet.handle, hamlet.has_usable_password()]
result["authenticated"] = authenticate_api_key("ophelia@example.com", key).user.handle
print(json.dumps(result))
"""


@pytest.mark.django_db(databases=[])
def test_commands_work_with_a_custom_user_model(tmp_path: Path):
    """A user model whose USERNAME_FIELD and EMAIL_FIELD are neither username nor email, run in
    a separate process since AUTH_USER_MODEL cannot change in this one."""
    (tmp_path / "accounts").mkdir()
    (tmp_path / "accounts" / "__init__.py").write_text("")
    (tmp_path / "accounts" / "models.py").write_text(textwrap.dedent(CUSTOM_USER_MODELS))
    (tmp_path / "script.py").write_text(CUSTOM_USER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "db.sqlite3")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "created": "Created realm 'dk' named 'dk'.\n"
        "Created user hamlet@example.com (id 2) with no usable password.\n"
        "Added hamlet@example.com to realm 'dk' (role: member, bot: no).\n",
        "existing": "Added Ophelia@Example.com to realm 'dk' (role: member, bot: no).\n",
        "hamlet": ["hamlet@example.com", False],
        "authenticated": "ophelia",
    }


def test_create_user_needs_a_manager_with_create_user(realm):
    with mock.patch.object(UserManager, "create_user", None):
        message = fails(
            "presence_add_member", "ophelia@example.com", "--realm", "zulip", "--create-user"
        )
    assert message == "Cannot create a user: the manager of auth.User has no create_user()."
    assert not get_user_model().objects.exists()


# presence_timers --------------------------------------------------------------------------


@pytest.mark.django_db
def test_presence_timers_once_announces_what_is_due(
    make_member, django_capture_on_commit_callbacks
):
    member = make_member()
    long_ago = timezone.now() - timedelta(hours=1)
    actions.do_update_user_presence(member, log_time=long_ago, status="active")
    out = StringIO()
    with (
        recording(presence_status_changed) as sent,
        django_capture_on_commit_callbacks(execute=True),
    ):
        call_command("presence_timers", "--once", stdout=out)
    assert out.getvalue() == "presence status transitions: 1\nuser status ends: 0\n"
    assert [(s["old_status"], s["new_status"], s["late"]) for s in sent] == [
        ("active", "offline", True)
    ]


def test_presence_timers_runs_until_stopped(monkeypatch):
    """The worker sweeps until a signal stops it."""
    sweeps = []

    class OneSweep(timers.Sweeper):
        def __init__(self) -> None:
            super().__init__(sweep=lambda: sweeps.append(1) or self.stop())

    monkeypatch.setattr(timers, "Sweeper", OneSweep)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    out = StringIO()
    call_command("presence_timers", stdout=out)
    assert sweeps == [1]
    assert out.getvalue().splitlines() == [
        "Sweeping for due presence work; SIGTERM or ^C stops.",
        "Stopped.",
    ]
