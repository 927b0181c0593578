"""django_presence/static/django_presence/presence-dot.js, run by Node against a stub DOM and a
stub fetch that serves directory/members pages."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / (
    "django_presence/static/django_presence/presence-dot.js"
)
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")

NOW = 1_700_000_000

# Loads the script with stub globals, renders, and prints the requested URLs and each element's
# attributes and classes as JSON.
HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(process.argv[1]);
function element(userId) {
  const classes = new Set(["presence-dot", "presence-dot--active"]);
  return {
    attributes: {"data-user-id": userId},
    classList: {
      add: (...names) => names.forEach((n) => classes.add(n)),
      remove: (n) => classes.delete(n),
    },
    classes: classes,
    getAttribute(name) { return this.attributes[name]; },
    setAttribute(name, value) { this.attributes[name] = value; },
  };
}
const elements = input.user_ids.map(element);
const requested = [];
const context = {
  Date: {now: () => input.now * 1000},
  Promise, Math, Object, Array, Error, Set, console,
  document: {currentScript: null, readyState: "complete",
             querySelectorAll: () => elements},
  fetch: (url, options) => {
    requested.push([url, options.credentials]);
    const page = Number(new URL(url, "http://x").searchParams.get("page"));
    return Promise.resolve({json: () => Promise.resolve(input.pages[page - 1])});
  },
};
context.window = context;
vm.runInNewContext(fs.readFileSync(input.script, "utf8"), context);
context.window.PresenceDot.render({apiBase: "/api/v1"}).then(
  () => console.log(JSON.stringify({
    requested,
    elements: elements.map((e) => ({attributes: e.attributes, classes: [...e.classes].sort()})),
  })),
  (error) => console.log(JSON.stringify({error: String(error)})),
);
"""


def run(user_ids: list[str], pages: list[dict[str, Any]]) -> dict[str, Any]:
    assert NODE is not None
    data = {"script": str(SCRIPT), "user_ids": user_ids, "pages": pages, "now": NOW}
    done = subprocess.run(
        [NODE, "-e", HARNESS, json.dumps(data)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def member(user_id: int, status: str, seen_seconds_ago: int | None = None) -> dict[str, Any]:
    seen = None if seen_seconds_ago is None else NOW - seen_seconds_ago
    return {"user_id": user_id, "status": status, "active_timestamp": seen, "idle_timestamp": seen}


def page(members: list[dict[str, Any]], count: int) -> dict[str, Any]:
    return {"result": "success", "msg": "", "count": count, "members": members}


def rendered(user_id: str, status: str, title: str) -> dict[str, Any]:
    return {
        "attributes": {
            "data-user-id": user_id,
            "role": "img",
            "aria-label": title,
            "title": title,
        },
        "classes": sorted(["presence-dot", f"presence-dot--{status}"]),
    }


def test_renders_the_same_dots_as_the_template_tag_reading_pages_until_all_are_found():
    first = [member(1, "active", 5), member(2, "idle", 5), member(3, "offline", 60)]
    second = [member(4, "offline", 30 * 60), member(5, "offline", 2 * 3600), member(6, "never")]
    result = run(
        ["1", "2", "3", "4", "5", "6", "99"],
        [page(first, 401), page(second, 401), page([], 401)],
    )
    assert result["requested"] == [
        ["/api/v1/directory/members?page=1&page_size=200", "same-origin"],
        ["/api/v1/directory/members?page=2&page_size=200", "same-origin"],
        ["/api/v1/directory/members?page=3&page_size=200", "same-origin"],
    ]
    assert result["elements"] == [
        rendered("1", "active", "active now"),
        rendered("2", "idle", "idle"),
        rendered("3", "offline", "last seen 1 minute ago"),
        rendered("4", "offline", "last seen 30 minutes ago"),
        rendered("5", "offline", "offline"),
        rendered("6", "offline", "offline"),
        # Not in the listing (a bot, say): offline.
        rendered("99", "offline", "offline"),
    ]


def test_stops_reading_once_every_user_is_found():
    result = run(["2"], [page([member(2, "idle", 5)], 401)])
    assert result["requested"] == [
        ["/api/v1/directory/members?page=1&page_size=200", "same-origin"]
    ]
    assert result["elements"] == [rendered("2", "idle", "idle")]


def test_an_error_envelope_rejects_the_promise():
    error = {"result": "error", "msg": "Not logged in", "code": "UNAUTHORIZED"}
    assert run(["2"], [error]) == {"error": "Error: directory/members: Not logged in"}
