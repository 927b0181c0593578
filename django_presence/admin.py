"""The Django admin of django-presence.

Forms only collect values: every write goes through an action of
:mod:`django_presence.actions`, called from ``save_model`` or from an admin action. Presence rows
and sequences are read-only, API keys are issued and revoked but never edited, and nothing can be
deleted here (members and realms are deactivated instead).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_permission_codename, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models, transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import actions
from .emoji import unicode_character
from .models import (
    ApiKey,
    PresenceSequence,
    Realm,
    RealmEmoji,
    RealmMember,
    UserPresence,
    UserStatus,
)
from .queries import stored_status_of, with_presence_counts
from .status import ACTIVE, IDLE, OFFLINE, presence_status, presence_status_q
from .user_status import NO_EMOJI, UNICODE_EMOJI, UNSET, Unset

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin
else:

    class ModelAdmin(admin.ModelAdmin):
        """django-stubs makes ModelAdmin generic; this lets ``ModelAdmin[Model]`` run too."""

        def __class_getitem__(cls, item):
            return cls


_ModelT = TypeVar("_ModelT", bound=models.Model)

# The changelists annotate each row with its user's email under this name, so the column can be
# sorted whatever the user model calls its email field.
USER_EMAIL = "user_email"

STATUS_CHOICES = (
    (ACTIVE, _("active")),
    (IDLE, _("idle")),
    (OFFLINE, _("offline")),
)


def _user_email_path(user_path: str) -> str:
    """The ORM path from a model to its user's email field, e.g. ``member__user__email``."""
    return f"{user_path}__{get_user_model().get_email_field_name()}"


def _with_user_email(queryset: QuerySet[_ModelT], user_path: str) -> QuerySet[_ModelT]:
    annotated: QuerySet[_ModelT] = queryset.annotate(**{USER_EMAIL: F(_user_email_path(user_path))})
    return annotated


def _annotated_email(obj: models.Model) -> str:
    # Set by _with_user_email; the type checker cannot see query annotations.
    return str(getattr(obj, USER_EMAIL) or "")


def _annotated_count(obj: models.Model, name: str) -> int:
    # Set by queries.with_presence_counts, out of the type checker's sight too.
    return int(getattr(obj, name))


def _adopt(target: models.Model, saved: models.Model) -> None:
    """Turn the admin's unsaved ``target`` into the row an action just created, so the admin's
    log entry and redirect point at that row."""
    for field in target._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


# Presence status ---------------------------------------------------------------------------


class PresenceStatusFilter(admin.SimpleListFilter):
    """Filters presence rows by status with timestamp comparisons in the database."""

    title = _("status")
    parameter_name = "status"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> tuple[tuple[str, Any], ...]:
        return STATUS_CHOICES

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        try:
            return queryset.filter(presence_status_q(value, timezone.now()))
        except ValueError as exc:
            # The admin answers this with its usual "invalid filter" redirect.
            raise IncorrectLookupParameters(exc) from exc


class ApiKeyStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> tuple[tuple[str, Any], ...]:
        return (("active", _("active")), ("revoked", _("revoked")))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value not in ("active", "revoked"):
            raise IncorrectLookupParameters(f"unknown API key state {value!r}")
        return queryset.filter(revoked_at__isnull=value == "active")


