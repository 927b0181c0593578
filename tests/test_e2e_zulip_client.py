"""End to end: the example project in a real server process, driven by the unmodified ``zulip``
package (and by raw ``requests`` where status codes and headers matter, since the client
hides them).

The server runs on its own SQLite file whatever database the suite uses, so the module runs in
the SQLite run only; on the PostgreSQL run it would repeat the same requests.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zulip

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port

from .api_utils import legacy_entry
from .e2e_server import SQLITE_RUN_ONLY

pytestmark = [
    pytest.mark.e2e,
    SQLITE_RUN_ONLY,
]

TIMEOUT = 10  # seconds, for every raw request
ALICE, BOB, CAROL, DAVE, GINA = (
    f"{name}@example.com" for name in ("alice", "bob", "carol", "dave", "gina")
)
BOT = "presence-bot@example.com"
ADMIN = "admin@example.com"
# Everyone seed_demo gives a presence row; bots never have one.
SEEDED_WITH_PRESENCE = {ALICE, BOB, CAROL, DAVE, GINA}
INVISIBLE_BACKDATE_SECS = 200 + 55 + 10

# The demo realm's members, by email.
USER_IDS_SCRIPT = """
import json
from django_presence.models import RealmMember
members = RealmMember.objects.filter(realm__string_id="demo")
print(json.dumps({member.email: member.user_id for member in members}))
"""


@dataclass(frozen=True)
class Seeded:
    port: int
    seed_output: str
    revoked_key: str  # alice's key from the first seed_demo run
    alice_key: str
    tester: Account
    invisible: Account
    user_ids: dict[str, int]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, Path, Path]]:
    """Migrate and seed (twice: seed_demo must be idempotent) a fresh SQLite file, and a copy
    of it for the rate-limited server."""
    directory = tmp_path_factory.mktemp("example")
    db_path = directory / "example.sqlite3"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    manage(db_path, "migrate", "--verbosity=0")
    first_output = manage(db_path, "seed_demo", "--url", url)
    seed_output = manage(db_path, "seed_demo", "--url", url)
    # Two extra accounts, made through the app's actions: a tester in the demo realm with no
    # presence yet, and a member of another realm for invisible mode and cross-realm lookups.
    accounts = create_accounts(db_path, {"e2e-tester": "demo", "e2e-invisible": "e2e-other"})
    user_ids = json.loads(manage(db_path, "shell", "--no-imports", "-c", USER_IDS_SCRIPT))
    limited_db_path = directory / "limited.sqlite3"
    shutil.copyfile(db_path, limited_db_path)
    yield (
        Seeded(
            port=port,
            seed_output=seed_output,
            revoked_key=printed_api_key(first_output)[1],
            alice_key=printed_api_key(seed_output)[1],
            tester=accounts["e2e-tester"],
            invisible=accounts["e2e-invisible"],
            user_ids=user_ids,
        ),
        db_path,
        limited_db_path,
    )


@pytest.fixture(scope="module")
def seed(seeded: tuple[Seeded, Path, Path]) -> Seeded:
    return seeded[0]


@pytest.fixture(scope="module")
def server(
    seeded: tuple[Seeded, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleServer]:
    seed, db_path, _limited = seeded
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    example = ExampleServer(db_path, seed.port, log_path)
    yield example
    example.stop()


@pytest.fixture(scope="module")
def limited_server(
    seeded: tuple[Seeded, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleServer]:
    """A second server, on a copy of the database, allowing 3 API requests a minute."""
    _seed, _db_path, limited_db_path = seeded
    log_path = tmp_path_factory.mktemp("logs") / "limited.log"
    example = ExampleServer(
        limited_db_path, free_port(), log_path, EXAMPLE_PRESENCE_API_RATE="3/min"
    )
    yield example
    example.stop()


@pytest.fixture(autouse=True)
def no_zulip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client fills every argument left as None from ZULIP_* variables."""
    for name in list(os.environ):
        if name.startswith("ZULIP_"):
            monkeypatch.delenv(name)


