"""The example project's pages: the index (what the site offers, and for a signed-in realm member
the realm's presence as the app's query layer returns it) and the team directory."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from django_presence.models import RealmMember
from django_presence.permissions import member_allowed_in
from django_presence.queries import get_presence_dict_by_realm


def index(request: HttpRequest) -> HttpResponse:
    # The app's own rule: deactivated members and members of deactivated realms see no more
    # here than the API shows them.
    member = member_allowed_in(request.user)
    context: dict[str, Any] = {
        "member": member,
        "rows": _presence_rows(member) if member is not None else [],
    }
    return render(request, "demo/index.html", context)


def _presence_rows(viewer: RealmMember) -> list[dict[str, Any]]:
    """One row per user the viewer can see: the user (with the presence row the badge template
    tag reads, so it makes no query), and seconds since last active and last connected."""
    presences, _update_id = get_presence_dict_by_realm(viewer.realm, viewer, slim_presence=True)
    users = {
        str(member.user_id): member.user
        for member in RealmMember.objects.filter(realm=viewer.realm).select_related(
            "user__presence__realm", "user__presence_user_status"
        )
    }
    now = int(timezone.now().timestamp())
    return [
        {
            "user_id": user_id,
            "user": users.get(user_id),
            "active_ago": now - entry["active_timestamp"],
            "connected_ago": now - entry["idle_timestamp"],
        }
        for user_id, entry in sorted(presences.items(), key=lambda item: int(item[0]))
    ]


@login_required
def directory(request: HttpRequest) -> HttpResponse:
    """The team directory: a page that reads GET directory/members, reports the viewer's own
    presence and follows presence events, all from the browser with the session. Refused, as
    the API refuses them, to users the app does not let in."""
    if member_allowed_in(request.user) is None:
        return render(request, "demo/not_allowed.html", status=403)
    return render(request, "demo/directory.html")
