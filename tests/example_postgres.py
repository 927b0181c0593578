"""A PostgreSQL database of its own for tests that start example-project processes on it
(EXAMPLE_PG_NAME): created before the test and dropped after, on the server the test run
uses (PRESENCE_TEST_PG_*)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

PG_HOST = os.environ.get("PRESENCE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PRESENCE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("PRESENCE_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("PRESENCE_TEST_PG_PASSWORD", "")


def postgres_reachable() -> bool:
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=2).close()
    except OSError:
        return False
    return True


REQUIRES_POSTGRES = pytest.mark.skipif(
    not postgres_reachable(),
    reason=f"server processes share one PostgreSQL database; none at {PG_HOST}:{PG_PORT}",
)


def admin_connection() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        password=PG_PASSWORD,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture
def example_pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a new, empty database, dropped after the test."""
    base = os.environ.get("PRESENCE_TEST_PG_NAME", "django_presence")
    name = f"{base}_{request.node.name[:20].lower()}_{os.getpid()}"
    with admin_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with admin_connection() as conn:
        drop = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
        conn.execute(sql.SQL(drop).format(sql.Identifier(name)))
