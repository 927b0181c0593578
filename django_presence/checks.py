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
from .events.backends import EventBackend
from .events.queues import CLIENT_LONGPOLL_TIMEOUT_SECS

# Positive integer settings, each with its own check id.
POSITIVE_INT_SETTINGS = {
    "PRESENCE_OFFLINE_THRESHOLD_SECS": "django_presence.E001",
    "PRESENCE_PING_INTERVAL_SECS": "django_presence.E002",
    "PRESENCE_UPDATE_MIN_FREQ_SECONDS": "django_presence.E003",
    "PRESENCE_LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS": "django_presence.E004",
    "PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS": "django_presence.E005",
    "PRESENCE_EVENT_QUEUE_TIMEOUT_SECS": "django_presence.E017",
    "PRESENCE_EVENT_LONG_POLL_SECS": "django_presence.E018",
}
E_USER_LIMIT_FOR_EVENTS = "django_presence.E006"
E_LIMIT_TO_ACCESSIBLE_USERS = "django_presence.E007"
E_ACCESS_ADAPTER = "django_presence.E008"
E_API_RATE = "django_presence.E009"
E_SERVER_NAME = "django_presence.E010"
E_THRESHOLD_INVARIANT = "django_presence.E011"
E_DRF_NOT_INSTALLED = "django_presence.E012"
E_SQLITE_TOO_OLD = "django_presence.E013"
E_EVENT_BACKEND = "django_presence.E014"
E_EVENT_REDIS_URL = "django_presence.E015"
E_EVENT_REDIS_KEY_PREFIX = "django_presence.E016"
E_LONG_POLL_OUTLIVES_QUEUE = "django_presence.E019"
E_LONG_POLL_OUTLIVES_CLIENT = "django_presence.E020"
E_READ_DATABASE = "django_presence.E021"

REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
# A long poll must answer this long before the zulip package's own timeout gives up on it.
CLIENT_TIMEOUT_MARGIN_SECS = 10

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
    user_limit = _value("PRESENCE_USER_LIMIT_FOR_EVENTS")
    if user_limit is not None and (
        not isinstance(user_limit, int) or isinstance(user_limit, bool) or user_limit <= 0
    ):
        errors.append(
            checks.Error(
                f"PRESENCE_USER_LIMIT_FOR_EVENTS must be a positive integer or None, "
                f"not {user_limit!r}.",
                hint="Remove it to use the default (100); None sends events whatever the size.",
                id=E_USER_LIMIT_FOR_EVENTS,
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
    read_database = _value("PRESENCE_READ_DATABASE")
    if read_database is not None and (
        not isinstance(read_database, str) or read_database not in settings.DATABASES
    ):
        errors.append(
            checks.Error(
                f"PRESENCE_READ_DATABASE {read_database!r} is not a DATABASES alias.",
                hint="Name an alias of DATABASES (e.g. a read replica), or None.",
                id=E_READ_DATABASE,
            )
        )
    errors.extend(_check_event_settings())
    return errors


def _check_event_settings() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    backend_path = _value("PRESENCE_EVENT_BACKEND")
    try:
        backend_class = import_string(backend_path)
    except (AttributeError, ImportError, TypeError, ValueError) as exc:
        errors.append(
            checks.Error(
                f"PRESENCE_EVENT_BACKEND {backend_path!r} cannot be imported: {exc}.",
                hint="The Redis backend needs the redis package: "
                "pip install 'django-presence[redis]'.",
                id=E_EVENT_BACKEND,
            )
        )
    else:
        if not (isinstance(backend_class, type) and issubclass(backend_class, EventBackend)):
            errors.append(
                checks.Error(
                    f"PRESENCE_EVENT_BACKEND {backend_path!r} is not an event backend.",
                    hint="Name a subclass of django_presence.events.backends.EventBackend.",
                    id=E_EVENT_BACKEND,
                )
            )
    url = _value("PRESENCE_EVENT_REDIS_URL")
    if not isinstance(url, str) or not url.startswith(REDIS_URL_SCHEMES):
        errors.append(
            checks.Error(
                f"PRESENCE_EVENT_REDIS_URL {url!r} is not a Redis URL.",
                hint='Use "redis://host:port/db", "rediss://..." or "unix:///path?db=0".',
                id=E_EVENT_REDIS_URL,
            )
        )
    prefix = _value("PRESENCE_EVENT_REDIS_KEY_PREFIX")
    if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
        errors.append(
            checks.Error(
                f"PRESENCE_EVENT_REDIS_KEY_PREFIX {prefix!r} must be a non-empty string "
                "without white space.",
                id=E_EVENT_REDIS_KEY_PREFIX,
            )
        )
    long_poll = _value("PRESENCE_EVENT_LONG_POLL_SECS")
    timeout = _value("PRESENCE_EVENT_QUEUE_TIMEOUT_SECS")
    if isinstance(long_poll, int) and isinstance(timeout, int) and long_poll >= timeout:
        errors.append(
            checks.Error(
                f"PRESENCE_EVENT_LONG_POLL_SECS ({long_poll}) must be shorter than "
                f"PRESENCE_EVENT_QUEUE_TIMEOUT_SECS ({timeout}).",
                hint="A queue would expire while its client waits on it.",
                id=E_LONG_POLL_OUTLIVES_QUEUE,
            )
        )
    longest_poll = CLIENT_LONGPOLL_TIMEOUT_SECS - CLIENT_TIMEOUT_MARGIN_SECS
    if isinstance(long_poll, int) and long_poll > longest_poll:
        errors.append(
            checks.Error(
                f"PRESENCE_EVENT_LONG_POLL_SECS ({long_poll}) exceeds {longest_poll}.",
                hint=f"Zulip clients give up on GET events after {CLIENT_LONGPOLL_TIMEOUT_SECS} s.",
                id=E_LONG_POLL_OUTLIVES_CLIENT,
            )
        )
    return errors


def register() -> None:
    checks.register(check_settings, "django_presence")
