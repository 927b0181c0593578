"""User status end to end: the example project in real server processes, driven by the unmodified
``zulip`` package (call_endpoint, register, get_events) and the unmodified ``zulip-js`` npm
package (callEndpoint, multipart bodies); and a status that ends on time in the server process,
with the sweeper the process starts itself, then again after a restart (late), and with two
processes on one PostgreSQL database (once).

zulip-js is installed with npm into a temporary folder; without node and npm that test skips
and says so. Runs in the SQLite run only, like the other example-project tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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

from .e2e_server import SQLITE_RUN_ONLY
from .example_postgres import REQUIRES_POSTGRES

# Real server processes, npm and waits for end times: once, in dev.py's own run.
pytestmark = [pytest.mark.e2e, pytest.mark.once, SQLITE_RUN_ONLY]

TIMEOUT = 10  # seconds, for every raw request
PROMPTNESS = 2.0  # seconds: the guarantee of a status's end
ZULIP_JS_VERSION = "2.1.0"
CAR = {"emoji_name": "car", "emoji_code": "1f697", "reaction_type": "unicode_emoji"}
ENDED = {"status_text": "", "emoji_name": "", "emoji_code": "", "reaction_type": "unicode_emoji"}

# Run by manage.py shell: makes the account an administrator of its realm.
MAKE_ADMIN = """
from django_presence.actions import do_change_member_role
from django_presence.models import RealmMember
member = RealmMember.objects.get(user__username=USERNAME)
do_change_member_role(member, RealmMember.Role.ADMINISTRATOR)
"""


@dataclass(frozen=True)
class Site:
    db_path: Path
    log: Path
    env: dict[str, str]
    alice: Account
    bob: Account
    carol: Account
    admin: Account


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    directory = tmp_path_factory.mktemp("status")
    db_path = directory / "example.sqlite3"
    log = directory / "user_status.jsonl"
    manage(db_path, "migrate", "--verbosity=0")
    accounts = create_accounts(
        db_path,
        {"alice": "status", "bob": "status", "carol": "status", "boss": "status"},
    )
    manage(db_path, "shell", "--no-imports", "-c", MAKE_ADMIN.replace("USERNAME", "'boss'"))
    return Site(
        db_path,
        log,
        {"EXAMPLE_USER_STATUS_LOG": str(log)},
        accounts["alice"],
        accounts["bob"],
        accounts["carol"],
        accounts["boss"],
    )


@pytest.fixture(scope="module")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    example = ExampleServer(site.db_path, free_port(), log_path, **site.env)
    yield example
    example.stop()


@pytest.fixture(autouse=True)
def no_zulip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client fills every argument left as None from ZULIP_* variables."""
    for name in list(os.environ):
        if name.startswith("ZULIP_"):
            monkeypatch.delenv(name)


def client_for(server: ExampleServer, account: Account) -> zulip.Client:
    return zulip.Client(
        email=account.email,
        api_key=account.api_key,
        site=server.url,
        config_file=os.devnull,
        retry_on_errors=False,
    )


def clear(client: zulip.Client) -> None:
    body = {"status_text": "", "emoji_name": "", "away": False}
    assert client.call_endpoint(url="/users/me/status", method="POST", request=body)["result"] == (
        "success"
    )


def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in event.items() if k != "id"} for event in events]


def read_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


# The zulip package ---------------------------------------------------------------------------


