"""``manage.py presence_stats``: per realm, how many members are active, idle and offline now,
how many never reported, how many presence rows there are, and the realm's last update id."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand

from django_presence.management.commands.presence_purge import find_realm
from django_presence.queries import RealmPresenceStats, get_realm_presence_stats

COLUMNS = (
    ("realm", "string_id"),
    ("members", "members"),
    ("active", "active"),
    ("idle", "idle"),
    ("offline", "offline"),
    ("never reported", "never_reported"),
    ("rows", "rows"),
    ("last_update_id", "last_update_id"),
)


def format_table(stats: list[RealmPresenceStats]) -> str:
    """A plain-text table: the realm column aligned left, the numbers right."""
    table = [[title for title, _field in COLUMNS]]
    table += [[str(getattr(entry, field)) for _title, field in COLUMNS] for entry in stats]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "Print, per realm, its members, how many are active, idle and offline now (the "
        "admin's status rule), how many never reported, its presence rows and last update id."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--realm", metavar="STRING_ID", help="only this realm")
        parser.add_argument(
            "--json", action="store_true", help="print a JSON list of objects instead of a table"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        realm = find_realm(options["realm"]) if options["realm"] is not None else None
        stats = get_realm_presence_stats(realm)
        if options["json"]:
            self.stdout.write(json.dumps([asdict(entry) for entry in stats], indent=2))
        else:
            self.stdout.write(format_table(stats))
