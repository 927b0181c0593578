"""django_presence/static/django_presence/presence-dot.js, run by Node against a stub DOM, a stub
clock and a stub fetch that serves directory/members from a list of members. The real browser
runs it in test_browser_directory.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / (
    "django_presence/static/django_presence/presence-dot.js"
)
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")

SERVER_NOW = 1_700_000_000
# This browser's clock is 100 s behind the server's: statuses must follow the server's clock.
BROWSER_NOW = SERVER_NOW - 100
THRESHOLD = 200

# Loads the script with stub globals, then runs the test's scenario: an async function body
# that sees PresenceDot, `elements`, `clock` (seconds, settable), `requested` and `dots()`, and
# returns what the test checks. Prints {"result": ...} or {"error": ...} as JSON.
HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(process.argv[1]);
function element(userId, text) {
  const classes = new Set();
  const attributes = {"data-user-id": userId};
  if (text) { attributes["data-presence-text"] = ""; }
  return {
    attributes, classes, textContent: "",
    classList: {
      add: (...names) => names.forEach((n) => classes.add(n)),
      remove: (n) => classes.delete(n),
    },
    getAttribute(name) { return this.attributes[name]; },
    hasAttribute(name) { return name in this.attributes; },
    setAttribute(name, value) { this.attributes[name] = value; },
  };
}
const elements = input.user_ids.map((id) => element(id, false))
  .concat(input.text_user_ids.map((id) => element(id, true)));
const requested = [];
const clock = {seconds: input.browser_now};
const context = {
  Date: {now: () => clock.seconds * 1000},
  Promise, Math, Object, Array, Error, Set, Number, JSON, String, console,
  encodeURIComponent,
  document: {currentScript: null, readyState: "complete",
             querySelectorAll: () => elements},
  fetch: (url, options) => {
    requested.push([url, options.credentials]);
    const query = new URL(url, "http://x").searchParams;
    const ids = JSON.parse(query.get("user_ids"));
    const body = input.error || {
      result: "success", msg: "", count: 0, page: 1, page_size: 200,
      server_timestamp: input.server_now + (clock.seconds - input.browser_now),
      server_presence_offline_threshold_seconds: input.threshold,
      members: input.members.filter((m) => ids.includes(m.user_id)),
    };
    return Promise.resolve({json: () => Promise.resolve(body)});
  },
};
context.window = context;
vm.runInNewContext(fs.readFileSync(input.script, "utf8"), context);
const PresenceDot = context.window.PresenceDot;
const dots = () => elements.map((e) => ({
  user_id: e.attributes["data-user-id"],
  classes: [...e.classes].sort(),
  title: e.attributes.title ?? null,
  text: e.textContent,
}));
const scenario = new Function(
  "PresenceDot", "elements", "clock", "requested", "dots",
  "return (async () => {" + input.scenario + "})();");
scenario(PresenceDot, elements, clock, requested, dots).then(
  (result) => console.log(JSON.stringify({result})),
  (error) => console.log(JSON.stringify({error: String(error)})),
);
"""

RENDER = 'await PresenceDot.render({apiBase: "/api/v1"}); return {requested, dots: dots()};'


