"""The benchmark's own PostgreSQL database: created before a run, dropped after it."""

from __future__ import annotations

import os
import socket

import psycopg
from psycopg import sql


def server_params() -> dict[str, str]:
    """Where PostgreSQL is: the test suite's variables, 127.0.0.1:5432 user postgres."""
    return {
        "host": os.environ.get("PRESENCE_TEST_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("PRESENCE_TEST_PG_PORT", "5432"),
        "user": os.environ.get("PRESENCE_TEST_PG_USER", "postgres"),
        "password": os.environ.get("PRESENCE_TEST_PG_PASSWORD", ""),
    }


def reachable() -> bool:
    params = server_params()
    try:
        socket.create_connection((params["host"], int(params["port"])), timeout=2).close()
    except OSError:
        return False
    return True


def connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(dbname=dbname, autocommit=True, **server_params())


def recreate(name: str) -> None:
    drop(name)
    with connect("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(name: str) -> None:
    with connect("postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def server_version() -> str:
    with connect("postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
