"""``manage.py presence_add_member EMAIL --realm STRING_ID``: make a user a member of a realm,
optionally creating the realm and the user first. Works with any user model: users are found
and created through its EMAIL_FIELD and USERNAME_FIELD."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import models, transaction

from django_presence.actions import MembershipError, check_add_realm_member, do_create_realm
from django_presence.models import Realm, RealmMember, user_email


def _check_field_value(model: type[models.Model], field: str, value: str, what: str) -> None:
    """Validate ``value`` as the model field would (length, slug syntax...)."""
    try:
        model._meta.get_field(field).clean(value, None)  # type: ignore[union-attr]
    except ValidationError as exc:
        raise CommandError(f"Invalid {what} {value!r}: {' '.join(exc.messages)}") from exc


def find_user(email: str) -> AbstractBaseUser | None:
    """The user whose email field matches ``email`` case-insensitively. Where several do (the
    stock User does not make emails unique), an exact match decides."""
    user_model = get_user_model()
    lookup = {f"{user_model.get_email_field_name()}__iexact": email}
    users = list(user_model._default_manager.filter(**lookup).order_by("pk"))
    if len(users) > 1:
        users = [user for user in users if user_email(user) == email] or users
    if len(users) > 1:
        ids = ", ".join(str(user.pk) for user in users)
        raise CommandError(f"Several users have the email {email} (user ids {ids}).")
    return users[0] if users else None


def create_user(email: str) -> AbstractBaseUser:
    """A new user with ``email`` as both its username and its email, and no usable password."""
    try:
        validate_email(email)
    except ValidationError as exc:
        raise CommandError(f"Invalid email {email!r}: {' '.join(exc.messages)}") from exc
    user_model = get_user_model()
    username_field = user_model.USERNAME_FIELD
    if user_model._default_manager.filter(**{username_field: email}).exists():
        raise CommandError(f"Cannot create a user: another user has the {username_field} {email}.")
    # BaseUserManager has no create_user: each user model's manager defines its own, or not.
    create = getattr(user_model._default_manager, "create_user", None)
    if not callable(create):
        raise CommandError(
            f"Cannot create a user: the manager of {user_model._meta.label} has no create_user()."
        )
    fields = {username_field: email, user_model.get_email_field_name(): email}
    user: AbstractBaseUser = create(**fields, password=None)
    # The stock manager already does this; custom managers may leave an empty password.
    if user.has_usable_password():
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


class Command(BaseCommand):
    help = (
        "Make the user with EMAIL a member of the realm STRING_ID. With --create-realm and "
        "--create-user, create the realm or the user first if they do not exist."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("email", help="the user's email, matched case-insensitively")
        parser.add_argument(
            "--realm", required=True, metavar="STRING_ID", help="the realm's string id"
        )
        parser.add_argument(
            "--create-realm", action="store_true", help="create the realm if it does not exist"
        )
        parser.add_argument(
            "--realm-name",
            metavar="NAME",
            help="name of the realm --create-realm creates (default: its string id)",
        )
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create the user (username and email EMAIL, no usable password) if none has "
            "that email",
        )
        parser.add_argument("--bot", action="store_true", help="the member is a bot")
        parser.add_argument("--guest", action="store_true", help="give the member the guest role")

    def handle(self, *args: Any, **options: Any) -> None:
        email: str = options["email"].strip()
        string_id: str = options["realm"]
        if options["realm_name"] is not None and not options["create_realm"]:
            raise CommandError("--realm-name only applies with --create-realm.")
        role = RealmMember.Role.GUEST if options["guest"] else RealmMember.Role.MEMBER
        is_bot: bool = options["bot"]

        # All or nothing: a failed check must not leave a new realm or user behind.
        report: list[str] = []
        with transaction.atomic():
            realm = Realm.objects.filter(string_id=string_id).first()
            if realm is None:
                if not options["create_realm"]:
                    raise CommandError(
                        f"No realm has the string id '{string_id}'. "
                        "Pass --create-realm to create it."
                    )
                name = options["realm_name"] or string_id
                _check_field_value(Realm, "string_id", string_id, "realm string id")
                _check_field_value(Realm, "name", name, "realm name")
                realm = do_create_realm(string_id, name)
                report.append(f"Created realm '{string_id}' named '{name}'.")

            user = find_user(email)
            if user is None:
                if not options["create_user"]:
                    raise CommandError(
                        f"No user has the email {email}. Pass --create-user to create one."
                    )
                user = create_user(email)
                report.append(f"Created user {email} (id {user.pk}) with no usable password.")

            try:
                member = check_add_realm_member(user, realm, role=role, is_bot=is_bot)
            except MembershipError as exc:
                raise CommandError(str(exc)) from exc

        report.append(
            f"Added {member.email} to realm '{realm.string_id}' "
            f"(role: {member.get_role_display()}, bot: {'yes' if is_bot else 'no'})."
        )
        for line in report:
            self.stdout.write(line)
