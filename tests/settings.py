"""Settings for the test suite. SQLite by default; PRESENCE_TEST_DATABASE=postgres switches to
the PostgreSQL server at PRESENCE_TEST_PG_HOST (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "django-presence-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_presence",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("PRESENCE_TEST_DATABASE") == "postgres":
    DATABASES: dict[str, dict[str, Any]] = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PRESENCE_TEST_PG_NAME", "django_presence"),
            "USER": os.environ.get("PRESENCE_TEST_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("PRESENCE_TEST_PG_PASSWORD", ""),
            "HOST": os.environ.get("PRESENCE_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("PRESENCE_TEST_PG_PORT", "5432"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            # Writers take the lock at BEGIN, so read-then-write transactions never fail
            # with "database is locked" half way (see docs/concurrency.md).
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        }
    }

# The same database under a second alias, as a read replica would be (tests/test_read_replica.py).
DATABASES["replica"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}


# The per-user API rate limit is tested on its own; elsewhere it would only add noise.
PRESENCE_API_RATE = None

# The tests sweep for status transitions themselves (actions.do_announce_due_status_transitions
# with a clock they choose); a sweeper thread would race them on the test database.
PRESENCE_TIMERS_IN_PROCESS = False

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
