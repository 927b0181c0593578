"""permissions.member_allowed_in: the API's admission rule, for a host's own pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from django_presence import actions
from django_presence.permissions import member_allowed_in

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def test_an_active_member_is_let_in(hamlet):
    assert member_allowed_in(hamlet.user) == hamlet


def test_a_deactivated_member_is_not(hamlet):
    actions.do_deactivate_member(hamlet)
    assert member_allowed_in(hamlet.user) is None


def test_a_member_of_a_deactivated_realm_is_not(hamlet):
    actions.do_set_realm_deactivated(hamlet.realm, True)
    assert member_allowed_in(hamlet.user) is None


def test_anonymous_users_and_users_of_no_realm_are_not():
    assert member_allowed_in(AnonymousUser()) is None
    assert member_allowed_in(UserFactory()) is None
