"""Settings of the example host project: a plain Django site that adds django-presence.

Made for local use only (fixed secret key, loopback hosts). Environment variables:
EXAMPLE_DB_PATH (the SQLite file), EXAMPLE_DEBUG ("0" turns DEBUG off),
EXAMPLE_PRESENCE_API_RATE (the presence API's per-user rate limit, e.g. "3/min"),
EXAMPLE_EVENT_REDIS_URL and EXAMPLE_EVENT_REDIS_KEY_PREFIX (event queues in Redis),
EXAMPLE_USER_LIMIT_FOR_EVENTS, EXAMPLE_PRESENCE_OFFLINE_THRESHOLD_SECS,
EXAMPLE_PRESENCE_PING_INTERVAL_SECS and EXAMPLE_PRESENCE_UPDATE_MIN_FREQ_SECONDS (the PRESENCE_*
settings of the same names), EXAMPLE_TRANSITIONS_LOG (a file the demo app appends each
presence_status_changed to), EXAMPLE_USER_STATUS_LOG (the same for user_status_changed), and
EXAMPLE_PG_NAME (a PostgreSQL database instead of the SQLite
file; see docs/example-project.md).
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-presence-example-project-not-for-production"
DEBUG = os.environ.get("EXAMPLE_DEBUG", "1") != "0"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's files, served by the site itself: the docs page fetches nothing elsewhere.
    "drf_spectacular_sidecar",
    "django_presence",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

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

WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH", str(BASE_DIR / "db.sqlite3")),
        # Writers take the lock at BEGIN, so two presence reports arriving together wait for
        # each other instead of failing with "database is locked" (docs/concurrency.md).
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
# PostgreSQL instead, shared by every process started with the same EXAMPLE_PG_NAME
# (docs/scaling.md): the server at EXAMPLE_PG_HOST:EXAMPLE_PG_PORT, user EXAMPLE_PG_USER.
if "EXAMPLE_PG_NAME" in os.environ:
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["EXAMPLE_PG_NAME"],
        "HOST": os.environ.get("EXAMPLE_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("EXAMPLE_PG_PORT", "5432"),
        "USER": os.environ.get("EXAMPLE_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("EXAMPLE_PG_PASSWORD", ""),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "static/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "index"

# Guests see only the members they share an auth Group with, as in the seeded demo realm.
PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
PRESENCE_SERVER_NAME = "django-presence example"

# The OpenAPI schema at /api/schema/ and its Swagger UI page at /api/schema/swagger-ui/
# (docs/api.md, "OpenAPI schema").
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "django-presence",
    "DESCRIPTION": "Zulip's presence API, as served by django-presence.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # In place of the default hook, which would name each field's "true"/"false" enum apart.
    "POSTPROCESSING_HOOKS": ["django_presence.schema.postprocess_schema"],
    # Tags by the first path segment under the API root: users, realm, register, ...
    "SCHEMA_PATH_PREFIX": "/api/v1/",
}

if "EXAMPLE_PRESENCE_API_RATE" in os.environ:
    PRESENCE_API_RATE = os.environ["EXAMPLE_PRESENCE_API_RATE"]

# Presence events (docs/events.md): in this process by default; with EXAMPLE_EVENT_REDIS_URL set,
# in Redis, shared by every server process started with the same URL and key prefix.
if "EXAMPLE_EVENT_REDIS_URL" in os.environ:
    PRESENCE_EVENT_BACKEND = "django_presence.events.backends.redis.RedisBackend"
    PRESENCE_EVENT_REDIS_URL = os.environ["EXAMPLE_EVENT_REDIS_URL"]
    PRESENCE_EVENT_REDIS_KEY_PREFIX = os.environ.get("EXAMPLE_EVENT_REDIS_KEY_PREFIX", "example")
if "EXAMPLE_USER_LIMIT_FOR_EVENTS" in os.environ:
    PRESENCE_USER_LIMIT_FOR_EVENTS = int(os.environ["EXAMPLE_USER_LIMIT_FOR_EVENTS"])
# Presence timing in seconds (docs/configuration.md); the browser test makes presence change
# within seconds instead of minutes.
if "EXAMPLE_PRESENCE_OFFLINE_THRESHOLD_SECS" in os.environ:
    PRESENCE_OFFLINE_THRESHOLD_SECS = int(os.environ["EXAMPLE_PRESENCE_OFFLINE_THRESHOLD_SECS"])
if "EXAMPLE_PRESENCE_PING_INTERVAL_SECS" in os.environ:
    PRESENCE_PING_INTERVAL_SECS = int(os.environ["EXAMPLE_PRESENCE_PING_INTERVAL_SECS"])
if "EXAMPLE_PRESENCE_UPDATE_MIN_FREQ_SECONDS" in os.environ:
    PRESENCE_UPDATE_MIN_FREQ_SECONDS = int(os.environ["EXAMPLE_PRESENCE_UPDATE_MIN_FREQ_SECONDS"])