def run(
    scenario: str,
    *,
    members: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
    user_ids: tuple[str, ...] | list[str] = (),
    text_user_ids: tuple[str, ...] | list[str] = (),
    error: dict[str, Any] | None = None,
) -> Any:
    assert NODE is not None
    data = {
        "script": str(SCRIPT),
        "scenario": scenario,
        "members": list(members),
        "user_ids": list(user_ids),
        "text_user_ids": list(text_user_ids),
        "error": error,
        "server_now": SERVER_NOW,
        "browser_now": BROWSER_NOW,
        "threshold": THRESHOLD,
    }
    done = subprocess.run(
        [NODE, "-e", HARNESS, json.dumps(data)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    output: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in output, output["error"]
    return output["result"]


def member(user_id: int, active_ago: int | None, idle_ago: int | None) -> dict[str, Any]:
    """A listing entry whose timestamps are this many seconds before the server's now."""
    return {
        "user_id": user_id,
        "active_timestamp": None if active_ago is None else SERVER_NOW - active_ago,
        "idle_timestamp": None if idle_ago is None else SERVER_NOW - idle_ago,
    }


def dot(user_id: str, status: str, title: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "classes": sorted(["presence-dot", f"presence-dot--{status}"]),
        "title": title,
        "text": "",
    }


def requested_ids(requested: list[list[str]]) -> list[list[int]]:
    ids = []
    for url, credentials in requested:
        assert credentials == "same-origin"
        parts = urlsplit(url)
        assert parts.path == "/api/v1/directory/members"
        query = parse_qs(parts.query)
        assert query["page_size"] == ["200"]
        ids.append(json.loads(query["user_ids"][0]))
    return ids


def test_statuses_follow_the_timestamps_and_the_servers_clock_as_the_template_tag_does():
    members = [
        member(1, 5, 5),
        member(2, THRESHOLD, 5),  # active exactly a threshold ago: no longer active
        member(3, THRESHOLD + 60, THRESHOLD + 60),
        member(4, 30 * 60, 30 * 60),
        member(5, 2 * 3600, 2 * 3600),
        member(6, None, None),  # never reported
    ]
    result = run(RENDER, members=members, user_ids=["1", "2", "3", "4", "5", "6", "99", "1"])
    # One request names every user once; "99" (a bot, say) is not listed.
    assert requested_ids(result["requested"]) == [[1, 2, 3, 4, 5, 6, 99]]
    assert result["dots"] == [
        dot("1", "active", "active now"),
        dot("2", "idle", "idle"),
        dot("3", "offline", "last seen 4 minutes ago"),
        dot("4", "offline", "last seen 30 minutes ago"),
        dot("5", "offline", "last seen 2 hours ago"),
        dot("6", "offline", "offline"),
        dot("99", "offline", "offline"),
        dot("1", "active", "active now"),
    ]


def test_asks_for_at_most_200_users_a_request():
    user_ids = [str(user_id) for user_id in range(1, 451)]
    result = run(RENDER, user_ids=user_ids)
    assert requested_ids(result["requested"]) == [
        list(range(1, 201)),
        list(range(201, 401)),
        list(range(401, 451)),
    ]


def test_text_elements_get_the_words_instead_of_a_dot():
    result = run(RENDER, members=[member(1, 5, 5)], text_user_ids=["1"])
    assert result["dots"] == [{"user_id": "1", "classes": [], "title": None, "text": "active now"}]


def test_time_alone_moves_a_dot_from_active_to_idle_to_offline_with_no_request():
    scenario = """
      await PresenceDot.render({apiBase: "/api/v1"});
      const seen = [];
      for (const later of [0, 94, 95, 194, 195]) {
        clock.seconds = input_browser_now + later;
        PresenceDot.paint();
        seen.push([later, PresenceDot.currentStatus(1), dots()[0].title]);
      }
      return {seen, requests: requested.length};
    """.replace("input_browser_now", str(BROWSER_NOW))
    # Active 105 s ago, connected 5 s ago: idle in 95 s, offline in 195 s.
    result = run(scenario, members=[member(1, 105, 5)], user_ids=["1"])
    assert result == {
        "seen": [
            [0, "active", "active now"],
            [94, "active", "active now"],
            [95, "idle", "idle"],
            [194, "idle", "idle"],
            [195, "offline", "last seen 3 minutes ago"],
        ],
        "requests": 1,
    }


def test_presence_events_and_reports_overwrite_the_timestamps():
    scenario = f"""
      await PresenceDot.render({{apiBase: "/api/v1"}});
      const online = PresenceDot.applyEvent({{
        type: "presence", id: 3,
        presences: {{"1": {{active_timestamp: {SERVER_NOW}, idle_timestamp: {SERVER_NOW}}}}},
      }});
      PresenceDot.paint();
      const afterEvent = dots()[0].title;
      // Invisible mode moves the timestamps back: taken as they come.
      const backdated = PresenceDot.applyPresences({{
        "1": {{active_timestamp: {SERVER_NOW - 265}, idle_timestamp: {SERVER_NOW - 265}}},
      }});
      PresenceDot.paint();
      const ignored = PresenceDot.applyEvent({{type: "heartbeat", id: 4}});
      return {{online, afterEvent, backdated, afterBackdating: dots()[0].title, ignored}};
    """
    result = run(scenario, members=[member(1, None, None)], user_ids=["1"])
    assert result == {
        "online": [1],
        "afterEvent": "active now",
        "backdated": [1],
        "afterBackdating": "last seen 4 minutes ago",
        "ignored": [],
    }


def test_a_listing_read_before_an_event_does_not_undo_it_a_later_one_does():
    def listing(read_at: int) -> str:
        return f"""PresenceDot.learn({{
          server_timestamp: {read_at}, server_presence_offline_threshold_seconds: 200,
          members: [{{user_id: 1, active_timestamp: null, idle_timestamp: null}}],
        }});"""

    scenario = f"""
      {listing(SERVER_NOW)}
      PresenceDot.applyEvent({{
        type: "presence", id: 1,
        presences: {{"1": {{active_timestamp: {SERVER_NOW}, idle_timestamp: {SERVER_NOW}}}}},
      }});
      // A listing the server read 10 s before the event arrived, then one read after it.
      {listing(SERVER_NOW - 10)}
      const afterOlder = PresenceDot.currentStatus(1);
      {listing(SERVER_NOW + 5)}
      return [afterOlder, PresenceDot.currentStatus(1)];
    """
    assert run(scenario) == ["active", "never"]


def test_an_error_envelope_rejects_the_promise():
    error = {"result": "error", "msg": "Not logged in", "code": "UNAUTHORIZED"}
    scenario = """
      try { await PresenceDot.render({apiBase: "/api/v1"}); } catch (e) { return String(e); }
      return "resolved";
    """
    assert run(scenario, user_ids=["2"], error=error) == "Error: directory/members: Not logged in"
