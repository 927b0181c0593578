"""Several app processes sharing one PostgreSQL database (docs/scaling.md): a report made to one
server process is seen by an incremental poll made to another. The servers are the example
project with EXAMPLE_PG_NAME, on a database of their own that the test creates and drops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port

from .example_postgres import REQUIRES_POSTGRES

TIMEOUT = 10  # seconds, for every request

pytestmark = [pytest.mark.e2e, REQUIRES_POSTGRES]


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


def test_a_report_to_one_process_is_seen_by_a_poll_on_another(example_pg_database, tmp_path: Path):
    unused_sqlite = tmp_path / "unused.sqlite3"
    env = {"EXAMPLE_PG_NAME": example_pg_database}
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
