"""GET directory/members: the team directory listing, an extension outside Zulip's API.

The same authentication, envelope, rate limit and parameter conventions as the Zulip endpoints
(views.PresenceAPIView); see docs/directory.md. Two queries whatever the realm's size: the
count, and one page of members joined to their users and presence rows. The response carries
the server's clock and offline threshold, for clients that recompute statuses as time passes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from .conf import presence_settings
from .filters import STATUS_NEVER, DirectoryFilterSet
from .formatting import datetime_to_timestamp
from .models import Realm, RealmMember, UserPresence, UserStatus
from .permissions import get_request_member
from .queries import directory_members, loaded_update_id, page_of, stored_status_of
from .serializers import JsonIntegerField, JsonIntegerListField, ZulipParamsSerializer
from .status import presence_status
from .user_status import StoredStatus, format_user_status
from .views import PresenceAPIView

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# One page can hold every member asked for.
MAX_USER_IDS = MAX_PAGE_SIZE
# The integers SQL compares: SQLite refuses larger ones, and no user has such an id.
SQL_INTEGERS = range(-(2**63), 2**63)


class DirectoryParams(ZulipParamsSerializer):
    """The pagination parameters and ``user_ids``. The filters are DirectoryFilterSet's, which
    validates them; they are known parameters here, never reported as ignored."""

    silently_accepted = ZulipParamsSerializer.silently_accepted | frozenset(
        DirectoryFilterSet.base_filters
    )

    page = JsonIntegerField(required=False, default=1)
    page_size = JsonIntegerField(required=False, default=DEFAULT_PAGE_SIZE)
    user_ids = JsonIntegerListField(required=False)

    def validate_page(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError("page must be at least 1")
        return value

    def validate_page_size(self, value: int) -> int:
        if not 1 <= value <= MAX_PAGE_SIZE:
            raise serializers.ValidationError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        return value

    def validate_user_ids(self, value: list[int]) -> list[int]:
        if len(value) > MAX_USER_IDS:
            raise serializers.ValidationError(
                f"Invalid user_ids: at most {MAX_USER_IDS} ids are allowed"
            )
        # Ids the listing leaves out, or that no user has, simply match no one: those SQL
        # cannot compare (SQLite refuses them) are dropped here.
        return [user_id for user_id in value if user_id in SQL_INTEGERS]


def _full_name(member: RealmMember) -> str:
    """get_full_name() where the user model has it and it is not blank, else the email."""
    get_full_name = getattr(member.user, "get_full_name", None)
    full_name = get_full_name().strip() if callable(get_full_name) else ""
    return full_name or member.email


def _timestamp(value: datetime | None) -> int | None:
    return None if value is None else datetime_to_timestamp(value)


def directory_entry(
    member: RealmMember, *, now: datetime, presence_hidden: bool, viewer: RealmMember | None = None
) -> dict[str, Any]:
    """One member of the listing. A member with no presence row (or in a realm with presence
    disabled) is "never", with null timestamps. ``user_status`` is the member's status as GET
    users/<id>/status shows it to ``viewer`` (the end time to its owner only)."""
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
        "user_status": format_user_status(
            _loaded_status(member),
            presence_enabled=member.presence_enabled,
            now=now,
            for_owner=viewer is not None and viewer.user_id == member.user_id,
        ),
    }


def _loaded_status(member: RealmMember) -> StoredStatus | None:
    """The member's status, loaded with the listing (directory_members joins it in)."""
    row: UserStatus | None = getattr(member.user, "presence_user_status", None)
    return None if row is None else stored_status_of(row)


class DirectoryMembersView(PresenceAPIView):
    """GET directory/members: the viewer's realm's active human members, filtered and paged."""

    def get(self, request: Request) -> Response:
        viewer = get_request_member(request)
        params = self.parse_params(request, DirectoryParams)
        realm = viewer.realm
        now = timezone.now()
        members = DirectoryFilterSet.apply(
            request.query_params,
            directory_members(realm, viewer, user_ids=params.get("user_ids")),
            now=now,
            presence_hidden=realm.presence_disabled,
        )
        page = page_of(members, params["page"], params["page_size"])
        return self.success(
            params,
            {
                "count": page.count,
                "page": params["page"],
                "page_size": params["page_size"],
                # The clock and threshold the statuses were computed with.
                "server_timestamp": now.timestamp(),
                "server_presence_offline_threshold_seconds": (
                    presence_settings.OFFLINE_THRESHOLD_SECS
                ),
                # Read at authentication, before the members: a presence written since has a
                # larger id, so POST users/me/presence with this last_update_id returns it.
                "presence_last_update_id": _loaded_update_id_or_zero(realm),
                "members": [
                    directory_entry(
                        member, now=now, presence_hidden=realm.presence_disabled, viewer=viewer
                    )
                    for member in page.members
                ],
            },
        )


def _loaded_update_id_or_zero(realm: Realm) -> int:
    """The realm's update id as authentication loaded it; 0 (every update id is larger) for a
    realm with no sequence row yet, which has had no presence write."""
    update_id = loaded_update_id(realm)
    return 0 if update_id is None else update_id
