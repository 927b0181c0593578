"""System checks for every PRESENCE_* setting and for Zulip's threshold invariant.

Messages, hints and ids are data; each id is used once (a test keeps it so).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS

# Positive integer settings, each with its own check id.
POSITIVE_INT_SETTINGS = {
    "PRESENCE_OFFLINE_THRESHOLD_SECS": "django_presence.E001",
    "PRESENCE_PING_INTERVAL_SECS": "django_presence.E002",
    "PRESENCE_UPDATE_MIN_FREQ_SECONDS": "django_presence.E003",
    "PRESENCE_LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS": "django_presence.E004",
    "PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS": "django_presence.E005",
    "PRESENCE_USER_LIMIT_FOR_EVENTS": "django_presence.E006",
}
E_LIMIT_TO_ACCESSIBLE_USERS = "django_presence.E007"
E_ACCESS_ADAPTER = "django_presence.E008"
E_API_RATE = "django_presence.E009"
E_SERVER_NAME = "django_presence.E010"
E_THRESHOLD_INVARIANT = "django_presence.E011"
E_DRF_NOT_INSTALLED = "django_presence.E012"
E_SQLITE_TOO_OLD = "django_presence.E013"

# The write path uses UPDATE ... RETURNING, which SQLite has since 3.35 (Django allows 3.31).
MIN_SQLITE_VERSION = (3, 35, 0)


# What DRF's SimpleRateThrottle.parse_rate accepts: a count, then a period by its first letter.
DRF_RATE = re.compile(r"[0-9]+/[smhd][a-z]*")


def _value(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for name, check_id in POSITIVE_INT_SETTINGS.items():
        value = _value(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            errors.append(
                checks.Error(
                    f"{name} must be a positive integer, not {value!r}.",
                    hint=f"Remove it to use the default ({DEFAULTS[name]}).",
                    id=check_id,
                )
            )
    if not isinstance(_value("PRESENCE_LIMIT_TO_ACCESSIBLE_USERS"), bool):
        errors.append(
            checks.Error(
                "PRESENCE_LIMIT_TO_ACCESSIBLE_USERS must be True or False.",
                id=E_LIMIT_TO_ACCESSIBLE_USERS,
            )
        )
    adapter_path = _value("PRESENCE_ACCESS_ADAPTER")
    try:
        import_string(adapter_path)
    except (ImportError, TypeError, ValueError) as exc:
        errors.append(
            checks.Error(
                f"PRESENCE_ACCESS_ADAPTER {adapter_path!r} cannot be imported: {exc}.",
                hint="Name a subclass of django_presence.adapter.DefaultAccessAdapter.",
                id=E_ACCESS_ADAPTER,
            )
        )
    rate = _value("PRESENCE_API_RATE")
    if rate is not None and (not isinstance(rate, str) or not DRF_RATE.fullmatch(rate)):
        errors.append(
            checks.Error(
                f"PRESENCE_API_RATE {rate!r} is not a DRF rate.",
                hint='Use "<number>/<sec|min|hour|day>", e.g. "200/min", or None.',
                id=E_API_RATE,
            )
        )
    if not isinstance(_value("PRESENCE_SERVER_NAME"), str):
        errors.append(checks.Error("PRESENCE_SERVER_NAME must be a string.", id=E_SERVER_NAME))
    ping, offline = _value("PRESENCE_PING_INTERVAL_SECS"), _value("PRESENCE_OFFLINE_THRESHOLD_SECS")
    if isinstance(ping, int) and isinstance(offline, int) and 3 * ping + 20 > offline:
        errors.append(
            checks.Error(
                f"3 * PRESENCE_PING_INTERVAL_SECS + 20 ({3 * ping + 20}) exceeds "
                f"PRESENCE_OFFLINE_THRESHOLD_SECS ({offline}).",
                hint="Clients would show online users as offline between two pings.",
                id=E_THRESHOLD_INVARIANT,
            )
        )
    if not apps.is_installed("rest_framework"):
        errors.append(
            checks.Error(
                "django_presence needs Django REST framework.",
                hint='Add "rest_framework" to INSTALLED_APPS.',
                id=E_DRF_NOT_INSTALLED,
            )
        )
    uses_sqlite = any("sqlite3" in db.get("ENGINE", "") for db in settings.DATABASES.values())
    if uses_sqlite and sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        errors.append(
            checks.Error(
                f"SQLite {sqlite3.sqlite_version} is too old for django_presence.",
                hint="Use SQLite 3.35 or later (or PostgreSQL).",
                id=E_SQLITE_TOO_OLD,
            )
        )
    return errors


def register() -> None:
    checks.register(check_settings, "django_presence")
