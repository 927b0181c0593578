"""django-presence's migrations with a swapped AUTH_USER_MODEL: they apply, unapply, point their
foreign keys at the custom table, and leave nothing for makemigrations to do."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from django_presence.models import RealmMember, UserPresence

from .models import EmailUser

pytestmark = pytest.mark.django_db(transaction=True)


def user_foreign_key(model: type) -> tuple[str, str]:
    """The (table, column) the model's ``user_id`` column references in the database."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    (target,) = [
        c["foreign_key"]
        for c in constraints.values()
        if c["foreign_key"] and c["columns"] == ["user_id"]
    ]
    return target


def test_migrations_are_applied() -> None:
    applied = MigrationRecorder(connection).applied_migrations()
    assert ("custom_user", "0001_initial") in applied
    assert ("django_presence", "0001_initial") in applied


def test_foreign_keys_reference_the_custom_user_table() -> None:
    expected = (EmailUser._meta.db_table, "id")
    assert expected == ("custom_user_emailuser", "id")
    assert user_foreign_key(UserPresence) == expected
    assert user_foreign_key(RealmMember) == expected


def test_no_missing_migrations_and_checks_pass() -> None:
    for app_label in ("custom_user", "django_presence"):
        out = StringIO()
        call_command("makemigrations", app_label, check=True, dry_run=True, stdout=out)
        assert out.getvalue() == f"No changes detected in app '{app_label}'\n"
    out = StringIO()
    call_command("check", stdout=out)
    assert out.getvalue() == "System check identified no issues (0 silenced).\n"


def test_migrations_unapply_and_reapply() -> None:
    presence_tables = {RealmMember._meta.db_table, UserPresence._meta.db_table}
    call_command("migrate", "django_presence", "zero", verbosity=0)
    assert not presence_tables & set(connection.introspection.table_names())
    call_command("migrate", verbosity=0)
    assert presence_tables <= set(connection.introspection.table_names())
    assert user_foreign_key(UserPresence) == ("custom_user_emailuser", "id")