def printed_api_key(seed_output: str) -> tuple[str, str]:
    match = re.search(r"API key:\s+(\S+)\s+(\S+)", seed_output)
    assert match, seed_output
    return match[1], match[2]


def client_for(server: ExampleServer, email: str, api_key: str) -> zulip.Client:
    return zulip.Client(
        email=email,
        api_key=api_key,
        site=server.url,
        config_file=os.devnull,
        retry_on_errors=False,
    )


@pytest.fixture
def tester(server: ExampleServer, seed: Seeded) -> zulip.Client:
    return client_for(server, seed.tester.email, seed.tester.api_key)


def single_user_entry(status: str, aggregated: str, timestamp: int) -> dict[str, Any]:
    """The legacy part of GET users/<id>/presence (beside Zulip 12's modern timestamps)."""
    return {
        "website": {"status": status, "timestamp": timestamp},
        "aggregated": {"status": aggregated, "timestamp": timestamp},
    }


def legacy_part(presence: dict[str, Any]) -> dict[str, Any]:
    """The legacy keys of a single-user entry, after checking its modern ones (Zulip 12.0,
    feature level 497): an active legacy status is at the last active time."""
    assert isinstance(presence["active_timestamp"], int)
    assert isinstance(presence["idle_timestamp"], int)
    if presence["website"]["status"] == "active":
        assert presence["active_timestamp"] == presence["website"]["timestamp"]
    return {key: presence[key] for key in ("website", "aggregated")}


def assert_close(timestamp: int, expected: float, slack: float = 60) -> None:
    """Timestamps of seeded reports are only known to within the test run's duration."""
    assert isinstance(timestamp, int)
    assert expected - slack <= timestamp <= expected + 1, (timestamp, expected)


def api(server: ExampleServer, path: str) -> str:
    return f"{server.url}/api/v1/{path}"


# seed_demo -----------------------------------------------------------------------------------


def test_seed_demo_prints_the_login_and_the_key(seed: Seeded) -> None:
    url = f"http://127.0.0.1:{seed.port}"
    assert f"Site:     {url}/\n" in seed.seed_output
    assert f"Admin:    {url}/admin/  (username admin, password admin)\n" in seed.seed_output
    assert f"API key:  {ALICE}  {seed.alice_key}\n" in seed.seed_output
    assert re.fullmatch(r"[A-Za-z0-9]{32}", seed.alice_key)
    # The second run added nobody (the tester comes from create_accounts).
    assert set(seed.user_ids) == {ALICE, BOB, CAROL, DAVE, GINA, BOT, ADMIN, seed.tester.email}


def test_the_printed_snippet_runs(server: ExampleServer, seed: Seeded) -> None:
    snippet = seed.seed_output.split("Try it with the zulip client (pip install zulip):\n")[1]
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZULIP_")}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(snippet)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("'result': 'success'") == 2, result.stdout