class ReadOnlyAdmin(ModelAdmin[Any]):
    """View-only pages for rows that only the write path may change."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Realms ------------------------------------------------------------------------------------


@admin.register(Realm)
class RealmAdmin(ModelAdmin[Realm]):
    list_display = (
        "name",
        "string_id",
        "presence_disabled",
        "deactivated",
        "member_count",
        "active_count",
        "idle_count",
        "offline_count",
        "never_reported_count",
        "invisible_mode_allowed",
        "created_at",
    )
    list_filter = ("presence_disabled", "invisible_mode_allowed", "deactivated")
    search_fields = ("name", "string_id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Realm]:
        # The counts are annotations, so the changelist counts all its realms in one query.
        return with_presence_counts(super().get_queryset(request), timezone.now())

    @admin.display(description=_("members"), ordering="member_count")
    def member_count(self, realm: Realm) -> int:
        return _annotated_count(realm, "member_count")

    @admin.display(description=_("active"), ordering="active_count")
    def active_count(self, realm: Realm) -> int:
        return _annotated_count(realm, "active_count")

    @admin.display(description=_("idle"), ordering="idle_count")
    def idle_count(self, realm: Realm) -> int:
        return _annotated_count(realm, "idle_count")

    @admin.display(description=_("offline"), ordering="offline_count")
    def offline_count(self, realm: Realm) -> int:
        return _annotated_count(realm, "offline_count")

    @admin.display(description=_("never reported"), ordering="never_reported_count")
    def never_reported_count(self, realm: Realm) -> int:
        return _annotated_count(realm, "never_reported_count")

    @admin.display(description=_("presence now"))
    def presence_overview(self, realm: Realm) -> str:
        members = _annotated_count(realm, "member_count")
        message = ngettext(
            "%(members)d member: %(active)d active, %(idle)d idle, %(offline)d offline, "
            "%(never)d never reported",
            "%(members)d members: %(active)d active, %(idle)d idle, %(offline)d offline, "
            "%(never)d never reported",
            members,
        )
        return message % {
            "members": members,
            "active": _annotated_count(realm, "active_count"),
            "idle": _annotated_count(realm, "idle_count"),
            "offline": _annotated_count(realm, "offline_count"),
            "never": _annotated_count(realm, "never_reported_count"),
        }

    def get_fields(self, request: HttpRequest, obj: Realm | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("name", "string_id", "presence_disabled")
        return (
            "name",
            "string_id",
            "presence_overview",
            "presence_disabled",
            "invisible_mode_allowed",
            "deactivated",
            "created_at",
        )

    def get_readonly_fields(
        self, request: HttpRequest, obj: Realm | None = None
    ) -> tuple[str, ...]:
        # No action renames a realm, and commands and hosts rely on a stable string id.
        return () if obj is None else ("name", "string_id", "presence_overview", "created_at")

    def get_prepopulated_fields(
        self, request: HttpRequest, obj: Realm | None = None
    ) -> dict[str, Sequence[str]]:
        return {"string_id": ("name",)} if obj is None else {}

    def save_model(self, request: HttpRequest, obj: Realm, form: Any, change: bool) -> None:
        if not change:
            # do_create_realm also creates the realm's presence sequence row.
            realm = actions.do_create_realm(
                obj.string_id, obj.name, presence_disabled=obj.presence_disabled
            )
            _adopt(obj, realm)
            return
        if "presence_disabled" in form.changed_data:
            actions.do_set_realm_presence_disabled(obj, obj.presence_disabled)
        if "deactivated" in form.changed_data:
            actions.do_set_realm_deactivated(obj, obj.deactivated)
        if "invisible_mode_allowed" in form.changed_data:
            # Forbidding it makes members visible, a transaction each (do_set_presence_enabled
            # is durable): after the admin's own transaction.
            transaction.on_commit(
                partial(_set_invisible_mode_allowed, obj.pk, obj.invisible_mode_allowed)
            )

    def has_delete_permission(self, request: HttpRequest, obj: Realm | None = None) -> bool:
        return False


def _set_invisible_mode_allowed(realm_id: int, allowed: bool) -> None:
    actions.do_set_realm_invisible_mode_allowed(Realm.objects.get(pk=realm_id), allowed)


# Members -----------------------------------------------------------------------------------


def _set_presence_enabled(member_id: int, presence_enabled: bool) -> None:
    member = RealmMember.objects.select_related("user", "realm").get(pk=member_id)
    actions.do_set_presence_enabled(member, presence_enabled)


def _schedule_set_presence_enabled(members: QuerySet[RealmMember], presence_enabled: bool) -> int:
    """Run do_set_presence_enabled for each member whose setting differs, once the current
    transaction (if any) commits: the action needs a transaction of its own. Returns how many
    members it was scheduled for."""
    member_ids = list(
        members.filter(presence_enabled=not presence_enabled).values_list("pk", flat=True)
    )
    for member_id in member_ids:
        transaction.on_commit(partial(_set_presence_enabled, member_id, presence_enabled))
    return len(member_ids)


class RealmMemberAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """The add form: the membership rules of actions.validate_realm_membership, as form errors."""

    class Meta:
        model = RealmMember
        fields = ("user", "realm", "role", "is_bot")

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        user, realm = cleaned.get("user"), cleaned.get("realm")
        # A user who already has a membership is reported by the model's unique check.
        if (
            user is not None
            and realm is not None
            and not RealmMember.objects.filter(user_id=user.pk).exists()
        ):
            try:
                actions.validate_realm_membership(user, realm)
            except actions.MembershipError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return cleaned


@admin.register(RealmMember)
class RealmMemberAdmin(ModelAdmin[RealmMember]):
    list_display = ("email", "realm", "role", "is_bot", "is_active", "presence_enabled")
    list_filter = ("realm", "role", "is_bot", "is_active", "presence_enabled")
    list_select_related = ("user", "realm")
    raw_id_fields = ("user",)
    actions = (
        "revoke_api_keys",
        "issue_api_key",
        "turn_invisible_mode_on",
        "turn_invisible_mode_off",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[RealmMember]:
        return _with_user_email(super().get_queryset(request), "user")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (_user_email_path("user"),)

    @admin.display(description=_("email"), ordering=USER_EMAIL)
    def email(self, member: RealmMember) -> str:
        return _annotated_email(member)

    def get_form(
        self,
        request: HttpRequest,
        obj: RealmMember | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is None:
            kwargs["form"] = RealmMemberAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: RealmMember | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "realm", "role", "is_bot")
        return ("user", "realm", "role", "is_bot", "is_active", "presence_enabled", "date_joined")

    def get_readonly_fields(
        self, request: HttpRequest, obj: RealmMember | None = None
    ) -> tuple[str, ...]:
        # No action moves a member to another user or realm, or turns a bot into a human.
        return () if obj is None else ("user", "realm", "is_bot", "date_joined")

    def save_model(self, request: HttpRequest, obj: RealmMember, form: Any, change: bool) -> None:
        if not change:
            member = actions.do_add_realm_member(
                obj.user, obj.realm, role=obj.role, is_bot=obj.is_bot
            )
            _adopt(obj, member)
            return
        changed = form.changed_data
        if "role" in changed:
            actions.do_change_member_role(obj, obj.role)
        if "is_active" in changed:
            if obj.is_active:
                actions.do_reactivate_member(obj)
            else:
                actions.do_deactivate_member(obj)
        if "presence_enabled" in changed:
            if not (obj.presence_enabled or obj.realm.invisible_mode_allowed):
                self.message_user(
                    request,
                    gettext(
                        "Presence stays enabled: the organization does not allow invisible mode."
                    ),
                    messages.WARNING,
                )
                return
            # do_set_presence_enabled needs a transaction of its own (durable), and the admin
            # saves inside one: run it as soon as the admin's transaction has committed.
            transaction.on_commit(partial(_set_presence_enabled, obj.pk, obj.presence_enabled))

    def has_delete_permission(self, request: HttpRequest, obj: RealmMember | None = None) -> bool:
        return False

    def has_revoke_api_keys_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(_api_key_permission("change"))

    def has_issue_api_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(_api_key_permission("add"))

    @admin.action(description=_("Revoke all API keys"), permissions=["revoke_api_keys"])
    def revoke_api_keys(self, request: HttpRequest, queryset: QuerySet[RealmMember]) -> None:
        revoked = sum(actions.do_revoke_api_keys(member) for member in queryset)
        message = ngettext("Revoked %(count)d API key.", "Revoked %(count)d API keys.", revoked)
        self.message_user(request, message % {"count": revoked}, messages.SUCCESS)

    @admin.action(description=_("Issue a new API key"), permissions=["issue_api_key"])
    def issue_api_key(self, request: HttpRequest, queryset: QuerySet[RealmMember]) -> None:
        for member in queryset:
            _api_key, raw_key = actions.do_create_api_key(member)
            _show_new_key(request, member, raw_key)

    @admin.action(description=_("Turn invisible mode on"), permissions=["change"])
    def turn_invisible_mode_on(self, request: HttpRequest, queryset: QuerySet[RealmMember]) -> None:
        # The realm's policy holds here too (Realm.invisible_mode_allowed).
        forbidden = queryset.filter(realm__invisible_mode_allowed=False, presence_enabled=True)
        if skipped := forbidden.count():
            message = ngettext(
                "Skipped %(count)d member: their organization does not allow invisible mode.",
                "Skipped %(count)d members: their organization does not allow invisible mode.",
                skipped,
            )
            self.message_user(request, message % {"count": skipped}, messages.WARNING)
        count = _schedule_set_presence_enabled(
            queryset.filter(realm__invisible_mode_allowed=True), False
        )
        message = ngettext(
            "Turned invisible mode on for %(count)d member.",
            "Turned invisible mode on for %(count)d members.",
            count,
        )
        self.message_user(request, message % {"count": count}, messages.SUCCESS)

    @admin.action(description=_("Turn invisible mode off"), permissions=["change"])
    def turn_invisible_mode_off(
        self, request: HttpRequest, queryset: QuerySet[RealmMember]
    ) -> None:
        count = _schedule_set_presence_enabled(queryset, True)
        message = ngettext(
            "Turned invisible mode off for %(count)d member.",
            "Turned invisible mode off for %(count)d members.",
            count,
        )
        self.message_user(request, message % {"count": count}, messages.SUCCESS)


def _api_key_permission(action: str) -> str:
    opts = ApiKey._meta
    return f"{opts.app_label}.{get_permission_codename(action, opts)}"


def _show_new_key(request: HttpRequest, member: RealmMember, raw_key: str) -> None:
    """The only time a key is shown: only its digest and prefix are stored."""
    message = gettext(
        "New API key for %(email)s: %(key)s (copy it now: it is not stored and will not be "
        "shown again)"
    )
    messages.success(request, message % {"email": member.email, "key": raw_key})


# API keys ----------------------------------------------------------------------------------


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin[ApiKey]):
    list_display = ("email", "prefix", "created_at", "revoked_at", "active")
    list_filter = (ApiKeyStateFilter, "member__realm")
    raw_id_fields = ("member",)
    actions = ("revoke",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        return _with_user_email(super().get_queryset(request), "member__user")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (_user_email_path("member__user"), "=prefix")

    @admin.display(description=_("email"), ordering=USER_EMAIL)
    def email(self, api_key: ApiKey) -> str:
        return _annotated_email(api_key)

    @admin.display(description=_("active"), boolean=True, ordering="revoked_at")
    def active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("member",)
        return ("member", "prefix", "created_at", "revoked_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        # Only adding gets here: keys cannot be changed (has_change_permission).
        api_key, raw_key = actions.do_create_api_key(obj.member)
        _adopt(obj, api_key)
        _show_new_key(request, obj.member, raw_key)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(_api_key_permission("change"))

    @admin.action(description=_("Revoke selected API keys"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        active_keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active_keys:
            actions.do_revoke_api_key(api_key)
        message = ngettext(
            "Revoked %(count)d API key.", "Revoked %(count)d API keys.", len(active_keys)
        )
        self.message_user(request, message % {"count": len(active_keys)}, messages.SUCCESS)


# Presence (read-only) ----------------------------------------------------------------------


@admin.register(UserPresence)
class UserPresenceAdmin(ReadOnlyAdmin):
    list_display = (
        "email",
        "realm",
        "last_active_time",
        "last_connected_time",
        "last_update_id",
        "status",
    )
    list_filter = ("realm", PresenceStatusFilter)
    list_select_related = ("realm",)
    fields = readonly_fields = (
        "user",
        "realm",
        "last_active_time",
        "last_connected_time",
        "last_update_id",
        "status",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[UserPresence]:
        return _with_user_email(super().get_queryset(request), "user")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (_user_email_path("user"),)

    @admin.display(description=_("email"), ordering=USER_EMAIL)
    def email(self, presence: UserPresence) -> str:
        return _annotated_email(presence)

    @admin.display(description=_("status"))
    def status(self, presence: UserPresence) -> str:
        return presence_status(
            presence.last_active_time, presence.last_connected_time, timezone.now()
        )


@admin.register(PresenceSequence)
class PresenceSequenceAdmin(ReadOnlyAdmin):
    list_display = ("realm", "last_update_id")
    list_select_related = ("realm",)
    search_fields = ("realm__string_id", "realm__name")
    fields = readonly_fields = ("realm", "last_update_id")


# Custom emoji ------------------------------------------------------------------------------


EMOJI_NAME_FORMAT = re.compile(r"[a-z0-9_-]+")


class RealmEmojiAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = RealmEmoji
        fields = ("realm", "name", "image_url")

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"])
        if not EMOJI_NAME_FORMAT.fullmatch(name):
            raise forms.ValidationError(
                _("Use lowercase letters, digits, underscores and hyphens only.")
            )
        return name

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        realm, name = cleaned.get("realm"), cleaned.get("name")
        active = RealmEmoji.objects.filter(realm=realm, name=name, deactivated=False)
        if realm is not None and name and active.exists():
            raise forms.ValidationError(_("The realm already has an active emoji of that name."))
        return cleaned


@admin.register(RealmEmoji)
class RealmEmojiAdmin(ModelAdmin[RealmEmoji]):
    list_display = ("name", "realm", "code", "image_url", "deactivated", "created_at")
    list_filter = ("realm", "deactivated")
    list_select_related = ("realm",)
    search_fields = ("name",)
    actions = ("deactivate", "reactivate")

    @admin.display(description=_("emoji code"))
    def code(self, emoji: RealmEmoji) -> str:
        return str(emoji.pk)

    def get_form(
        self,
        request: HttpRequest,
        obj: RealmEmoji | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is None:
            kwargs["form"] = RealmEmojiAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: RealmEmoji | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("realm", "name", "image_url")
        return ("realm", "name", "code", "image_url", "deactivated", "created_at")

    def get_readonly_fields(
        self, request: HttpRequest, obj: RealmEmoji | None = None
    ) -> tuple[str, ...]:
        # Statuses name an emoji by id and name: neither changes once made.
        return () if obj is None else ("realm", "name", "code", "image_url", "created_at")

    def save_model(self, request: HttpRequest, obj: RealmEmoji, form: Any, change: bool) -> None:
        if not change:
            emoji = actions.do_add_realm_emoji(obj.realm, obj.name, image_url=obj.image_url)
            _adopt(obj, emoji)
        elif "deactivated" in form.changed_data:
            actions.do_set_realm_emoji_deactivated(obj, obj.deactivated)

    def has_delete_permission(self, request: HttpRequest, obj: RealmEmoji | None = None) -> bool:
        return False

    @admin.action(description=_("Deactivate selected emoji"), permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[RealmEmoji]) -> None:
        self._set_deactivated(request, queryset, True)

    @admin.action(description=_("Reactivate selected emoji"), permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[RealmEmoji]) -> None:
        self._set_deactivated(request, queryset, False)

    def _set_deactivated(
        self, request: HttpRequest, queryset: QuerySet[RealmEmoji], deactivated: bool
    ) -> None:
        changed = 0
        for emoji in queryset.filter(deactivated=not deactivated):
            clash = RealmEmoji.objects.filter(
                realm_id=emoji.realm_id, name=emoji.name, deactivated=False
            )
            if not deactivated and clash.exists():
                self.message_user(
                    request,
                    gettext("Not reactivated: :%(name)s: has an active namesake.")
                    % {"name": emoji.name},
                    messages.WARNING,
                )
                continue
            actions.do_set_realm_emoji_deactivated(emoji, deactivated)
            changed += 1
        self.message_user(
            request,
            ngettext("Changed %(count)d emoji.", "Changed %(count)d emoji.", changed)
            % {"count": changed},
            messages.SUCCESS,
        )


# User statuses -----------------------------------------------------------------------------


def _acting_user(request: HttpRequest) -> AbstractBaseUser | None:
    """The admin user making a change, for user_status_changed's acting_user."""
    user = request.user
    return user if isinstance(user, AbstractBaseUser) else None


