"""``manage.py presence_purge --older-than-days N``: delete the presence rows of users who have
not been seen for N days, in batches, with progress on stderr. An operator tool: Zulip itself
never deletes presence rows."""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from django_presence.actions import do_purge_presence_rows
from django_presence.conf import presence_settings
from django_presence.models import Realm
from django_presence.queries import stale_presence_rows

DEFAULT_BATCH_SIZE = 1000


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ArgumentTypeError(f"invalid integer: {value!r}") from None
    if number < 1:
        raise ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def find_realm(string_id: str) -> Realm:
    realm = Realm.objects.filter(string_id=string_id).first()
    if realm is None:
        raise CommandError(f"No realm has the string id '{string_id}'.")
    return realm


def rows(count: int) -> str:
    return f"{count} presence row" if count == 1 else f"{count} presence rows"


class Command(BaseCommand):
    help = (
        "Delete the presence rows whose last connection and last activity are both older than "
        "N days (or unknown). Users who report again get a new row."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=positive_int,
            required=True,
            metavar="N",
            help="delete rows with no report in the last N days",
        )
        parser.add_argument("--realm", metavar="STRING_ID", help="only this realm's rows")
        parser.add_argument(
            "--dry-run", action="store_true", help="only count the rows that would be deleted"
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=DEFAULT_BATCH_SIZE,
            metavar="K",
            help=f"rows deleted per transaction (default {DEFAULT_BATCH_SIZE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        realm = find_realm(options["realm"]) if options["realm"] is not None else None
        days: int = options["older_than_days"]
        older_than = timezone.now() - timedelta(days=days)
        scope = f"realm '{realm.string_id}'" if realm is not None else "all realms"
        cutoff = older_than.isoformat(timespec="seconds")

        history_days = presence_settings.DEFAULT_HISTORY_LIMIT_DAYS
        if days < history_days:
            self.stderr.write(
                f"Warning: {days} days is less than PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS "
                f"({history_days}): users seen within that window disappear from full "
                "presence fetches.",
                self.style.WARNING,
            )

        total = stale_presence_rows(realm, older_than).count()
        if options["dry_run"]:
            self.stdout.write(
                f"Would delete {rows(total)} ({scope}) with no report since {cutoff}."
            )
            return

        def progress(deleted: int) -> None:
            # The total was counted before: rows reported meanwhile are kept, not counted.
            # style_func=str leaves the line as it is: on a terminal Django colours all of stderr
            # as errors, and progress is not an error.
            self.stderr.write(f"deleted {deleted}/{total}", style_func=str)

        deleted = do_purge_presence_rows(
            realm, older_than, batch_size=options["batch_size"], on_progress=progress
        )
        self.stdout.write(f"Deleted {rows(deleted)} ({scope}) with no report since {cutoff}.")
