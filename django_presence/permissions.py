"""DRF permission classes of the presence API."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .authentication import check_member_can_authenticate
from .exceptions import ZulipError
from .models import RealmMember


def get_request_member(request: Request) -> RealmMember:
    """The caller's membership: set by API-key authentication, looked up for sessions."""
    if isinstance(request.auth, RealmMember):
        return request.auth
    user_pk: Any = request.user.pk
    try:
        # With the presence row and the realm's sequence, as authenticate_api_key does.
        members = RealmMember.objects.select_related("realm__presence_sequence", "user__presence")
        member: RealmMember = members.get(user_id=user_pk)
    except ObjectDoesNotExist:
        raise ZulipError(
            "This user is not a member of any organization", code="UNAUTHORIZED", http_status=403
        ) from None
    request.auth = member
    return member


def member_allowed_in(user: Any) -> RealmMember | None:
    """The membership through which ``user`` may use the presence API, or None: anonymous
    users, users of no realm, deactivated members and members of deactivated realms get None.
    The rule the API applies, for a host's own pages (the example project's index and
    directory)."""
    if not (user and user.is_authenticated):
        return None
    member = RealmMember.objects.select_related("realm", "user").filter(user_id=user.pk).first()
    if member is None:
        return None
    try:
        check_member_can_authenticate(member)
    except AuthenticationFailed:
        return None
    return member


class IsActiveRealmMember(BasePermission):
    """An authenticated user with an active membership in an active realm."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        check_member_can_authenticate(get_request_member(request))
        return True
