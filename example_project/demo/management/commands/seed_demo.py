"""Seed the demo realm. Safe to run again: it restores the same people and refreshes their
presence relative to now. Realms, members, keys and presence are written through
django_presence.actions only, as a host project should."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_presence.actions import (
    check_add_realm_member,
    do_change_member_role,
    do_create_api_key,
    do_create_realm,
    do_reactivate_member,
    do_set_presence_enabled,
    update_user_presence,
)
from django_presence.models import Realm, RealmMember

REALM_STRING_ID = "demo"
REALM_NAME = "Demo organization"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"  # a local demo only; the printed login must simply work
API_KEY_OWNER = "alice@example.com"
GUEST_GROUP = "Partners"

Role = RealmMember.Role


@dataclass(frozen=True)
class Person:
    username: str
    first_name: str
    last_name: str
    role: int = Role.MEMBER
    is_bot: bool = False
    # Presence reports to replay, as (age, status): an active report this long ago, etc.
    reports: tuple[tuple[timedelta, str], ...] = ()
    description: str = ""

    @property
    def email(self) -> str:
        return f"{self.username}@example.com"


NOW = timedelta(0)
PEOPLE = (
    Person("alice", "Alice", "Archer", reports=((NOW, "active"),), description="active now"),
    Person(
        "bob",
        "Bob",
        "Baker",
        # Active 20 minutes ago, still connected: the legacy format calls that "idle".
        reports=((timedelta(minutes=20), "active"), (NOW, "idle")),
        description=f'idle; shares the "{GUEST_GROUP}" group with gina',
    ),
    Person(
        "carol",
        "Carol",
        "Chen",
        reports=((timedelta(hours=2), "active"),),
        description="offline for 2 hours",
    ),
    Person(
        "dave",
        "Dave",
        "Dossou",
        reports=((timedelta(days=3), "active"),),
        description="offline for 3 days",
    ),
    Person(
        "gina",
        "Gina",
        "Greco",
        role=Role.GUEST,
        reports=((timedelta(seconds=30), "active"),),
        description=f'guest, active; sees only bob (the "{GUEST_GROUP}" group) and herself',
    ),
    Person(
        "presence-bot", "Presence", "Bot", is_bot=True, description="bot; bots have no presence"
    ),
)


class Command(BaseCommand):
    help = "Create or refresh the demo realm, its members and presence, and an admin login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000",
            help="Where the site will be served; only used in the printed instructions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        realm = Realm.objects.filter(string_id=REALM_STRING_ID).first()
        if realm is None:
            realm = do_create_realm(REALM_STRING_ID, REALM_NAME)

        admin = _ensure_user(ADMIN_USERNAME, f"{ADMIN_USERNAME}@example.com")
        admin.is_staff = admin.is_superuser = True
        admin.set_password(ADMIN_PASSWORD)
        admin.save()
        _ensure_member(admin, realm, role=Role.ADMINISTRATOR, is_bot=False)

        members: dict[str, RealmMember] = {}
        for person in PEOPLE:
            user = _ensure_user(person.username, person.email)
            if (user.first_name, user.last_name) != (person.first_name, person.last_name):
                user.first_name, user.last_name = person.first_name, person.last_name
                user.save(update_fields=["first_name", "last_name"])
            members[person.username] = member = _ensure_member(
                user, realm, role=person.role, is_bot=person.is_bot
            )
            # Oldest report first: a write never moves a timestamp backwards.
            for age, status in sorted(person.reports, reverse=True):
                _report(member, log_time=now - age, status=status)

        group, _created = Group.objects.get_or_create(name=GUEST_GROUP)
        group.user_set.add(members["gina"].user, members["bob"].user)

        key_owner = members[API_KEY_OWNER.split("@")[0]]
        _api_key, raw_key = do_create_api_key(key_owner, revoke_existing=True)
        self._print_instructions(options["url"].rstrip("/"), key_owner.email, raw_key)

    def _print_instructions(self, url: str, email: str, api_key: str) -> None:
        people = "\n".join(f"    {p.email:<28} {p.description}" for p in PEOPLE)
        admin_line = f"    {ADMIN_USERNAME + '@example.com':<28} administrator (the admin login)"
        self.stdout.write(
            f"""
Demo realm "{REALM_STRING_ID}" is ready.

  Site:     {url}/
  Admin:    {url}/admin/  (username {ADMIN_USERNAME}, password {ADMIN_PASSWORD})
  API key:  {email}  {api_key}
            (a new key on every run; the previous one is revoked)

  Members of the realm:
{admin_line}
{people}

Try it with the zulip client (pip install zulip):

    import os
    import zulip

    client = zulip.Client(
        site="{url}",
        email="{email}",
        api_key="{api_key}",
        config_file=os.devnull,
    )
    print(client.update_presence({{"status": "active", "last_update_id": -1}}))
    print(client.get_realm_presence())
"""
        )


def _ensure_user(username: str, email: str) -> AbstractUser:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username, defaults={"email": email})
    if created and username != ADMIN_USERNAME:
        # Demo people sign in with API keys only.
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _ensure_member(user: AbstractUser, realm: Realm, *, role: int, is_bot: bool) -> RealmMember:
    member = RealmMember.objects.select_related("realm", "user").filter(user_id=user.pk).first()
    if member is None:
        return check_add_realm_member(user, realm, role=role, is_bot=is_bot)
    if member.role != role:
        do_change_member_role(member, role)
    if not member.is_active:
        do_reactivate_member(member)
    return member


def _report(member: RealmMember, *, log_time: datetime, status: str) -> None:
    """Replay one presence report, first leaving invisible mode if someone turned it on."""
    if not member.presence_enabled:
        do_set_presence_enabled(member, True, log_time=log_time)
    update_user_presence(member, log_time=log_time, status=status, new_user_input=True)