def test_the_zulip_package(server: ExampleServer, site: Site) -> None:
    alice, bob, boss = (client_for(server, a) for a in (site.alice, site.bob, site.admin))
    alice_id = site.alice.user_id
    queue = bob.register(event_types=["user_status"], fetch_event_types=["user_status"])
    assert queue["result"] == "success"
    assert queue["zulip_feature_level"] == 497
    assert queue["user_status"] == {}

    # Zulip's documentation example, as written there.
    request = {
        "status_text": "on vacation",
        "away": False,
        "emoji_name": "car",
        "emoji_code": "1f697",
        "reaction_type": "unicode_emoji",
    }
    assert alice.call_endpoint(url="/users/me/status", method="POST", request=request) == {
        "result": "success",
        "msg": "",
    }
    assert bob.call_endpoint(url=f"/users/{alice_id}/status", method="GET") == {
        "result": "success",
        "msg": "",
        "status": {"status_text": "on vacation", **CAR},
    }
    # An administrator clears the text; a member may not.
    assert boss.call_endpoint(
        url=f"/users/{alice_id}/status", method="POST", request={"status_text": ""}
    ) == {"result": "success", "msg": ""}
    assert bob.call_endpoint(
        url=f"/users/{alice_id}/status", method="POST", request={"status_text": "x"}
    ) == {"result": "error", "msg": "Insufficient permission", "code": "BAD_REQUEST"}
    assert alice.call_endpoint(
        url="users/me/status", method="POST", request={"status_text": "x" * 61}
    ) == {
        "result": "error",
        "msg": "status_text is too long (limit: 60 characters)",
        "code": "BAD_REQUEST",
    }

    events = bob.get_events(queue_id=queue["queue_id"], last_event_id=-1, dont_block=True)
    assert without_ids(events["events"]) == [
        {
            "type": "user_status",
            "user_id": alice_id,
            "away": False,
            "status_text": "on vacation",
            **CAR,
        },
        {"type": "user_status", "user_id": alice_id, "status_text": ""},
    ]
    state = bob.register(event_types=["user_status"], fetch_event_types=["user_status"])
    assert state["user_status"] == {str(alice_id): CAR}
    clear(alice)


def test_single_user_presence_at_feature_level_497(server: ExampleServer, site: Site) -> None:
    carol, bob = client_for(server, site.carol), client_for(server, site.bob)
    assert carol.update_presence({"status": "active"})["result"] == "success"
    for user in (site.carol.email, site.carol.user_id):
        body = bob.get_user_presence(user)
        assert list(body) == ["result", "msg", "server_timestamp", "presence"]
        presence = body["presence"]
        assert list(presence) == ["active_timestamp", "idle_timestamp", "aggregated", "website"]
        assert presence["website"] == {
            "status": "active",
            "timestamp": presence["active_timestamp"],
        }
        assert presence["aggregated"]["status"] == "active"


# zulip-js --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zulip_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zulip-js from npm, unmodified, in a folder of its own."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the zulip-js test needs Node.js and npm, which this machine lacks")
    folder = tmp_path_factory.mktemp("zulip-js")
    done = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(folder),
            f"zulip-js@{ZULIP_JS_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"npm could not install zulip-js {ZULIP_JS_VERSION}: {done.stderr[-500:]}")
    return folder / "node_modules" / "zulip-js"


# Each call as zulip-js makes it: POSTs as multipart bodies. zulip-js 2.1.0 hands values to
# form-data 2.x as they are, which turns numbers into text but throws on a boolean: a caller
# must write away: "true". The script records what a boolean does, then sends the string.
ZULIP_JS_SCRIPT = r"""
const zulipInit = require(process.env.ZULIP_JS);
(async () => {
  const input = JSON.parse(process.argv[1]);
  const login = (account) =>
    zulipInit({username: account.email, apiKey: account.api_key, realm: input.url});
  const [alice, bob, boss] = await Promise.all([login(input.alice), login(input.bob),
                                                login(input.boss)]);
  const aliceId = input.alice.user_id;
  const out = {};
  out.report = await alice.callEndpoint("/users/me/presence", "POST", {status: "active"});
  out.queue = await bob.queues.register({event_types: ["user_status"],
                                         fetch_event_types: ["user_status"]});
  out.set = await alice.callEndpoint("/users/me/status", "POST",
                                     {status_text: "on vacation", emoji_name: "car"});
  out.awayBoolean = await alice.callEndpoint("/users/me/status", "POST", {away: true}).then(
    (body) => ({body}), (error) => ({thrown: String(error.message)}));
  out.away = await alice.callEndpoint("/users/me/status", "POST", {away: "true"});
  out.get = await bob.callEndpoint(`/users/${aliceId}/status`);
  out.byAdmin = await boss.callEndpoint(`/users/${aliceId}/status`, "POST", {status_text: ""});
  out.byMember = await bob.callEndpoint(`/users/${aliceId}/status`, "POST", {status_text: "x"});
  out.unknown = await alice.callEndpoint("users/me/status", "POST", {emoji_name: "no_such_emoji"});
  out.ends = await alice.callEndpoint("/users/me/status", "POST",
                                      {status_text: "back soon", scheduled_end_time: input.end});
  out.ownView = await alice.callEndpoint(`/users/${aliceId}/status`);
  out.events = await bob.events.retrieve({queue_id: out.queue.queue_id, last_event_id: -1,
                                          dont_block: true});
  out.presence = await bob.callEndpoint(`/users/${input.alice.email}/presence`);
  out.back = await alice.callEndpoint("/users/me/status", "POST",
                                      {away: "false", status_text: "", emoji_name: ""});
  console.log(JSON.stringify(out));
  // The request form-data gave up on stays open: leave without waiting for it.
  process.exit(0);
})().catch((error) => { console.error(error); process.exit(1); });
"""