def test_the_key_of_the_first_seed_run_is_revoked(server: ExampleServer, seed: Seeded) -> None:
    response = requests.get(
        api(server, "realm/presence"), auth=(ALICE, seed.revoked_key), timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert response.json() == {"result": "error", "msg": "Invalid API key", "code": "UNAUTHORIZED"}


# The presence endpoints through the zulip client ---------------------------------------------


def test_update_presence_legacy(tester: zulip.Client, seed: Seeded) -> None:
    before = time.time()
    result = tester.update_presence({"status": "active"})
    assert set(result) == {
        "result",
        "msg",
        "presences",
        "server_timestamp",
        "presence_last_update_id",
    }
    assert (result["result"], result["msg"]) == ("success", "")
    assert isinstance(result["server_timestamp"], float)
    assert isinstance(result["presence_last_update_id"], int)
    presences = result["presences"]
    assert set(presences) == SEEDED_WITH_PRESENCE | {seed.tester.email}
    own = presences[seed.tester.email]
    assert own == legacy_entry("active", own["aggregated"]["timestamp"])
    assert_close(own["aggregated"]["timestamp"], before)
    # seed_demo's people: bob was active 20 minutes ago and connected since, carol 2 hours ago.
    assert presences[BOB] == legacy_entry("idle", presences[BOB]["website"]["timestamp"])
    assert presences[CAROL] == legacy_entry("active", presences[CAROL]["website"]["timestamp"])
    assert_close(presences[CAROL]["website"]["timestamp"], before - 2 * 3600, slack=300)


def test_update_presence_modern(tester: zulip.Client, seed: Seeded) -> None:
    result = tester.update_presence({"status": "active", "last_update_id": -1})
    assert set(result) == {
        "result",
        "msg",
        "presences",
        "server_timestamp",
        "presence_last_update_id",
    }
    presences = result["presences"]
    expected_ids = SEEDED_WITH_PRESENCE | {seed.tester.email}
    assert set(presences) == {str(seed.user_ids[email]) for email in expected_ids}
    for entry in presences.values():
        assert set(entry) == {"active_timestamp", "idle_timestamp"}
        assert all(isinstance(value, int) for value in entry.values())
    last_update_id = result["presence_last_update_id"]
    assert isinstance(last_update_id, int)
    assert last_update_id >= len(expected_ids)

    # A second active report within 55 seconds writes nothing: no changes, same id.
    again = tester.update_presence({"status": "active", "last_update_id": last_update_id})
    assert again["presences"] == {}
    assert again["presence_last_update_id"] == last_update_id


def test_update_presence_ping_only(tester: zulip.Client) -> None:
    assert tester.update_presence({"status": "idle", "ping_only": True}) == {
        "result": "success",
        "msg": "",
    }


def test_get_realm_presence_is_legacy(tester: zulip.Client, seed: Seeded) -> None:
    result = tester.get_realm_presence()
    assert set(result) == {"result", "msg", "presences", "server_timestamp"}
    assert (result["result"], result["msg"]) == ("success", "")
    assert set(result["presences"]) - {seed.tester.email} == SEEDED_WITH_PRESENCE
    alice = result["presences"][ALICE]
    assert alice == legacy_entry("active", alice["website"]["timestamp"])


def test_get_user_presence_by_email_and_by_id(tester: zulip.Client, seed: Seeded) -> None:
    by_email = tester.get_user_presence(ALICE)
    timestamp = by_email["presence"]["website"]["timestamp"]
    assert list(by_email) == ["result", "msg", "server_timestamp", "presence"]
    assert isinstance(by_email["server_timestamp"], float)
    assert legacy_part(by_email["presence"]) == single_user_entry("active", "active", timestamp)
    by_id = tester.get_user_presence(seed.user_ids[CAROL])
    timestamp = by_id["presence"]["website"]["timestamp"]
    # Active two hours ago, and nothing since: offline.
    assert legacy_part(by_id["presence"]) == single_user_entry("active", "offline", timestamp)


def test_invisible_mode_through_settings(server: ExampleServer, seed: Seeded) -> None:
    client = client_for(server, seed.invisible.email, seed.invisible.api_key)
    email = seed.invisible.email
    client.update_presence({"status": "active"})
    assert client.get_user_presence(email)["presence"]["aggregated"]["status"] == "active"

    before = time.time()
    assert client.call_endpoint(
        url="settings", method="PATCH", request={"presence_enabled": False}
    ) == {"result": "success", "msg": ""}
    hidden = client.get_user_presence(email)["presence"]
    timestamp = hidden["website"]["timestamp"]
    # Backdated far enough to look offline at once.
    assert legacy_part(hidden) == single_user_entry("active", "offline", timestamp)
    assert_close(timestamp, before - INVISIBLE_BACKDATE_SECS, slack=5)
    # Reports are accepted and ignored while invisible.
    client.update_presence({"status": "active"})
    assert client.get_user_presence(email)["presence"] == hidden

    before = time.time()
    assert client.call_endpoint(
        url="settings", method="PATCH", request={"presence_enabled": True}
    ) == {"result": "success", "msg": ""}
    shown = client.get_user_presence(email)["presence"]
    assert legacy_part(shown) == single_user_entry(
        "active", "active", shown["website"]["timestamp"]
    )
    assert_close(shown["website"]["timestamp"], before, slack=5)


@pytest.mark.parametrize(
    ("target", "msg"),
    [
        ("nobody@example.com", "No such user"),
        ("e2e-invisible@example.com", "No such user"),  # a member of another realm
        (BOT, "Presence is not supported for bot users."),
        (ADMIN, "No presence data for admin@example.com"),
    ],
)
def test_errors_come_back_through_the_client(tester: zulip.Client, target: str, msg: str) -> None:
    assert tester.get_user_presence(target) == {
        "result": "error",
        "msg": msg,
        "code": "BAD_REQUEST",
    }


# Status codes and headers, with raw requests -------------------------------------------------


def test_no_credentials_is_401_with_basic_challenge(server: ExampleServer) -> None:
    response = requests.get(api(server, "realm/presence"), timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="zulip"'
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "result": "error",
        "msg": "Not logged in: API authentication or user session required",
        "code": "UNAUTHORIZED",
    }


def test_wrong_api_key_is_401(server: ExampleServer, seed: Seeded) -> None:
    response = requests.post(
        api(server, "users/me/presence"),
        data={"status": "active"},
        auth=(seed.tester.email, "x" * 32),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="zulip"'
    assert response.json() == {"result": "error", "msg": "Invalid API key", "code": "UNAUTHORIZED"}


def test_bad_parameter_is_400(server: ExampleServer, seed: Seeded) -> None:
    response = requests.post(
        api(server, "users/me/presence"),
        data={"status": "active", "ping_only": "1"},
        auth=(seed.tester.email, seed.tester.api_key),
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert response.json() == {
        "result": "error",
        "msg": "ping_only is not a boolean",
        "code": "BAD_REQUEST",
    }


def test_wrong_method_is_405(server: ExampleServer, seed: Seeded) -> None:
    response = requests.get(
        api(server, "users/me/presence"),
        auth=(seed.tester.email, seed.tester.api_key),
        timeout=TIMEOUT,
    )
    assert response.status_code == 405
    assert response.json() == {
        "result": "error",
        "msg": "Method Not Allowed",
        "code": "BAD_REQUEST",
        "allowed_methods": ["POST"],
    }


def test_unknown_api_path_is_json_404(server: ExampleServer, seed: Seeded) -> None:
    response = requests.get(
        api(server, "no/such/endpoint"),
        auth=(seed.tester.email, seed.tester.api_key),
        timeout=TIMEOUT,
    )
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"result": "error", "msg": "Not Found", "code": "BAD_REQUEST"}


def test_server_settings_needs_no_valid_credentials(server: ExampleServer) -> None:
    response = requests.get(
        api(server, "server_settings"), auth=("someone@example.com", "x"), timeout=TIMEOUT
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["result"], body["msg"]) == ("success", "")
    assert isinstance(body["zulip_version"], str)
    assert isinstance(body["zulip_feature_level"], int)
    assert body["realm_url"] == server.url


def test_rate_limit_is_429_with_retry_after(limited_server: ExampleServer, seed: Seeded) -> None:
    auth = (seed.tester.email, seed.tester.api_key)
    url = api(limited_server, "realm/presence")
    for _ in range(3):
        assert requests.get(url, auth=auth, timeout=TIMEOUT).status_code == 200
    response = requests.get(url, auth=auth, timeout=TIMEOUT)
    assert response.status_code == 429
    body = response.json()
    retry_after = body["retry-after"]
    assert body == {
        "result": "error",
        "msg": "API usage exceeded rate limit",
        "code": "RATE_LIMIT_HIT",
        "retry-after": retry_after,
    }
    assert isinstance(retry_after, float)
    assert 0 < retry_after <= 60
    assert response.headers["Retry-After"] == str(math.ceil(retry_after))

    # The client hands the same body back, without waiting or retrying.
    client = client_for(limited_server, seed.tester.email, seed.tester.api_key)
    assert client.get_realm_presence()["code"] == "RATE_LIMIT_HIT"
