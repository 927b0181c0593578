"""What the end-to-end tests add to loopback/ (the example project and servers run for real,
which the benchmarks share)."""

from __future__ import annotations

import os

import pytest

# The example project's processes use their own SQLite file whatever database the test run
# uses, so the tests that start them run once, in the SQLite run.
SQLITE_RUN_ONLY = pytest.mark.skipif(
    os.environ.get("PRESENCE_TEST_DATABASE") == "postgres",
    reason="the example project uses its own SQLite file; covered by the SQLite run",
)
