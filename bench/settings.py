"""Django settings of the benchmark: the example project on PostgreSQL, in production mode.

The database comes from BENCH_PG_NAME (set by ``python -m bench``), on the server at
PRESENCE_TEST_PG_HOST/PORT/USER like the test suite. ROOT_URLCONF adds the bench-only no-op
endpoint to the example project's URLs.
"""

from __future__ import annotations

import os

from example_project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "presence_bench"),
        "USER": os.environ.get("PRESENCE_TEST_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("PRESENCE_TEST_PG_PASSWORD", ""),
        "HOST": os.environ.get("PRESENCE_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("PRESENCE_TEST_PG_PORT", "5432"),
        # Persistent connections under WSGI, as production has them; none under ASGI, where
        # Django cannot reuse them (each request may run in another thread).
        "CONN_MAX_AGE": int(os.environ.get("BENCH_CONN_MAX_AGE", "600")),
    }
}

# The throttle runs on every request (as in production) but never refuses: the load tests
# send far more than 200 requests a minute from some users.
PRESENCE_API_RATE = "1000000/min"

# The sweeper of status transitions runs in no benchmarked process: its thread would add its
# own CPU to what the figures measure, and outlive the smoke run's database.
PRESENCE_TIMERS_IN_PROCESS = False

LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
