"""GET directory/members: the team directory listing, an extension outside Zulip's API.

The same authentication, envelope, rate limit and parameter conventions as the Zulip endpoints
(views.PresenceAPIView); see docs/directory.md. Two queries whatever the realm's size: the
count, and one page of members joined to their users and presence rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from .exceptions import ZulipError
from .filters import STATUS_NEVER, DirectoryFilterSet
from .formatting import datetime_to_timestamp
from .models import RealmMember, UserPresence
from .permissions import get_request_member
from .queries import directory_members, presence_status
from .serializers import JsonIntegerField, RawStringField, ZulipParamsSerializer
from .views import PresenceAPIView

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class DirectoryParams(ZulipParamsSerializer):
    """The pagination parameters; the filters are declared so they are not reported as
    ignored, and validated by DirectoryFilterSet."""

    page = JsonIntegerField(required=False, default=1)
    page_size = JsonIntegerField(required=False, default=DEFAULT_PAGE_SIZE)
    role = RawStringField(required=False)
    search = RawStringField(required=False)
    status = RawStringField(required=False)

    def validate_page(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError("page must be at least 1")
        return value

    def validate_page_size(self, value: int) -> int:
        if not 1 <= value <= MAX_PAGE_SIZE:
            raise serializers.ValidationError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        return value


def _full_name(member: RealmMember) -> str:
    """get_full_name() where the user model has it and it is not blank, else the email."""
    get_full_name = getattr(member.user, "get_full_name", None)
    full_name = get_full_name().strip() if callable(get_full_name) else ""
    return full_name or member.email


def _timestamp(value: datetime | None) -> int | None:
    return None if value is None else datetime_to_timestamp(value)


def directory_entry(member: RealmMember, *, now: datetime, presence_hidden: bool) -> dict[str, Any]:
    """One member of the listing. A member with no presence row (or in a realm with presence
    disabled) is "never", with null timestamps."""
    presence: UserPresence | None = getattr(member.user, "presence", None)
    if presence_hidden or presence is None:
        status, active_timestamp, idle_timestamp = STATUS_NEVER, None, None
    else:
        status = presence_status(presence.last_active_time, presence.last_connected_time, now)
        active_timestamp = _timestamp(presence.last_active_time)
        idle_timestamp = _timestamp(presence.last_connected_time)
    return {
        "user_id": member.user_id,
        "email": member.email,
        "full_name": _full_name(member),
        "role": member.role,
        "status": status,
        "active_timestamp": active_timestamp,
        "idle_timestamp": idle_timestamp,
    }


class DirectoryMembersView(PresenceAPIView):
    """GET directory/members: the viewer's realm's active human members, filtered and paged."""

    # Left out of the OpenAPI schema, which describes the Zulip API the app implements.
    schema = None

    def get(self, request: Request) -> Response:
        viewer = get_request_member(request)
        params = self.parse_params(request, DirectoryParams)
        realm = viewer.realm
        now = timezone.now()
        filterset = DirectoryFilterSet(
            request.query_params,
            queryset=directory_members(realm, viewer),
            now=now,
            presence_hidden=realm.presence_disabled,
        )
        if not filterset.is_valid():
            raise _first_filter_error(filterset)
        members = filterset.qs
        page, page_size = params["page"], params["page_size"]
        start = (page - 1) * page_size
        return self.success(
            {
                "count": members.count(),
                "page": page,
                "page_size": page_size,
                "members": [
                    directory_entry(member, now=now, presence_hidden=realm.presence_disabled)
                    for member in members[start : start + page_size]
                ],
            }
        )


def _first_filter_error(filterset: DirectoryFilterSet) -> ZulipError:
    """The error of the first invalid filter, in declaration order."""
    errors = filterset.errors
    name = next(name for name in filterset.filters if name in errors)
    return ZulipError(f"Invalid {name}: {errors[name][0]}")
