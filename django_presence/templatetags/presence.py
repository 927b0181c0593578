"""``{% load presence %}``: a presence badge for server-rendered pages of the host site.

``{% presence_dot user %}`` renders an empty, accessible span whose class and title give the
user's presence now::

    <span class="presence-dot presence-dot--active" data-user-id="10" role="img"
          aria-label="active now" title="active now"></span>

followed, when the user has a status, by ``<span class="presence-user-status">🚗 on
vacation</span>`` (with "(until ...)" when the page's request is the user's own).

The status follows status.presence_status (presence-dot.js mirrors it). Each call makes one
query, for the user's presence row, its realm and the user's status, unless they were loaded
with the user: in a loop, load the users with ``select_related("presence__realm",
"presence_user_status")`` and the tag makes none. The badge is not access-limited: the host
decides whose presence a page shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timezone import localtime
from django.utils.translation import gettext, ngettext

from django_presence.emoji import unicode_character
from django_presence.models import UserPresence, UserStatus
from django_presence.queries import stored_status_of
from django_presence.status import ACTIVE, IDLE, OFFLINE, presence_status
from django_presence.user_status import UNICODE_EMOJI, StoredStatus

register = template.Library()

# An offline user is "last seen N minutes ago" under an hour, "N hours ago" under a day, and
# "N days ago" after that.
MINUTES_PER_HOUR = 60
HOURS_PER_DAY = 24


def _loaded(user: object, relation: str) -> tuple[bool, Any]:
    """Whether the user's row of a one-to-one ``relation`` was loaded with the user, and the
    row (None when the user has none)."""
    descriptor = getattr(type(user), relation, None)
    if descriptor is None or not descriptor.is_cached(user):
        return False, None
    return True, user._state.fields_cache[relation]  # type: ignore[attr-defined]


def _presence_and_status(user: object) -> tuple[UserPresence | None, UserStatus | None]:
    """The user's presence row (with its realm) and status row, as loaded with the user, else
    read together in one query."""
    presence_loaded, presence = _loaded(user, "presence")
    status_loaded, status = _loaded(user, "presence_user_status")
    if presence_loaded and status_loaded:
        return presence, status
    user_pk = getattr(user, "pk", None)
    if user_pk is None:
        return None, None
    fresh = (
        get_user_model()
        .objects.select_related("presence__realm", "presence_user_status")
        .filter(pk=user_pk)
        .first()
    )
    if fresh is None:
        return None, None
    return _loaded(fresh, "presence")[1], _loaded(fresh, "presence_user_status")[1]


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
    if not seen:
        return status, gettext("offline")
    return status, last_seen(int((now - max(seen)).total_seconds() // 60))


def last_seen(minutes: int) -> str:
    """ "last seen N minutes ago" (at least 1), "N hours ago" from an hour, "N days ago" from a
    day, each rounded down; presence-dot.js's lastSeen says the same."""
    if minutes < MINUTES_PER_HOUR:
        minutes = max(minutes, 1)
        return ngettext(
            "last seen %(count)d minute ago", "last seen %(count)d minutes ago", minutes
        ) % {"count": minutes}
    hours = minutes // MINUTES_PER_HOUR
    if hours < HOURS_PER_DAY:
        return ngettext("last seen %(count)d hour ago", "last seen %(count)d hours ago", hours) % {
            "count": hours
        }
    days = hours // HOURS_PER_DAY
    return ngettext("last seen %(count)d day ago", "last seen %(count)d days ago", days) % {
        "count": days
    }


def status_words(status: StoredStatus, *, show_end_time: bool) -> str:
    """A status in words: its emoji (the character of a Unicode emoji, else ``:name:``), its
    text, and with ``show_end_time`` when it ends ("until ...", in the current time zone).
    presence-dot.js's statusWords says the same, but for the time's format."""
    parts = []
    emoji = status.emoji
    if emoji.name:
        unicode = emoji.reaction_type == UNICODE_EMOJI
        parts.append(unicode_character(emoji.code) if unicode else f":{emoji.name}:")
    if status.status_text:
        parts.append(status.status_text)
    words = " ".join(parts)
    if show_end_time and status.scheduled_end_time is not None:
        until = date_format(localtime(status.scheduled_end_time), "SHORT_DATETIME_FORMAT")
        words = gettext("%(status)s (until %(time)s)") % {"status": words, "time": until}
    return words


@register.simple_tag(takes_context=True)
def presence_dot(context: template.Context, user: object) -> SafeString:
    """The presence badge of ``user`` (a user of AUTH_USER_MODEL); "offline" for None, for a
    user who never reported and in a realm with presence disabled. The span names the user in
    ``data-user-id``, so that presence-dot.js, when the page includes it, keeps it current.
    A status (text or emoji) follows in a ``presence-user-status`` span, with its end time
    when the page's request is the user's own."""
    now = timezone.now()
    presence, status_row = _presence_and_status(user)
    status, title = dot_status(presence, now)
    user_pk = getattr(user, "pk", None)
    dot = format_html(
        '<span class="presence-dot presence-dot--{}"{} role="img" aria-label="{}" title="{}">'
        "</span>",
        status,
        format_html(' data-user-id="{}"', user_pk) if user_pk is not None else "",
        title,
        title,
    )
    if status_row is None:
        return dot
    current = stored_status_of(status_row).current(now)
    if not current.is_set:
        return dot
    request = context.get("request")
    viewer_pk = getattr(getattr(request, "user", None), "pk", None)
    words = status_words(current, show_end_time=viewer_pk is not None and viewer_pk == user_pk)
    return format_html('{}<span class="presence-user-status">{}</span>', dot, words)
