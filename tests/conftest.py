from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from django_presence import actions
from django_presence.models import RealmMember
from django_presence.recent_keys import recent_api_keys
from loopback.auth import basic_auth

from .example_postgres import example_pg_database  # noqa: F401 - a fixture for every test
from .factories import MemberFactory, RealmFactory


class ZulipClient(APIClient):
    """A test client authenticated as one member with Zulip-style Basic auth."""

    member: RealmMember
    api_key: str


@pytest.fixture
def realm(db):
    return RealmFactory(string_id="zulip", name="Zulip Dev")


@pytest.fixture
def hamlet(make_member) -> RealmMember:
    return make_member(user__username="hamlet", user__email="hamlet@zulip.com")


@pytest.fixture
def othello(make_member) -> RealmMember:
    return make_member(user__username="othello", user__email="othello@zulip.com")


@pytest.fixture
def make_member(db, realm) -> Callable[..., RealmMember]:
    def make(**kwargs: Any) -> RealmMember:
        kwargs.setdefault("realm", realm)
        return MemberFactory(**kwargs)

    return make


@pytest.fixture
def api_client_for() -> Callable[[RealmMember], ZulipClient]:
    def make(member: RealmMember) -> ZulipClient:
        _key, raw_key = actions.do_create_api_key(member)
        client = ZulipClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth(member.email, raw_key))
        client.member = member
        client.api_key = raw_key
        return client

    return make


@pytest.fixture
def rate_limited(settings):
    """PRESENCE_API_RATE of 2 requests a minute, on a fixed clock: every request falls in the
    same window, so the wait is exactly 60 s."""
    settings.PRESENCE_API_RATE = "2/min"
    cache.clear()
    with mock.patch("rest_framework.throttling.SimpleRateThrottle.timer", return_value=1e9):
        yield
    cache.clear()


@pytest.fixture(autouse=True)
def _forget_recent_api_keys():
    """Each test's database is rolled back: the keys a test's polls remembered go with it."""
    yield
    recent_api_keys.forget_all()
