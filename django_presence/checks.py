"""System checks for every PRESENCE_* setting and for Zulip's threshold invariant.

Messages, hints and ids are data; each id is used once (a test keeps it so).
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
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
E_EVENT_BACKEND_CLASS = "django_presence.E022"
E_TIMERS_IN_PROCESS = "django_presence.E023"
E_EVENTS_AUTH_CACHE_SECS = "django_presence.E024"
E_EVENTS_GC_THRESHOLD = "django_presence.E025"

REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
# A long poll must answer this long before the zulip package's own timeout gives up on it.
CLIENT_TIMEOUT_MARGIN_SECS = 10
LONGEST_LONG_POLL_SECS = CLIENT_LONGPOLL_TIMEOUT_SECS - CLIENT_TIMEOUT_MARGIN_SECS

# The write path uses UPDATE ... RETURNING, which SQLite has since 3.35 (Django allows 3.31).
MIN_SQLITE_VERSION = (3, 35, 0)


# What DRF's SimpleRateThrottle.parse_rate accepts: a count, then a period by its first letter.
DRF_RATE = re.compile(r"[0-9]+/[smhd][a-z]*")

# A rule's test: None when the value passes, else why it fails ("" when the message needs no
# reason). A message or hint may quote it as {reason}.
RuleTest = Callable[[Any], str | None]


def _value(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def _passes_if(predicate: Callable[[Any], bool]) -> RuleTest:
    """A rule test from a yes/no test, for the rules whose message needs no reason."""
    return lambda value: None if predicate(value) else ""


def _or_none(predicate: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or predicate(value)


def _is_positive_int(value: Any) -> bool:
    # bool is an int subclass, but True is no number of seconds.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_seconds(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _is_gc_threshold(value: Any) -> bool:
    return (
        isinstance(value, tuple | list)
        and len(value) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
    )


def _is_drf_rate(value: Any) -> bool:
    return isinstance(value, str) and DRF_RATE.fullmatch(value) is not None


def _is_database_alias(value: Any) -> bool:
    return isinstance(value, str) and value in settings.DATABASES


def _is_redis_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(REDIS_URL_SCHEMES)


def _is_redis_key_prefix(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not any(c.isspace() for c in value)


def _import_error(path: Any) -> str | None:
    try:
        import_string(path)
    except (AttributeError, ImportError, TypeError, ValueError) as exc:
        # AttributeError: import_string splits its argument, which a non-string cannot do.
        return str(exc)
    return None


def _is_event_backend(path: Any) -> bool:
    imported = import_string(path)
    return isinstance(imported, type) and issubclass(imported, EventBackend)


@dataclass(frozen=True)
class SettingRule:
    """One rule of one setting. ``message`` and ``hint`` are str.format templates with the
    fields name, value, default and reason (what ``test`` returned)."""

    setting: str
    id: str
    test: RuleTest
    message: str
    hint: str | None = None


# Each setting's rules, in order: a setting's first failing rule is its error, and the rules
# after it are not tried (they may assume what it tested, e.g. that the value imports).
SETTING_RULES: tuple[SettingRule, ...] = (
    *(
        SettingRule(
            name,
            check_id,
            _passes_if(_is_positive_int),
            "{name} must be a positive integer, not {value!r}.",
            hint="Remove it to use the default ({default}).",
        )
        for name, check_id in POSITIVE_INT_SETTINGS.items()
    ),
    SettingRule(
        "PRESENCE_EVENT_LONG_POLL_SECS",
        E_LONG_POLL_OUTLIVES_CLIENT,
        _passes_if(lambda value: value <= LONGEST_LONG_POLL_SECS),
        f"{{name}} ({{value}}) exceeds {LONGEST_LONG_POLL_SECS}.",
        hint=f"Zulip clients give up on GET events after {CLIENT_LONGPOLL_TIMEOUT_SECS} s.",
    ),
    SettingRule(
        "PRESENCE_EVENTS_AUTH_CACHE_SECS",
        E_EVENTS_AUTH_CACHE_SECS,
        _passes_if(_is_seconds),
        "{name} must be a number of seconds, 0 or more, not {value!r}.",
        hint="Remove it to use the default ({default}); 0 authenticates every poll afresh.",
    ),
    SettingRule(
        "PRESENCE_EVENTS_GC_THRESHOLD",
        E_EVENTS_GC_THRESHOLD,
        _passes_if(_or_none(_is_gc_threshold)),
        "{name} must be three whole numbers, 0 or more, or None, not {value!r}.",
        hint="Remove it to use the default {default}; None leaves Python's thresholds.",
    ),
    SettingRule(
        "PRESENCE_USER_LIMIT_FOR_EVENTS",
        E_USER_LIMIT_FOR_EVENTS,
        _passes_if(_or_none(_is_positive_int)),
        "{name} must be a positive integer or None, not {value!r}.",
        hint="Remove it to use the default ({default}); None sends events whatever the size.",
    ),
    *(
        SettingRule(
            name,
            check_id,
            _passes_if(lambda value: isinstance(value, bool)),
            "{name} must be True or False.",
        )
        for name, check_id in (
            ("PRESENCE_LIMIT_TO_ACCESSIBLE_USERS", E_LIMIT_TO_ACCESSIBLE_USERS),
            ("PRESENCE_TIMERS_IN_PROCESS", E_TIMERS_IN_PROCESS),
        )
    ),
    SettingRule(
        "PRESENCE_ACCESS_ADAPTER",
        E_ACCESS_ADAPTER,
        _import_error,
        "{name} {value!r} cannot be imported: {reason}.",
        hint="Name a subclass of django_presence.adapter.DefaultAccessAdapter.",
    ),
    SettingRule(
        "PRESENCE_API_RATE",
        E_API_RATE,
        _passes_if(_or_none(_is_drf_rate)),
        "{name} {value!r} is not a DRF rate.",
        hint='Use "<number>/<sec|min|hour|day>", e.g. "200/min", or None.',
    ),
    SettingRule(
        "PRESENCE_SERVER_NAME",
        E_SERVER_NAME,
        _passes_if(lambda value: isinstance(value, str)),
        "{name} must be a string.",
    ),
    SettingRule(
        "PRESENCE_READ_DATABASE",
        E_READ_DATABASE,
        _passes_if(_or_none(_is_database_alias)),
        "{name} {value!r} is not a DATABASES alias.",
        hint="Name an alias of DATABASES (e.g. a read replica), or None.",
    ),
    SettingRule(
        "PRESENCE_EVENT_BACKEND",
        E_EVENT_BACKEND,
        _import_error,
        "{name} {value!r} cannot be imported: {reason}.",
        hint="The Redis backend needs the redis package: pip install 'django-presence[redis]'.",
    ),
    SettingRule(
        "PRESENCE_EVENT_BACKEND",
        E_EVENT_BACKEND_CLASS,
        _passes_if(_is_event_backend),
        "{name} {value!r} is not an event backend.",
        hint="Name a subclass of django_presence.events.backends.EventBackend.",
    ),
    SettingRule(
        "PRESENCE_EVENT_REDIS_URL",
        E_EVENT_REDIS_URL,
        _passes_if(_is_redis_url),
        "{name} {value!r} is not a Redis URL.",
        hint='Use "redis://host:port/db", "rediss://..." or "unix:///path?db=0".',
    ),
    SettingRule(
        "PRESENCE_EVENT_REDIS_KEY_PREFIX",
        E_EVENT_REDIS_KEY_PREFIX,
        _passes_if(_is_redis_key_prefix),
        "{name} {value!r} must be a non-empty string without white space.",
    ),
)


def _setting_errors() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    failed: set[str] = set()
    for rule in SETTING_RULES:
        if rule.setting in failed:
            continue
        value = _value(rule.setting)
        reason = rule.test(value)
        if reason is None:
            continue
        failed.add(rule.setting)
        fields = {
            "name": rule.setting,
            "value": value,
            "default": DEFAULTS[rule.setting],
            "reason": reason,
        }
        hint = rule.hint.format(**fields) if rule.hint is not None else None
        errors.append(checks.Error(rule.message.format(**fields), hint=hint, id=rule.id))
    return errors


# The checks that involve more than one setting, or the environment; each returns its error
# or None.


def _threshold_invariant() -> checks.CheckMessage | None:
    ping, offline = _value("PRESENCE_PING_INTERVAL_SECS"), _value("PRESENCE_OFFLINE_THRESHOLD_SECS")
    if not (isinstance(ping, int) and isinstance(offline, int) and 3 * ping + 20 > offline):
        return None
    return checks.Error(
        f"3 * PRESENCE_PING_INTERVAL_SECS + 20 ({3 * ping + 20}) exceeds "
        f"PRESENCE_OFFLINE_THRESHOLD_SECS ({offline}).",
        hint="Clients would show online users as offline between two pings.",
        id=E_THRESHOLD_INVARIANT,
    )


def _long_poll_outlives_queue() -> checks.CheckMessage | None:
    long_poll = _value("PRESENCE_EVENT_LONG_POLL_SECS")
    timeout = _value("PRESENCE_EVENT_QUEUE_TIMEOUT_SECS")
    if not (isinstance(long_poll, int) and isinstance(timeout, int) and long_poll >= timeout):
        return None
    return checks.Error(
        f"PRESENCE_EVENT_LONG_POLL_SECS ({long_poll}) must be shorter than "
        f"PRESENCE_EVENT_QUEUE_TIMEOUT_SECS ({timeout}).",
        hint="A queue would expire while its client waits on it.",
        id=E_LONG_POLL_OUTLIVES_QUEUE,
    )


def _drf_installed() -> checks.CheckMessage | None:
    if apps.is_installed("rest_framework"):
        return None
    return checks.Error(
        "django_presence needs Django REST framework.",
        hint='Add "rest_framework" to INSTALLED_APPS.',
        id=E_DRF_NOT_INSTALLED,
    )


def _sqlite_recent_enough() -> checks.CheckMessage | None:
    uses_sqlite = any("sqlite3" in db.get("ENGINE", "") for db in settings.DATABASES.values())
    if not uses_sqlite or sqlite3.sqlite_version_info >= MIN_SQLITE_VERSION:
        return None
    return checks.Error(
        f"SQLite {sqlite3.sqlite_version} is too old for django_presence.",
        hint="Use SQLite 3.35 or later (or PostgreSQL).",
        id=E_SQLITE_TOO_OLD,
    )


CROSS_CHECKS: tuple[Callable[[], checks.CheckMessage | None], ...] = (
    _threshold_invariant,
    _long_poll_outlives_queue,
    _drf_installed,
    _sqlite_recent_enough,
)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    cross_errors = (check() for check in CROSS_CHECKS)
    return [*_setting_errors(), *(error for error in cross_errors if error is not None)]


def register() -> None:
    checks.register(check_settings, "django_presence")