def test_zulip_js(server: ExampleServer, site: Site, zulip_js: Path) -> None:
    end = int(time.time()) + 3600
    accounts = {
        name: {"email": a.email, "api_key": a.api_key, "user_id": a.user_id}
        for name, a in (("alice", site.alice), ("bob", site.bob), ("boss", site.admin))
    }
    done = subprocess.run(
        [
            shutil.which("node") or "node",
            "-e",
            ZULIP_JS_SCRIPT,
            json.dumps({"url": server.url, "end": end, **accounts}),
        ],
        env={**os.environ, "ZULIP_JS": str(zulip_js)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    ok = {"result": "success", "msg": ""}
    alice_id = site.alice.user_id
    assert out["report"]["result"] == "success"
    assert out["queue"]["user_status"] == {}
    assert out["set"] == ok
    # Either form-data throws on the boolean before anything is sent, or (another version of
    # it) the boolean goes as text and succeeds.
    assert out["awayBoolean"] in (
        {"thrown": out["awayBoolean"].get("thrown", "")},
        {"body": ok},
    )
    assert out["away"] == ok
    assert out["get"] == {**ok, "status": {"away": True, "status_text": "on vacation", **CAR}}
    assert out["byAdmin"] == ok
    error = {"result": "error", "code": "BAD_REQUEST"}
    assert out["byMember"] == {**error, "msg": "Insufficient permission"}
    assert out["unknown"] == {**error, "msg": "Emoji 'no_such_emoji' does not exist"}
    assert out["ends"] == ok
    assert out["ownView"]["status"] == {
        "away": True,
        "status_text": "back soon",
        **CAR,
        "scheduled_end_time": end,
    }
    event = {"type": "user_status", "user_id": alice_id}
    assert without_ids(out["events"]["events"]) == [
        {**event, "status_text": "on vacation", **CAR},
        {**event, "away": True},
        {**event, "status_text": ""},
        # The end time is the owner's: bob's queue does not get it.
        {**event, "status_text": "back soon"},
    ]
    # Invisible: the presence answer is still Zulip 12's shape.
    assert set(out["presence"]["presence"]) == {
        "active_timestamp",
        "idle_timestamp",
        "aggregated",
        "website",
    }
    assert out["back"] == ok


# A status that ends on time, in the server process ---------------------------------------


def set_status_until(server: ExampleServer, account: Account, text: str, end: int) -> None:
    response = requests.post(
        f"{server.url}/api/v1/users/me/status",
        data={"status_text": text, "scheduled_end_time": str(end)},
        auth=(account.email, account.api_key),
        timeout=TIMEOUT,
    )
    assert response.json() == {"result": "success", "msg": ""}


def status_of(server: ExampleServer, viewer: Account, target: Account) -> dict[str, Any]:
    response = requests.get(
        f"{server.url}/api/v1/users/{target.user_id}/status",
        auth=(viewer.email, viewer.api_key),
        timeout=TIMEOUT,
    )
    status: dict[str, Any] = response.json()["status"]
    return status


def ended_lines(log: Path, user_id: int) -> list[dict[str, Any]]:
    return [line for line in read_log(log) if line["user_id"] == user_id and line["ended"]]


def test_a_status_ends_on_time_in_the_server_process(server: ExampleServer, site: Site) -> None:
    bob = client_for(server, site.bob)
    queue = bob.register(event_types=["user_status"])
    end = int(time.time()) + 3
    set_status_until(server, site.carol, "in a meeting", end)
    last_event_id = -1
    seen: list[dict[str, Any]] = []
    received_at = None
    deadline = end + 10
    # Long polls, as Zulip clients make them, until the clearing event arrives.
    while time.time() < deadline and received_at is None:
        events = bob.get_events(queue_id=queue["queue_id"], last_event_id=last_event_id)
        for event in events.get("events", []):
            last_event_id = max(last_event_id, event["id"])
            if event["type"] == "user_status":
                seen.append(event)
                if event.get("status_text") == "" and received_at is None:
                    received_at = time.time()
    assert received_at is not None, seen
    assert without_ids(seen) == [
        {"type": "user_status", "user_id": site.carol.user_id, "status_text": "in a meeting"},
        {"type": "user_status", "user_id": site.carol.user_id, **ENDED},
    ]
    # Within 2 s of the end time (whole seconds: the end time is an integer).
    assert end <= received_at < end + PROMPTNESS + 0.5
    assert status_of(server, site.bob, site.carol) == {}
    time.sleep(1)  # a duplicate would show by now
    [line] = ended_lines(site.log, site.carol.user_id)
    assert line["late"] is False
    assert line["changed"] == {**ENDED, "scheduled_end_time": None}
    assert end <= line["sent_at"] < end + PROMPTNESS


def test_a_status_that_ended_while_the_server_was_down_ends_late(tmp_path: Path) -> None:
    # A database of its own: the module's server would end the status on time.
    db_path = tmp_path / "example.sqlite3"
    log = tmp_path / "user_status.jsonl"
    env = {"EXAMPLE_USER_STATUS_LOG": str(log)}
    manage(db_path, "migrate", "--verbosity=0")
    accounts = create_accounts(db_path, {"dora": "downtime", "eve": "downtime"})
    dora, eve = accounts["dora"], accounts["eve"]
    end = int(time.time()) + 3
    first = ExampleServer(db_path, free_port(), tmp_path / "first.log", **env)
    try:
        set_status_until(first, dora, "out for lunch", end)
    finally:
        first.stop()
    time.sleep(max(0.0, end + 3 - time.time()))
    restarted_at = time.time()
    second = ExampleServer(db_path, free_port(), tmp_path / "second.log", **env)
    try:
        # Reads never show an ended status, swept or not.
        assert status_of(second, eve, dora) == {}
        deadline = time.time() + 10
        while time.time() < deadline and not ended_lines(log, dora.user_id):
            time.sleep(0.2)
        time.sleep(1)  # a duplicate would show by now
    finally:
        second.stop()
    [line] = ended_lines(log, dora.user_id)
    assert line["late"] is True
    # Sent at the restart: the server's first request started its sweeper.
    assert 0 <= line["sent_at"] - restarted_at < 10


@REQUIRES_POSTGRES
def test_statuses_end_once_across_two_processes(tmp_path: Path, example_pg_database: str) -> None:
    """Two server processes on one PostgreSQL database, both sweeping: each status ends once,
    on time, by one process or the other."""
    unused_sqlite = tmp_path / "unused.sqlite3"
    log = tmp_path / "user_status.jsonl"
    env = {"EXAMPLE_USER_STATUS_LOG": str(log), "EXAMPLE_PG_NAME": example_pg_database}
    manage(unused_sqlite, "migrate", "--verbosity=0", **env)
    names = [f"member{n}" for n in range(6)]
    accounts = create_accounts(unused_sqlite, dict.fromkeys(names, "pair"), **env)
    first = ExampleServer(unused_sqlite, free_port(), tmp_path / "first.log", **env)
    try:
        second = ExampleServer(unused_sqlite, free_port(), tmp_path / "second.log", **env)
        try:
            end = int(time.time()) + 3
            for index, name in enumerate(names):
                # Through both processes: each starts its sweeper with its first request.
                set_status_until((first, second)[index % 2], accounts[name], "busy", end)
            time.sleep(max(0.0, end + PROMPTNESS + 1 - time.time()))
        finally:
            second.stop()
    finally:
        first.stop()
    for name in names:
        [line] = ended_lines(log, accounts[name].user_id)
        assert line["late"] is False
        assert end <= line["sent_at"] < end + PROMPTNESS
