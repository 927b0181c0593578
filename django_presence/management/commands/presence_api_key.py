"""``manage.py presence_api_key EMAIL``: issue an API key and print it, alone, on stdout, so
that scripts can capture it. Everything else goes to stderr."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.exceptions import AuthenticationFailed

from django_presence.actions import do_create_api_key, do_revoke_api_keys
from django_presence.authentication import check_member_can_authenticate
from django_presence.models import RealmMember


def find_member(email: str, realm_string_id: str | None) -> RealmMember:
    """The member whose user has ``email`` (case-insensitively), in the given realm if any."""
    lookup = {f"user__{get_user_model().get_email_field_name()}__iexact": email}
    members = RealmMember.objects.select_related("user", "realm").filter(**lookup)
    where = ""
    if realm_string_id is not None:
        members = members.filter(realm__string_id=realm_string_id)
        where = f" of realm '{realm_string_id}'"
    found = list(members.order_by("pk"))
    if not found:
        raise CommandError(f"No member{where} has the email {email}.")
    if len(found) > 1:
        realms = ", ".join(sorted({f"'{member.realm.string_id}'" for member in found}))
        hint = "" if realm_string_id is not None else " Pass --realm to choose one."
        raise CommandError(
            f"Several members{where} have the email {email} (realms {realms}).{hint}"
        )
    return found[0]


class Command(BaseCommand):
    help = (
        "Issue a new API key for the realm member with EMAIL and print only the key on stdout. "
        "The member's older keys are revoked unless --keep-existing is given."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("email", help="the member's email, matched case-insensitively")
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help="leave the member's older keys active",
        )
        parser.add_argument(
            "--realm",
            metavar="STRING_ID",
            help="the member's realm, needed when members of several realms share the email",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        member = find_member(options["email"].strip(), options["realm"])
        with transaction.atomic():
            revoked = 0 if options["keep_existing"] else do_revoke_api_keys(member)
            _api_key, raw_key = do_create_api_key(member)

        if revoked:
            noun = "key" if revoked == 1 else "keys"
            self.stderr.write(
                f"Revoked {revoked} older API {noun} of {member.email}.", self.style.WARNING
            )
        try:
            check_member_can_authenticate(member)
        except AuthenticationFailed as exc:
            self.stderr.write(
                f"Warning: the key will be refused until this changes: {exc.detail}",
                self.style.WARNING,
            )
        self.stdout.write(raw_key)