class UserStatusForm(forms.ModelForm):  # type: ignore[type-arg]
    """Collects a status change and checks it with actions.check_user_status_change (Zulip's
    checks, as the API makes them); save_model writes it with do_update_user_status."""

    class Meta:
        model = UserStatus
        fields = ("user", "status_text", "emoji_name", "scheduled_end_time")

    write: actions.StatusWrite | None = None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        user = cleaned.get("user") or (self.instance.user if self.instance.pk else None)
        if user is None or self.errors:
            return cleaned
        member = RealmMember.objects.select_related("realm").filter(user_id=user.pk).first()
        if member is None or member.is_bot:
            raise forms.ValidationError(_("Only human members of a realm have statuses."))
        changed = set(self.changed_data)
        end_time: int | None | Unset = UNSET
        if "scheduled_end_time" in changed:
            end = cleaned.get("scheduled_end_time")
            end_time = None if end is None else int(end.timestamp())
        try:
            self.write = actions.check_user_status_change(
                member,
                status_text=cleaned.get("status_text", "") if "status_text" in changed else None,
                emoji_name=cleaned.get("emoji_name", "") if "emoji_name" in changed else None,
                scheduled_end_time=end_time,
                now=timezone.now(),
            )
        except actions.ActionRefused as exc:
            if str(exc) != "Client did not pass any new values.":
                raise forms.ValidationError(str(exc)) from exc
        self.member = member
        return cleaned


