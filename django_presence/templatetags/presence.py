"""``{% load presence %}``: a presence badge for server-rendered pages of the host site.

``{% presence_dot user %}`` renders an empty, accessible span whose class and title give the
user's presence now::

    <span class="presence-dot presence-dot--active" data-user-id="10" role="img"
          aria-label="active now" title="active now"></span>

The status follows status.presence_status (presence-dot.js mirrors it). Each call makes one
query, for the user's presence row and its realm, unless the row was loaded with the user: in a
loop, load the users with ``select_related("presence__realm")`` and the tag makes none. The badge
is not access-limited: the host decides whose presence a page shows."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext

from django_presence.models import UserPresence
from django_presence.status import ACTIVE, IDLE, OFFLINE, presence_status

register = template.Library()

# An offline user last seen within this many minutes is "last seen N minutes ago".
LAST_SEEN_MINUTES = 60


def _loaded_presence(user: object) -> tuple[bool, UserPresence | None]:
    """Whether the user's presence row was loaded with the user, and the row (None when the
    user has none)."""
    descriptor = getattr(type(user), "presence", None)
    if descriptor is None or not descriptor.is_cached(user):
        return False, None
    presence: UserPresence | None = user._state.fields_cache["presence"]  # type: ignore[attr-defined]
    return True, presence


def _presence(user: object) -> UserPresence | None:
    loaded, presence = _loaded_presence(user)
    if loaded:
        return presence
    user_pk = getattr(user, "pk", None)
    if user_pk is None:
        return None
    return UserPresence.objects.select_related("realm").filter(user_id=user_pk).first()


def dot_status(presence: UserPresence | None, now: datetime) -> tuple[str, str]:
    """The badge's status (its class suffix) and title for a presence row, or for none."""
    if presence is None or presence.realm.presence_disabled:
        return OFFLINE, gettext("offline")
    status = presence_status(presence.last_active_time, presence.last_connected_time, now)
    if status == ACTIVE:
        return status, gettext("active now")
    if status == IDLE:
        return status, gettext("idle")
    seen = [
        moment for moment in (presence.last_active_time, presence.last_connected_time) if moment
    ]
    minutes = int((now - max(seen)).total_seconds() // 60) if seen else LAST_SEEN_MINUTES
    if minutes >= LAST_SEEN_MINUTES:
        return status, gettext("offline")
    minutes = max(minutes, 1)
    title = ngettext(
        "last seen %(minutes)d minute ago", "last seen %(minutes)d minutes ago", minutes
    ) % {"minutes": minutes}
    return status, title


@register.simple_tag
def presence_dot(user: object) -> SafeString:
    """The presence badge of ``user`` (a user of AUTH_USER_MODEL); "offline" for None, for a
    user who never reported and in a realm with presence disabled. The span names the user in
    ``data-user-id``, so that presence-dot.js, when the page includes it, keeps it current."""
    status, title = dot_status(_presence(user), timezone.now())
    user_pk = getattr(user, "pk", None)
    return format_html(
        '<span class="presence-dot presence-dot--{}"{} role="img" aria-label="{}" title="{}">'
        "</span>",
        status,
        format_html(' data-user-id="{}"', user_pk) if user_pk is not None else "",
        title,
        title,
    )
