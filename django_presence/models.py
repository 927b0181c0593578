"""Data model of django-presence.

Zulip keeps presence in two small tables: one row per user with two timestamps, and one
counter row per organization (realm) that numbers every presence write. This app adds the two
models Zulip's ``UserProfile`` carries implicitly: the realm itself and a membership record for
what Django's ``User`` lacks. Nothing here writes: every write goes through
:mod:`django_presence.actions`.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .status import OFFLINE, STATUSES


def user_model_has_field(name: str) -> bool:
    """Whether AUTH_USER_MODEL has this field: custom user models may lack is_active, groups
    or names, and the app then does without them."""
    try:
        get_user_model()._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def user_email(user: AbstractBaseUser) -> str:
    """A user's API email: the user model's email field."""
    return str(getattr(user, user.get_email_field_name(), "") or "")


class Realm(models.Model):
    """An organization: all presence data, and its update sequence, is scoped to one realm."""

    name = models.CharField(_("name"), max_length=100)
    # Zulip's "string id" is the subdomain; here it is the stable handle used by commands.
    string_id = models.SlugField(_("string id"), max_length=64, unique=True)
    # Organization-wide switch: when set, presence reads return nothing and no events are sent.
    presence_disabled = models.BooleanField(_("presence disabled"), default=False)
    # A deactivated realm refuses every API request (REALM_DEACTIVATED).
    deactivated = models.BooleanField(_("deactivated"), default=False)
    # Whether members may turn invisible mode on (presence_enabled=False); set it through
    # actions.do_set_realm_invisible_mode_allowed, which makes invisible members visible again.
    invisible_mode_allowed = models.BooleanField(_("invisible mode allowed"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("realm")
        verbose_name_plural = _("realms")
        ordering = ("string_id",)

    def __str__(self) -> str:
        return self.string_id


class RealmMember(models.Model):
    """What Zulip's UserProfile knows and Django's User does not: realm, bot flag, role,
    invisible mode. One per user; a user without one cannot use the presence API."""

    class Role(models.IntegerChoices):
        # Zulip's numeric role values, so exported data lines up with Zulip's.
        OWNER = 100, _("owner")
        ADMINISTRATOR = 200, _("administrator")
        MODERATOR = 300, _("moderator")
        MEMBER = 400, _("member")
        GUEST = 600, _("guest")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="presence_membership",
        verbose_name=_("user"),
    )
    realm = models.ForeignKey(
        Realm, on_delete=models.CASCADE, related_name="members", verbose_name=_("realm")
    )
    role = models.PositiveSmallIntegerField(_("role"), choices=Role.choices, default=Role.MEMBER)
    is_bot = models.BooleanField(_("bot"), default=False)
    # Deactivated members are hidden from presence and refused at authentication
    # (USER_DEACTIVATED), independently of the host's own User.is_active.
    is_active = models.BooleanField(_("active"), default=True)
    # Invisible mode is presence_enabled=False: the user's reports are ignored.
    presence_enabled = models.BooleanField(_("presence enabled"), default=True)
    # Zulip reports date_joined in place of NULL presence timestamps; custom user models may
    # not have such a field, so the membership keeps its own.
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    class Meta:
        verbose_name = _("realm member")
        verbose_name_plural = _("realm members")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["realm", "is_active", "is_bot"], name="presence_member_realm_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.realm_id})"

    @property
    def email(self) -> str:
        """The API email, which in this app is the user's email field."""
        return user_email(self.user)

    @property
    def is_guest(self) -> bool:
        return self.role == self.Role.GUEST


STATUS_CHOICES = [(status, status) for status in STATUSES]