@admin.register(UserStatus)
class UserStatusAdmin(ModelAdmin[UserStatus]):
    """Statuses, changed through the actions: each change sends its user_status event."""

    form = UserStatusForm
    list_display = ("email", "realm", "status_text", "emoji", "scheduled_end_time", "shown")
    list_filter = ("realm",)
    list_select_related = ("realm",)
    raw_id_fields = ("user",)
    actions = ("clear",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[UserStatus]:
        return _with_user_email(super().get_queryset(request), "user")

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (_user_email_path("user"), "status_text")

    @admin.display(description=_("email"), ordering=USER_EMAIL)
    def email(self, status: UserStatus) -> str:
        return _annotated_email(status)

    @admin.display(description=_("emoji"))
    def emoji(self, status: UserStatus) -> str:
        if not status.emoji_name:
            return ""
        if status.reaction_type == UNICODE_EMOJI:
            return f"{unicode_character(status.emoji_code)} :{status.emoji_name}:"
        return f":{status.emoji_name}:"

    @admin.display(description=_("shown now"), boolean=True)
    def shown(self, status: UserStatus) -> bool:
        """Whether reads show it: something set, and its end time (if any) not come."""
        return stored_status_of(status).current(timezone.now()).is_set

    def get_fields(self, request: HttpRequest, obj: UserStatus | None = None) -> tuple[str, ...]:
        editable = ("status_text", "emoji_name", "scheduled_end_time")
        if obj is None:
            return ("user", *editable)
        return ("user", "realm", *editable, "emoji_code", "reaction_type", "timestamp")

    def get_readonly_fields(
        self, request: HttpRequest, obj: UserStatus | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("user", "realm", "emoji_code", "reaction_type", "timestamp")

    def save_model(self, request: HttpRequest, obj: UserStatus, form: Any, change: bool) -> None:
        write: actions.StatusWrite | None = form.write
        if write is not None:
            actions.do_update_user_status(
                form.member,
                acting_user=_acting_user(request),
                status_text=write.status_text,
                emoji=write.emoji,
                scheduled_end_time=write.scheduled_end_time,
            )
        if not change:
            _adopt(obj, UserStatus.objects.get(user_id=form.member.user_id))

    def has_delete_permission(self, request: HttpRequest, obj: UserStatus | None = None) -> bool:
        return False

    @admin.action(description=_("Clear selected statuses"), permissions=["change"])
    def clear(self, request: HttpRequest, queryset: QuerySet[UserStatus]) -> None:
        members = RealmMember.objects.filter(user_id__in=queryset.values("user_id")).select_related(
            "user", "realm"
        )
        for member in members:
            actions.do_update_user_status(
                member, acting_user=_acting_user(request), status_text="", emoji=NO_EMOJI
            )
        message = ngettext("Cleared %(count)d status.", "Cleared %(count)d statuses.", len(members))
        self.message_user(request, message % {"count": len(members)}, messages.SUCCESS)
