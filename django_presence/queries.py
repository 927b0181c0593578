"""Every read of django-presence. Each function takes the realm first and filters by it first,
so the indexes that lead with the realm serve it. Nothing here writes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet
from django.utils import timezone

from .adapter import get_access_adapter
from .conf import presence_settings
from .formatting import format_legacy_entry, format_modern_entry
from .models import Realm, RealmMember, UserPresence

# presence_last_update_id when there is neither data nor a client baseline.
NO_UPDATE_ID = -1

MAX_HISTORY_LIMIT_DAYS = 365_000


def _user_model_has_field(name: str) -> bool:
    try:
        get_user_model()._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _user_email_field() -> str:
    return get_user_model().get_email_field_name()


def active_members(realm: Realm) -> QuerySet[RealmMember]:
    """Active members of the realm: active membership, and an active user where the user
    model has an is_active field (custom user models need not)."""
    members = RealmMember.objects.filter(realm_id=realm.pk, is_active=True)
    if _user_model_has_field("is_active"):
        members = members.filter(user__is_active=True)
    return members


def get_presence_dict_by_realm(
    realm: Realm,
    viewer: RealmMember,
    *,
    slim_presence: bool,
    last_update_id: int | None = None,
    history_limit_days: int | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], int]:
    """The realm's presence as ``viewer`` may see it, and the presence_last_update_id to return.

    Modern entries are keyed by str(user_id), legacy ones by email. With a positive
    ``last_update_id`` only rows written after it are returned, with no time window; otherwise
    only rows connected within ``history_limit_days`` (default 14; 0 means nothing)."""
    if realm.presence_disabled:
        return {}, NO_UPDATE_ID
    baseline = NO_UPDATE_ID if last_update_id is None else last_update_id
    if history_limit_days == 0:
        return {}, baseline

    now = now or timezone.now()
    days = presence_settings.DEFAULT_HISTORY_LIMIT_DAYS
    if history_limit_days is not None:
        # Clamped so any client value gives a representable date: a thousand years back
        # already means "everything", and a negative value (a window in the future) "nothing".
        days = max(-MAX_HISTORY_LIMIT_DAYS, min(history_limit_days, MAX_HISTORY_LIMIT_DAYS))
    rows = UserPresence.objects.filter(
        realm_id=realm.pk,
        user__presence_membership__is_active=True,
        user__presence_membership__is_bot=False,
    )
    if _user_model_has_field("is_active"):
        rows = rows.filter(user__is_active=True)
    if last_update_id is not None:
        rows = rows.filter(last_update_id__gt=last_update_id)
    if last_update_id is None or last_update_id <= 0:
        # A NULL last_connected_time never matches, so rows with no timestamps stay out.
        rows = rows.filter(last_connected_time__gte=now - timedelta(days=days))
    if presence_settings.LIMIT_TO_ACCESSIBLE_USERS:
        adapter = get_access_adapter()
        if not adapter.can_access_all_users(viewer):
            rows = rows.filter(user_id__in=adapter.accessible_user_ids(viewer))

    offset = presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS
    presences: dict[str, Any] = {}
    max_update_id = baseline
    found_any = False
    for user_id, email, last_active, last_connected, update_id, date_joined in rows.values_list(
        "user_id",
        f"user__{_user_email_field()}",
        "last_active_time",
        "last_connected_time",
        "last_update_id",
        "user__presence_membership__date_joined",
    ):
        # The API always sends integers: missing timestamps fall back to the join date.
        last_active = last_active or date_joined
        last_connected = last_connected or date_joined
        if slim_presence:
            presences[str(user_id)] = format_modern_entry(last_active, last_connected)
        else:
            presences[email] = format_legacy_entry(last_active, last_connected, offset)
        max_update_id = update_id if not found_any else max(max_update_id, update_id)
        found_any = True
    return presences, max_update_id


def get_member_by_id_or_email(realm: Realm, user_id_or_email: str) -> RealmMember | None:
    """An active member of ``realm`` named by user id or, failing that, by API email
    (case-insensitive, surrounding white space ignored). Other realms' users are not found."""
    members = active_members(realm).select_related("user", "realm")
    try:
        user_id = int(user_id_or_email)
    except ValueError:
        if "\x00" in user_id_or_email:
            # No email contains NUL, and PostgreSQL refuses it in a query.
            return None
        lookup = {f"user__{_user_email_field()}__iexact": user_id_or_email.strip()}
        return members.filter(**lookup).order_by("pk").first()
    # Through the user's pk, whose integer lookups know the column's range: an id too large
    # for it finds nobody instead of overflowing the database driver.
    return members.filter(user__pk=user_id).first()


def get_presence_for_user(realm: Realm, member: RealmMember) -> tuple[datetime, datetime] | None:
    """The member's (last_active, last_connected), NULLs replaced by the join date, with no time
    window and whatever their invisible-mode setting; None when they have no row."""
    row = (
        UserPresence.objects.filter(realm_id=realm.pk, user_id=member.user_id)
        .values_list("last_active_time", "last_connected_time")
        .first()
    )
    if row is None:
        return None
    last_active, last_connected = row
    return last_active or member.date_joined, last_connected or member.date_joined


def presence_event_recipients(realm: Realm, subject: RealmMember) -> QuerySet[RealmMember]:
    """Who would receive a presence event about ``subject``: every active member of the realm
    (bots included), or with access limiting on only those who may access the subject."""
    recipients = active_members(realm)
    if presence_settings.LIMIT_TO_ACCESSIBLE_USERS:
        allowed = get_access_adapter().members_who_can_access(subject)
        recipients = recipients.filter(pk__in=allowed.values("pk"))
    return recipients
