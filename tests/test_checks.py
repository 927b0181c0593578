"""One test per system check id, plus uniqueness and a real `manage.py check` failure."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_presence import checks
from django_presence.conf import DEFAULTS


def check_ids() -> list[str]:
    return [message.id for message in checks.check_settings()]


def test_defaults_pass():
    assert check_ids() == []


@pytest.mark.parametrize(("setting", "check_id"), sorted(checks.POSITIVE_INT_SETTINGS.items()))
@pytest.mark.parametrize("bad_value", [0, -5, "60", True, None])
def test_positive_int_settings(setting, check_id, bad_value):
    with override_settings(**{setting: bad_value}):
        ids = check_ids()
    assert check_id in ids


@pytest.mark.parametrize("bad_value", [0, -5, "60", True])
def test_user_limit_for_events_must_be_a_positive_int(bad_value):
    with override_settings(PRESENCE_USER_LIMIT_FOR_EVENTS=bad_value):
        assert check_ids() == [checks.E_USER_LIMIT_FOR_EVENTS]


@pytest.mark.parametrize("value", [1, 100_000, None])
def test_user_limit_for_events_may_be_none(value):
    with override_settings(PRESENCE_USER_LIMIT_FOR_EVENTS=value):
        assert check_ids() == []


def test_limit_to_accessible_users_must_be_bool():
    with override_settings(PRESENCE_LIMIT_TO_ACCESSIBLE_USERS="yes"):
        assert check_ids() == [checks.E_LIMIT_TO_ACCESSIBLE_USERS]


@pytest.mark.parametrize("path", ["nowhere.Adapter", None])
def test_access_adapter_must_import(path):
    with override_settings(PRESENCE_ACCESS_ADAPTER=path):
        assert check_ids() == [checks.E_ACCESS_ADAPTER]


@pytest.mark.parametrize("rate", ["lots", "200", "200/fortnight", 200])
def test_api_rate_must_be_a_drf_rate(rate):
    with override_settings(PRESENCE_API_RATE=rate):
        assert check_ids() == [checks.E_API_RATE]


@pytest.mark.parametrize("rate", [None, "200/min", "5/s", "1000/hour", "10/day"])
def test_api_rate_accepts_drf_rates(rate):
    with override_settings(PRESENCE_API_RATE=rate):
        assert check_ids() == []


def test_server_name_must_be_str():
    with override_settings(PRESENCE_SERVER_NAME=42):
        assert check_ids() == [checks.E_SERVER_NAME]


def test_threshold_invariant():
    # 3 * 60 + 20 = 200: the default is exactly on the boundary and passes.
    with override_settings(PRESENCE_OFFLINE_THRESHOLD_SECS=199):
        assert check_ids() == [checks.E_THRESHOLD_INVARIANT]
    with override_settings(PRESENCE_PING_INTERVAL_SECS=30, PRESENCE_OFFLINE_THRESHOLD_SECS=110):
        assert check_ids() == []


def test_drf_must_be_installed(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "rest_framework"]
    assert checks.E_DRF_NOT_INSTALLED in check_ids()


def test_sqlite_must_support_returning(monkeypatch):
    monkeypatch.setattr(checks.sqlite3, "sqlite_version_info", (3, 34, 1))
    # A stand-in settings object: overriding DATABASES in a live test run is unsafe.
    for engine, expected in (("sqlite3", [checks.E_SQLITE_TOO_OLD]), ("postgresql", [])):
        databases = {"default": {"ENGINE": f"django.db.backends.{engine}"}}
        monkeypatch.setattr(checks, "settings", SimpleNamespace(DATABASES=databases))
        assert check_ids() == expected


@pytest.mark.parametrize("path", ["nowhere.Backend", None])
def test_event_backend_must_import(path):
    with override_settings(PRESENCE_EVENT_BACKEND=path):
        assert check_ids() == [checks.E_EVENT_BACKEND]


@pytest.mark.parametrize("path", ["django_presence.adapter.DefaultAccessAdapter", "os.path"])
def test_event_backend_must_be_an_event_backend(path):
    with override_settings(PRESENCE_EVENT_BACKEND=path):
        messages = checks.check_settings()
    assert [(m.id, m.msg) for m in messages] == [
        (checks.E_EVENT_BACKEND_CLASS, f"PRESENCE_EVENT_BACKEND {path!r} is not an event backend.")
    ]


def test_event_backend_accepts_both_backends():
    for path in (
        "django_presence.events.backends.in_process.InProcessBackend",
        "django_presence.events.backends.redis.RedisBackend",
    ):
        with override_settings(PRESENCE_EVENT_BACKEND=path):
            assert check_ids() == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", 6379, None])
def test_event_redis_url_must_be_a_redis_url(url):
    with override_settings(PRESENCE_EVENT_REDIS_URL=url):
        assert check_ids() == [checks.E_EVENT_REDIS_URL]


@pytest.mark.parametrize("url", ["redis://10.0.0.5:6380/2", "rediss://r.example", "unix:///r.sock"])
def test_event_redis_url_accepts_redis_urls(url):
    with override_settings(PRESENCE_EVENT_REDIS_URL=url):
        assert check_ids() == []


@pytest.mark.parametrize("prefix", ["", "my presence", 7, None])
def test_event_redis_key_prefix_must_be_a_word(prefix):
    with override_settings(PRESENCE_EVENT_REDIS_KEY_PREFIX=prefix):
        assert check_ids() == [checks.E_EVENT_REDIS_KEY_PREFIX]


def test_long_poll_must_end_before_the_queue_expires():
    with override_settings(PRESENCE_EVENT_LONG_POLL_SECS=60, PRESENCE_EVENT_QUEUE_TIMEOUT_SECS=60):
        assert check_ids() == [checks.E_LONG_POLL_OUTLIVES_QUEUE]
    with override_settings(PRESENCE_EVENT_LONG_POLL_SECS=30, PRESENCE_EVENT_QUEUE_TIMEOUT_SECS=60):
        assert check_ids() == []


def test_long_poll_must_end_before_zulip_clients_give_up():
    with override_settings(PRESENCE_EVENT_LONG_POLL_SECS=81):
        assert check_ids() == [checks.E_LONG_POLL_OUTLIVES_CLIENT]
    with override_settings(PRESENCE_EVENT_LONG_POLL_SECS=80):
        assert check_ids() == []


@pytest.mark.parametrize("alias", ["nowhere", "", 3, ["default"]])
def test_read_database_must_be_a_database_alias(alias):
    with override_settings(PRESENCE_READ_DATABASE=alias):
        messages = checks.check_settings()
    assert [(m.id, m.msg) for m in messages] == [
        (checks.E_READ_DATABASE, f"PRESENCE_READ_DATABASE {alias!r} is not a DATABASES alias.")
    ]


def test_read_database_accepts_an_alias_or_none():
    for alias in ("default", None):
        with override_settings(PRESENCE_READ_DATABASE=alias):
            assert check_ids() == []


def test_ids_are_unique_and_namespaced():
    ids = [
        *checks.POSITIVE_INT_SETTINGS.values(),
        checks.E_USER_LIMIT_FOR_EVENTS,
        checks.E_LIMIT_TO_ACCESSIBLE_USERS,
        checks.E_ACCESS_ADAPTER,
        checks.E_API_RATE,
        checks.E_SERVER_NAME,
        checks.E_THRESHOLD_INVARIANT,
        checks.E_DRF_NOT_INSTALLED,
        checks.E_SQLITE_TOO_OLD,
        checks.E_EVENT_BACKEND,
        checks.E_EVENT_REDIS_URL,
        checks.E_EVENT_REDIS_KEY_PREFIX,
        checks.E_LONG_POLL_OUTLIVES_QUEUE,
        checks.E_LONG_POLL_OUTLIVES_CLIENT,
        checks.E_READ_DATABASE,
        checks.E_EVENT_BACKEND_CLASS,
        checks.E_TIMERS_IN_PROCESS,
        checks.E_EVENTS_AUTH_CACHE_SECS,
        checks.E_EVENTS_GC_THRESHOLD,
    ]
    assert len(ids) == len(set(ids))
    assert all(check_id.startswith("django_presence.E") for check_id in ids)


def test_every_setting_has_a_check():
    assert {rule.setting for rule in checks.SETTING_RULES} == set(DEFAULTS)


def test_timers_in_process_must_be_a_boolean():
    with override_settings(PRESENCE_TIMERS_IN_PROCESS="no"):
        assert check_ids() == [checks.E_TIMERS_IN_PROCESS]


@pytest.mark.parametrize("value", [-1, "10", True, float("nan"), float("inf"), None])
def test_events_auth_cache_secs_must_be_seconds(value):
    with override_settings(PRESENCE_EVENTS_AUTH_CACHE_SECS=value):
        assert check_ids() == [checks.E_EVENTS_AUTH_CACHE_SECS]


@pytest.mark.parametrize("value", [0, 2.5, 10])
def test_events_auth_cache_secs_takes_seconds(value):
    with override_settings(PRESENCE_EVENTS_AUTH_CACHE_SECS=value):
        assert check_ids() == []


@pytest.mark.parametrize("value", [700, (700, 10), (700, -1, 10), (700, 10, 1.5), "700,10,10"])
def test_events_gc_threshold_must_be_three_counts(value):
    with override_settings(PRESENCE_EVENTS_GC_THRESHOLD=value):
        assert check_ids() == [checks.E_EVENTS_GC_THRESHOLD]


@pytest.mark.parametrize("value", [None, (700, 10, 10), [50_000, 20, 10], (0, 0, 0)])
def test_events_gc_threshold_takes_counts_or_none(value):
    with override_settings(PRESENCE_EVENTS_GC_THRESHOLD=value):
        assert check_ids() == []


def test_check_command_fails_on_bad_setting():
    with (
        override_settings(PRESENCE_OFFLINE_THRESHOLD_SECS=100),
        pytest.raises(SystemCheckError, match="django_presence.E011"),
    ):
        call_command("check")
