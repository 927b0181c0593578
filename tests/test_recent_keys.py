"""django_presence.recent_keys: the API keys event requests authenticated with lately, and
every way they are forgotten."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.utils import timezone

from django_presence import actions, recent_keys
from django_presence.authentication import authenticate_api_key
from django_presence.exceptions import ZulipAuthenticationFailed
from django_presence.models import ApiKey, RealmMember
from django_presence.recent_keys import RecentApiKeys, recent_api_keys

from .api_utils import assert_error, success
from .events_utils import register_queue

pytestmark = pytest.mark.django_db


class Clock:
    """time.monotonic for recent_keys, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(recent_keys.time, "monotonic", clock)
    return clock


@pytest.fixture
def keyed(hamlet) -> tuple[RealmMember, ApiKey, str]:
    api_key, raw_key = actions.do_create_api_key(hamlet)
    return hamlet, api_key, raw_key


def _authenticate(member: RealmMember, raw_key: str) -> RealmMember:
    return authenticate_api_key(member.email, raw_key, remembered=True)


def test_a_remembered_key_needs_no_query(keyed, django_assert_num_queries):
    member, _api_key, raw_key = keyed
    with django_assert_num_queries(1):
        first = _authenticate(member, raw_key)
    with django_assert_num_queries(0):
        again = _authenticate(member, raw_key)
    assert again is first
    assert first.pk == member.pk
    # Only the event endpoints ask for remembered keys: the others query every time.
    with django_assert_num_queries(1):
        authenticate_api_key(member.email, raw_key)


def test_a_remembered_key_still_checks_the_email_and_the_key(keyed):
    member, _api_key, raw_key = keyed
    _authenticate(member, raw_key)
    with pytest.raises(ZulipAuthenticationFailed, match="Invalid API key"):
        authenticate_api_key("someone@else.example", raw_key, remembered=True)
    with pytest.raises(ZulipAuthenticationFailed, match="Invalid API key"):
        authenticate_api_key(member.email, "x" * 32, remembered=True)


def test_a_key_is_forgotten_when_its_time_is_up(keyed, clock, settings, django_assert_num_queries):
    settings.PRESENCE_EVENTS_AUTH_CACHE_SECS = 10
    member, _api_key, raw_key = keyed
    _authenticate(member, raw_key)
    # A change this process does not hear of (another process's, or an update by the host).
    ApiKey.objects.filter(member=member).update(revoked_at=timezone.now())
    clock.now += 9.9
    _authenticate(member, raw_key)
    clock.now += 0.1
    with pytest.raises(ZulipAuthenticationFailed, match="Invalid API key"):
        _authenticate(member, raw_key)
    assert len(recent_api_keys) == 0


def test_zero_seconds_remembers_nothing(keyed, settings, django_assert_num_queries):
    settings.PRESENCE_EVENTS_AUTH_CACHE_SECS = 0
    member, _api_key, raw_key = keyed
    for _ in range(2):
        with django_assert_num_queries(1):
            _authenticate(member, raw_key)
    assert len(recent_api_keys) == 0


def _revoke_one(member: RealmMember, api_key: ApiKey) -> None:
    actions.do_revoke_api_key(api_key)


def _revoke_all(member: RealmMember, api_key: ApiKey) -> None:
    actions.do_revoke_api_keys(member)


def _deactivate_member(member: RealmMember, api_key: ApiKey) -> None:
    actions.do_deactivate_member(member)


def _deactivate_user(member: RealmMember, api_key: ApiKey) -> None:
    user = type(member.user).objects.get(pk=member.user_id)
    user.is_active = False
    user.save()


def _deactivate_realm(member: RealmMember, api_key: ApiKey) -> None:
    actions.do_set_realm_deactivated(member.realm, True)


def _delete_key(member: RealmMember, api_key: ApiKey) -> None:
    ApiKey.objects.get(pk=api_key.pk).delete()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_revoke_one, "Invalid API key"),
        (_revoke_all, "Invalid API key"),
        (_delete_key, "Invalid API key"),
        (_deactivate_member, "Account is deactivated"),
        (_deactivate_user, "Account is deactivated"),
        (_deactivate_realm, "This organization has been deactivated"),
    ],
)
def test_a_change_in_this_process_is_seen_once_committed(
    keyed,
    change: Callable[[RealmMember, ApiKey], None],
    message: str,
    django_capture_on_commit_callbacks,
):
    member, api_key, raw_key = keyed
    _authenticate(member, raw_key)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        change(member, api_key)
        # Until the change commits, a poll may still take the key as it was.
        _authenticate(member, raw_key)
    assert callbacks
    with pytest.raises(ZulipAuthenticationFailed, match=message):
        _authenticate(member, raw_key)


def test_saving_what_authentication_does_not_read_of_a_user_forgets_nothing(
    keyed, django_capture_on_commit_callbacks
):
    member, _api_key, raw_key = keyed
    first = _authenticate(member, raw_key)
    user = type(member.user).objects.get(pk=member.user_id)
    with django_capture_on_commit_callbacks(execute=True):
        user.last_login = timezone.now()
        user.save(update_fields=["last_login"])  # what Django's login does
    assert _authenticate(member, raw_key) is first
    with django_capture_on_commit_callbacks(execute=True):
        user.save(update_fields=["last_login", "is_active"])
    assert _authenticate(member, raw_key) is not first


def test_a_lost_event_is_seen_once_committed(keyed, django_capture_on_commit_callbacks):
    member, _api_key, raw_key = keyed
    before = _authenticate(member, raw_key).realm.presence_sequence.events_lost
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_record_lost_presence_event(member.realm)
    after = _authenticate(member, raw_key).realm.presence_sequence.events_lost
    assert after == before + 1


def test_the_events_endpoint_remembers_keys_and_refuses_a_revoked_one(
    hamlet, api_client_for, django_capture_on_commit_callbacks
):
    client = api_client_for(hamlet)
    queue_id = register_queue(client)
    params = {"queue_id": queue_id, "last_event_id": -1, "dont_block": "true"}
    success(client.get("/api/v1/events", params))
    assert len(recent_api_keys) == 1
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_revoke_api_keys(hamlet)
    response = client.get("/api/v1/events", params)
    assert_error(response, "Invalid API key", status=401, code="UNAUTHORIZED")


def test_the_oldest_keys_go_when_full(clock, settings):
    settings.PRESENCE_EVENTS_AUTH_CACHE_SECS = 10
    keys = RecentApiKeys(max_entries=4)
    marker = ApiKey()
    for number in range(4):
        keys.remember(f"digest-{number}", marker)
        clock.now += 1
    # Full, none expired: the older half goes.
    keys.remember("digest-4", marker)
    assert [keys.get(f"digest-{number}") for number in range(5)] == [None, None] + [marker] * 3
    # Full again with expired entries: those go first.
    keys.remember("digest-5", marker)
    clock.now += 9.5
    keys.remember("digest-6", marker)
    assert keys.get("digest-2") is None
    assert keys.get("digest-6") is marker
