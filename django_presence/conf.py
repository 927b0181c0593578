"""Settings of django-presence, from ``django.conf.settings``.

Every setting is a flat ``PRESENCE_*`` name with Zulip's default. Each value is read once and
kept until Django's ``setting_changed`` signal says a setting changed (``override_settings``
and pytest-django's ``settings`` fixture send it): a long poll reads a dozen settings, and
through ``LazySettings`` each read of a setting the host left unset costs a Python-level
``AttributeError``. docs/configuration.md lists them all (a test keeps the two in step).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

# Setting name -> default. The properties below read through this table; checks.py validates it.
DEFAULTS: dict[str, Any] = {
    "PRESENCE_OFFLINE_THRESHOLD_SECS": 200,
    "PRESENCE_PING_INTERVAL_SECS": 60,
    "PRESENCE_UPDATE_MIN_FREQ_SECONDS": 55,
    "PRESENCE_LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS": 70,
    "PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS": 14,
    # Zulip's is 100; the event queues here deliver in one pass per event (docs/events.md).
    "PRESENCE_USER_LIMIT_FOR_EVENTS": 10_000,
    "PRESENCE_LIMIT_TO_ACCESSIBLE_USERS": False,
    "PRESENCE_ACCESS_ADAPTER": "django_presence.adapter.DefaultAccessAdapter",
    "PRESENCE_API_RATE": "200/min",
    "PRESENCE_SERVER_NAME": "Django presence",
    "PRESENCE_READ_DATABASE": None,
    "PRESENCE_EVENT_BACKEND": "django_presence.events.backends.in_process.InProcessBackend",
    "PRESENCE_EVENT_REDIS_URL": "redis://127.0.0.1:6379/0",
    "PRESENCE_EVENT_REDIS_KEY_PREFIX": "presence",
    "PRESENCE_EVENT_QUEUE_TIMEOUT_SECS": 600,
    "PRESENCE_EVENT_LONG_POLL_SECS": 50,
    "PRESENCE_TIMERS_IN_PROCESS": True,
    "PRESENCE_EVENTS_AUTH_CACHE_SECS": 60,
    "PRESENCE_EVENTS_GC_THRESHOLD": (50_000, 20, 10),
}


class PresenceSettings:
    """Typed accessors for the app's settings; each returns the host's value or the default."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            value = self._values[name] = getattr(django_settings, name, DEFAULTS[name])
            return value

    def forget(self) -> None:
        """Read every setting afresh at its next use."""
        self._values.clear()

    @property
    def OFFLINE_THRESHOLD_SECS(self) -> int:
        """Seconds after which clients show a user as offline (Zulip: 200 = 3 * 60 + 20)."""
        return int(self._get("PRESENCE_OFFLINE_THRESHOLD_SECS"))

    @property
    def PING_INTERVAL_SECS(self) -> int:
        """How often clients should report presence (Zulip: 60)."""
        return int(self._get("PRESENCE_PING_INTERVAL_SECS"))

    @property
    def UPDATE_MIN_FREQ_SECONDS(self) -> int:
        """A stored timestamp is only replaced by a report more than this much newer (55)."""
        return int(self._get("PRESENCE_UPDATE_MIN_FREQ_SECONDS"))

    @property
    def LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS(self) -> int:
        """Legacy output says "active" if last_active + this >= last_connected (70)."""
        return int(self._get("PRESENCE_LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS"))

    @property
    def DEFAULT_HISTORY_LIMIT_DAYS(self) -> int:
        """History window of realm reads when the client sends no history_limit_days (14)."""
        return int(self._get("PRESENCE_DEFAULT_HISTORY_LIMIT_DAYS"))

    @property
    def USER_LIMIT_FOR_EVENTS(self) -> int | None:
        """Above this many recipients, unforced presence changes are not published to the event
        queues (10,000; Zulip's cut-off is 100); None: no limit, and no recipient count."""
        value = self._get("PRESENCE_USER_LIMIT_FOR_EVENTS")
        return None if value is None else int(value)

    @property
    def LIMIT_TO_ACCESSIBLE_USERS(self) -> bool:
        """Zulip's CAN_ACCESS_ALL_USERS_GROUP_LIMITS_PRESENCE: limit what viewers see to the
        users the access adapter lets them access (False)."""
        return bool(self._get("PRESENCE_LIMIT_TO_ACCESSIBLE_USERS"))

    @property
    def ACCESS_ADAPTER(self) -> str:
        """Dotted path of the class that decides which users a viewer may access."""
        return str(self._get("PRESENCE_ACCESS_ADAPTER"))

    @property
    def API_RATE(self) -> str | None:
        """DRF throttle rate per user for the presence API ("200/min"); None turns it off."""
        value = self._get("PRESENCE_API_RATE")
        return None if value is None else str(value)

    @property
    def SERVER_NAME(self) -> str:
        """The realm_name that GET server_settings reports ("Django presence")."""
        return str(self._get("PRESENCE_SERVER_NAME"))

    @property
    def READ_DATABASE(self) -> str | None:
        """Database alias (e.g. a read replica) of the realm-wide presence reads; None reads
        where the host's routers say (docs/scaling.md)."""
        value = self._get("PRESENCE_READ_DATABASE")
        return None if value is None else str(value)

    @property
    def EVENT_BACKEND(self) -> str:
        """Dotted path of the event-queue backend: in this process (the default) or Redis."""
        return str(self._get("PRESENCE_EVENT_BACKEND"))

    @property
    def EVENT_REDIS_URL(self) -> str:
        """The Redis server of the Redis event backend ("redis://127.0.0.1:6379/0")."""
        return str(self._get("PRESENCE_EVENT_REDIS_URL"))

    @property
    def EVENT_REDIS_KEY_PREFIX(self) -> str:
        """Prefix of the Redis event backend's keys and channels ("presence")."""
        return str(self._get("PRESENCE_EVENT_REDIS_KEY_PREFIX"))

    @property
    def EVENT_QUEUE_TIMEOUT_SECS(self) -> int:
        """An event queue not polled for this long is deleted (Zulip: 600)."""
        return int(self._get("PRESENCE_EVENT_QUEUE_TIMEOUT_SECS"))

    @property
    def EVENT_LONG_POLL_SECS(self) -> int:
        """A GET events with nothing to return waits this long, then answers with a heartbeat
        (Zulip: 45 to 55)."""
        return int(self._get("PRESENCE_EVENT_LONG_POLL_SECS"))

    @property
    def TIMERS_IN_PROCESS(self) -> bool:
        """Whether each server process sweeps for work that falls due by time alone (status
        transitions, user statuses that end); False when ``manage.py presence_timers`` runs as
        a worker instead."""
        return bool(self._get("PRESENCE_TIMERS_IN_PROCESS"))

    @property
    def EVENTS_AUTH_CACHE_SECS(self) -> float:
        """How long this process remembers an API key that GET or DELETE events authenticated
        with (recent_keys.py): a change no message announced reaches its polls within this
        (60: longer than a long poll); 0 asks the database every time."""
        return float(self._get("PRESENCE_EVENTS_AUTH_CACHE_SECS"))

    @property
    def EVENTS_GC_THRESHOLD(self) -> tuple[int, int, int] | None:
        """The garbage collector's thresholds (``gc.set_threshold``) that
        events.asgi.get_asgi_application sets for the process it serves; None leaves Python's
        (700, 10, 10)."""
        value = self._get("PRESENCE_EVENTS_GC_THRESHOLD")
        return None if value is None else (int(value[0]), int(value[1]), int(value[2]))

    @property
    def CAME_ONLINE_THRESHOLD_SECS(self) -> int:
        """Derived, not a setting: an active report more than this long after the last one
        means the user came online (Zulip: offline threshold - ping interval - 10 = 130)."""
        return self.OFFLINE_THRESHOLD_SECS - self.PING_INTERVAL_SECS - 10

    @property
    def INVISIBLE_BACKDATE_SECS(self) -> int:
        """Derived: how far turning on invisible mode backdates the row (200 + 55 + 10 = 265)."""
        return self.OFFLINE_THRESHOLD_SECS + self.UPDATE_MIN_FREQ_SECONDS + 10


presence_settings = PresenceSettings()


def _on_setting_changed(**kwargs: Any) -> None:
    # Any setting: a PRESENCE_* one, or the whole settings object swapped.
    presence_settings.forget()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_presence.conf.setting_changed")
