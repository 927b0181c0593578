"""Several app processes sharing one PostgreSQL database (docs/scaling.md): a report made to one
server process is seen by an incremental poll made to another. The servers are the example
project with EXAMPLE_PG_NAME, on a database of their own that the test creates and drops."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from psycopg import sql

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port

PG_HOST = os.environ.get("PRESENCE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("PRESENCE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("PRESENCE_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("PRESENCE_TEST_PG_PASSWORD", "")
TIMEOUT = 10  # seconds, for every request


def postgres_reachable() -> bool:
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=2).close()
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not postgres_reachable(),
        reason=f"two server processes share one PostgreSQL database; none at {PG_HOST}:{PG_PORT}",
    ),
]


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
def database() -> Iterator[str]:
    base = os.environ.get("PRESENCE_TEST_PG_NAME", "django_presence")
    name = f"{base}_multiprocess_{os.getpid()}"
    with admin_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with admin_connection() as conn:
        drop = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
        conn.execute(sql.SQL(drop).format(sql.Identifier(name)))


def post_presence(url: str, account: Account, **params: str) -> dict[str, object]:
    response = requests.post(
        f"{url}/api/v1/users/me/presence",
        data={"status": "active", **params},
        auth=(account.email, account.api_key),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_report_to_one_process_is_seen_by_a_poll_on_another(database, tmp_path: Path):
    unused_sqlite = tmp_path / "unused.sqlite3"
    env = {"EXAMPLE_PG_NAME": database}
    manage(unused_sqlite, "migrate", **env)
    accounts = create_accounts(unused_sqlite, {"alice": "multi", "bob": "multi"}, **env)
    alice, bob = accounts["alice"], accounts["bob"]
    first = ExampleServer(unused_sqlite, free_port(), tmp_path / "first.log", **env)
    try:
        second = ExampleServer(unused_sqlite, free_port(), tmp_path / "second.log", **env)
        try:
            # Alice's client starts on the first process: her own report is update 1.
            start = post_presence(first.url, alice, last_update_id="-1")
            assert (list(start["presences"]), start["presence_last_update_id"]) == (
                [str(alice.user_id)],
                1,
            )
            # Bob reports to the second process only.
            before = int(time.time())
            assert post_presence(second.url, bob, ping_only="true") == {
                "result": "success",
                "msg": "",
            }
            after = int(time.time())
            # Alice's next poll, to the first process, brings Bob's report and update id 2.
            poll = post_presence(first.url, alice, last_update_id="1")
            assert list(poll["presences"]) == [str(bob.user_id)]
            entry = poll["presences"][str(bob.user_id)]  # type: ignore[index]
            assert entry["active_timestamp"] == entry["idle_timestamp"]
            assert before <= entry["active_timestamp"] <= after
            assert poll["presence_last_update_id"] == 2
            # And the same poll answered by the second process is the same.
            again = post_presence(second.url, alice, last_update_id="1")
            assert (again["presences"], again["presence_last_update_id"]) == (
                poll["presences"],
                2,
            )
        finally:
            second.stop()
    finally:
        first.stop()