class UserPresence(models.Model):
    """One row per user: the last time a client said the user was active, and the last time any
    client was connected at all. Users can turn updates off (invisible mode), so this row does
    not tell whether a user was recently active."""

    # The unique constraint doubles as the ON CONFLICT target of the insert.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="presence",
        verbose_name=_("user"),
    )
    # Copied from the membership so realm-wide reads need no join to filter. No index of its
    # own: the three below lead with the realm, and with a realm-only index as well the planner
    # picks it for incremental reads (scanning the whole realm) whenever update ids of other
    # realms skew its estimate, instead of the (realm, last_update_id) range scan.
    realm = models.ForeignKey(
        Realm, on_delete=models.CASCADE, db_index=False, verbose_name=_("realm")
    )
    # NULL means "never": a user who has only been idle has no last_active_time.
    last_active_time = models.DateTimeField(_("last active"), null=True, blank=True)
    last_connected_time = models.DateTimeField(_("last connected"), null=True, blank=True)
    # The realm sequence value of the row's last write; incremental fetches compare against it.
    last_update_id = models.PositiveBigIntegerField(_("last update id"), default=0)
    # The status (status.presence_status) presence_status_changed last announced, and when the
    # timestamps alone will change it next (NULL once offline): what transitions.py sweeps.
    announced_status = models.CharField(
        _("announced status"),
        max_length=8,
        choices=STATUS_CHOICES,
        default=OFFLINE,
        # For the raw INSERT of the write path, which names the columns it sets.
        db_default=OFFLINE,
    )
    status_changes_at = models.DateTimeField(_("status changes at"), null=True, blank=True)

    class Meta:
        verbose_name = _("user presence")
        verbose_name_plural = _("user presences")
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["realm", "last_active_time"], name="presence_realm_active_idx"),
            models.Index(
                fields=["realm", "last_connected_time"], name="presence_realm_connected_idx"
            ),
            models.Index(fields=["realm", "last_update_id"], name="presence_realm_update_id_idx"),
            # Across realms on purpose: the sweeper asks which rows are due, in any realm. Only
            # rows with a change ahead are in it, so it stays as small as the online members.
            models.Index(
                fields=["status_changes_at"],
                name="presence_status_due_idx",
                condition=models.Q(status_changes_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"presence of user {self.user_id} (update {self.last_update_id})"


class PresenceSequence(models.Model):
    """The per-realm counter behind ``last_update_id``, and the lock that serializes presence
    writes within a realm: a writer increments it as the last statement of its transaction and
    holds the row lock until commit, so ids become visible in commit order."""

    realm = models.OneToOneField(
        Realm, on_delete=models.CASCADE, related_name="presence_sequence", verbose_name=_("realm")
    )
    last_update_id = models.PositiveBigIntegerField(_("last update id"))
    # Presence events of the realm that could not be published (the event backend was down):
    # an event queue registered when the count was lower may have missed one, so its next poll
    # answers BAD_EVENT_QUEUE_ID and its client registers again (docs/events.md). A database
    # default too, for the raw INSERT that creates a missing row (actions.py).
    events_lost = models.PositiveBigIntegerField(_("events lost"), default=0, db_default=0)

    class Meta:
        verbose_name = _("presence sequence")
        verbose_name_plural = _("presence sequences")

    def __str__(self) -> str:
        return f"{self.realm_id}: {self.last_update_id}"


class ApiKey(models.Model):
    """An API key for Zulip-style HTTP Basic authentication. Only a SHA-256 digest is stored:
    keys are 32 random alphanumerics (about 190 bits), so a slow password hash adds nothing."""

    member = models.ForeignKey(
        RealmMember, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("member")
    )
    key_digest = models.CharField(_("key digest"), max_length=64, unique=True, editable=False)
    # The first characters, so an operator can tell keys apart without the secret.
    prefix = models.CharField(_("prefix"), max_length=8, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.prefix}… ({state})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RealmEmoji(models.Model):
    """A realm's custom emoji, which statuses name with reaction type ``realm_emoji`` and code
    ``str(id)``, as Zulip's. Deactivated, never deleted: statuses may still name it."""

    realm = models.ForeignKey(
        Realm, on_delete=models.CASCADE, related_name="custom_emoji", verbose_name=_("realm")
    )
    name = models.CharField(_("name"), max_length=60)
    # Where pages that show a status find the picture (absolute, or relative to the site);
    # none: they show ``:name:``.
    image_url = models.CharField(_("image URL"), max_length=500, blank=True)
    deactivated = models.BooleanField(_("deactivated"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("custom emoji")
        verbose_name_plural = _("custom emoji")
        ordering = ("realm", "name")
        constraints: ClassVar[list[models.BaseConstraint]] = [
            # One active emoji per name in a realm, as Zulip.
            models.UniqueConstraint(
                fields=["realm", "name"],
                condition=models.Q(deactivated=False),
                name="presence_realm_emoji_name_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f":{self.name}: ({self.realm_id})"


class UserStatus(models.Model):
    """A user's status, as Zulip's UserStatus: a text, an emoji, and (beyond Zulip) the moment
    it ends. One row per user, made by the first status write. ``away`` is not stored: it is
    invisible mode, RealmMember.presence_enabled."""

    class ReactionType(models.TextChoices):
        UNICODE_EMOJI = "unicode_emoji", _("Unicode emoji")
        REALM_EMOJI = "realm_emoji", _("custom emoji")
        ZULIP_EXTRA_EMOJI = "zulip_extra_emoji", _("Zulip extra emoji")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="presence_user_status",
        verbose_name=_("user"),
    )
    # Copied from the membership, so that realm reads filter by it first.
    realm = models.ForeignKey(Realm, on_delete=models.CASCADE, verbose_name=_("realm"))
    # The last write; never shown by the API.
    timestamp = models.DateTimeField(_("timestamp"), default=timezone.now)
    # The API takes at most 60 characters; the column is Zulip's.
    status_text = models.CharField(_("status text"), max_length=255, blank=True, default="")
    emoji_name = models.TextField(_("emoji name"), blank=True, default="")
    emoji_code = models.TextField(_("emoji code"), blank=True, default="")
    reaction_type = models.CharField(
        _("reaction type"),
        max_length=30,
        choices=ReactionType.choices,
        default=ReactionType.UNICODE_EMOJI,
    )
    # When the status clears itself (an extension: Zulip's scheduled_end_time proposal); NULL
    # for a status that does not end. The timers' sweeper clears it (actions).
    scheduled_end_time = models.DateTimeField(_("scheduled end time"), null=True, blank=True)

    class Meta:
        verbose_name = _("user status")
        verbose_name_plural = _("user statuses")
        indexes: ClassVar[list[models.Index]] = [
            # Across realms on purpose, as presence_status_due_idx: the sweeper asks which
            # statuses are due, in any realm; only statuses with an end time are in it.
            models.Index(
                fields=["scheduled_end_time"],
                name="presence_user_status_end_idx",
                condition=models.Q(scheduled_end_time__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"status of user {self.user_id}"
