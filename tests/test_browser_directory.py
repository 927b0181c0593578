"""The example project's team directory (/directory/) in a real browser: headless Chromium,
driven by Playwright, against the example project served by uvicorn on loopback.

Presence is timed in seconds here (offline threshold 23 s, pings every second), so that
statuses change by time alone within the test. Two signed-in pages watch the same realm, one
unfiltered and one filtered to "active", while two members report through the API: carol
comes online and then only reports "idle", dave comes online once and goes quiet. Measured,
against the issue's bound of 2 seconds: how long after a member's report the pages show them
online (presence events), and how far from the moment the server's rule changes a status the
pages show it (the page's timer). The measurements and screenshots go to test-artifacts/.
Also: the page's own reports under Playwright's clock (idle after five minutes without input,
honest new_user_input), and the index page's badges (the template tag, taken over by
presence-dot.js).

Needs Playwright (the test extra) and a Chromium: PRESENCE_TEST_CHROMIUM, else `chromium` on
PATH (Debian's package, which `python3 dev.py test` installs when it can). SQLite run only,
like the other example-project tests.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from loopback.auth import basic_auth
from loopback.example import ExampleServer, manage, seeded_example_db
from loopback.server import free_port

from .e2e_server import SQLITE_RUN_ONLY
from .test_schema import OPERATIONS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.once,
    SQLITE_RUN_ONLY,
]

OFFLINE_THRESHOLD_SECS = 23  # the smallest Zulip's invariant allows with 1 s pings
TIMING = {
    "EXAMPLE_PRESENCE_OFFLINE_THRESHOLD_SECS": str(OFFLINE_THRESHOLD_SECS),
    "EXAMPLE_PRESENCE_PING_INTERVAL_SECS": "1",
    "EXAMPLE_PRESENCE_UPDATE_MIN_FREQ_SECONDS": "1",
}
LIVE_WITHIN_SECS = 2.0  # the bound for a change to show
TIMEOUT_MS = 10_000
REQUEST_TIMEOUT = 10
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# As root on a machine without network: no sandbox, no GPU, no calls to Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SEEDED_HUMANS = {
    f"{name}@example.com" for name in ("admin", "alice", "bob", "carol", "dave", "gina")
}

# The rows shown in the directory table: email -> (the dot's status class, the status words).
ROWS_SCRIPT = """() => Object.fromEntries(
  Array.from(document.querySelectorAll("#members tr[data-member]:not([hidden])")).map((row) => [
    row.dataset.member,
    [row.querySelector(".presence-dot").className.match(/presence-dot--(\\w+)/)[1],
     row.querySelector("[data-presence-text]").textContent],
  ]))"""


def chromium_executable() -> str | None:
    configured = os.environ.get("PRESENCE_TEST_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs Playwright: pip install -e '.[test]'"
    )
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "no Chromium found: install Debian's chromium package (python3 dev.py test does "
            "when it runs as root with apt-get) or set PRESENCE_TEST_CHROMIUM to a Chromium"
        )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Site:
    url: str
    api_keys: dict[str, str]

    def report(self, email: str, status: str) -> None:
        response = requests.post(
            f"{self.url}/api/v1/users/me/presence",
            data={"status": status, "ping_only": "true"},
            headers={"Authorization": basic_auth(email, self.api_keys[email])},
            timeout=REQUEST_TIMEOUT,
        )
        assert response.json()["result"] == "success", response.text

    def listing(self, **params: str) -> dict[str, dict[str, Any]]:
        """The directory as the server lists it now (seen by alice, who sees everyone)."""
        email = "alice@example.com"
        response = requests.get(
            f"{self.url}/api/v1/directory/members",
            params={"page_size": "200", **params},
            headers={"Authorization": basic_auth(email, self.api_keys[email])},
            timeout=REQUEST_TIMEOUT,
        )
        body = response.json()
        assert body["result"] == "success", response.text
        return {member["email"]: member for member in body["members"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("browser-directory")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db_path = seeded_example_db(directory, url)
    api_keys = {
        email: manage(db_path, "presence_api_key", email).strip()
        for email in ("alice@example.com", "carol@example.com", "dave@example.com")
    }
    # DEBUG on, for the static files (presence-dot.js) under uvicorn.
    server = ExampleServer(
        db_path, port, directory / "server.log", asgi=True, EXAMPLE_DEBUG="1", **TIMING
    )
    yield Site(url, api_keys)
    server.stop()


@dataclass
class DirectoryPage:
    """A signed-in /directory/ page, with its page errors and console errors."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def rows(self) -> dict[str, tuple[str, str]]:
        rows: dict[str, list[str]] = self.page.evaluate(ROWS_SCRIPT)
        return {email: (status, words) for email, (status, words) in rows.items()}

    def wait_for_rows(self, predicate: Callable[[dict[str, tuple[str, str]]], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not predicate(rows := self.rows()):
            assert time.monotonic() < deadline, f"rows never matched: {rows}"
            time.sleep(0.05)

    def filter_status(self, status: str) -> None:
        self.page.select_option("select[name=status]", status)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def new_context(browser: Any) -> Iterator[Callable[[], Any]]:
    """Opens browser contexts (a cookie jar each), closed after the test."""
    contexts: list[Any] = []

    def open_context() -> Any:
        contexts.append(browser.new_context(viewport={"width": 900, "height": 700}))
        return contexts[-1]

    yield open_context
    for context in contexts:
        context.close()


def watched_page(context: Any) -> DirectoryPage:
    """A new page of ``context`` that records its page errors, console errors and failed
    requests."""
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    directory = DirectoryPage(page)
    page.on("pageerror", lambda error: directory.errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and directory.errors.append(f"console: {message.text} ({message.location['url']})")
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and directory.errors.append(f"HTTP {response.status}: {response.url}")
        ),
    )
    return directory


def signed_in_page(context: Any, url: str, path: str) -> DirectoryPage:
    """``path`` opened anonymously, signed in as admin on the login form it sends to, and
    back at ``path``."""
    directory = watched_page(context)
    page = directory.page
    page.goto(f"{url}{path}")
    if "/accounts/login/" not in page.url:  # the index is public: sign in from there
        page.click("text=Sign in")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}{path}")
    return directory


def open_directory(context: Any, url: str) -> DirectoryPage:
    directory = signed_in_page(context, url, "/directory/")
    directory.page.wait_for_selector("#members tr[data-member]")
    # Gone if the page is ever loaded again: every change below must arrive without a reload.
    directory.page.evaluate("window.sameDocument = true")
    return directory


@dataclass
class Watch:
    """When each awaited change showed, in time.time() seconds."""

    seen_at: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, shown: bool) -> None:
        if shown and name not in self.seen_at:
            self.seen_at[name] = time.time()


def test_the_directory_lists_members_and_follows_presence_live(
    new_context: Callable[[], Any], site: Site
) -> None:
    everyone = open_directory(new_context(), site.url)
    only_active = open_directory(new_context(), site.url)
    only_active.filter_status("active")

    # The list: every human member of the realm, the viewer (admin) active.
    everyone.wait_for_rows(lambda rows: set(rows) == SEEDED_HUMANS)
    everyone.wait_for_rows(lambda rows: rows["admin@example.com"] == ("active", "active now"))
    # Seeded 2 hours ago.
    assert everyone.rows()["carol@example.com"] == ("offline", "last seen 2 hours ago")
    everyone.screenshot("directory-list.png")

    # Carol and dave come online: each page shows them within the bound, no reload.
    reported_at = time.time()
    site.report("carol@example.com", "active")
    site.report("dave@example.com", "active")
    watch = Watch()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(watch.seen_at) < 4 and time.monotonic() < deadline:
        rows, active_rows = everyone.rows(), only_active.rows()
        for name in ("carol", "dave"):
            email = f"{name}@example.com"
            watch.check(f"{name} online", rows[email] == ("active", "active now"))
            watch.check(f"{name} listed as active", email in active_rows)
        time.sleep(0.05)
    came_online = {name: seen - reported_at for name, seen in watch.seen_at.items()}
    assert len(came_online) == 4, f"not shown within {TIMEOUT_MS} ms: {watch.seen_at}"
    everyone.screenshot("directory-came-online.png")

    # From now on carol only reports "idle" and dave reports nothing: at OFFLINE_THRESHOLD_SECS
    # after their last active report (the server's timestamps), carol turns idle and dave
    # offline, by time alone.
    listing = site.listing(user_ids=json.dumps(sorted(_user_ids(site, ("carol", "dave")))))
    carol_idle_at = listing["carol@example.com"]["active_timestamp"] + OFFLINE_THRESHOLD_SECS
    dave_offline_at = listing["dave@example.com"]["idle_timestamp"] + OFFLINE_THRESHOLD_SECS
    expected_at = {
        "carol idle": carol_idle_at,
        "carol left the active filter": carol_idle_at,
        "dave offline": dave_offline_at,
        "dave left the active filter": dave_offline_at,
    }
    watch = Watch()
    deadline = time.monotonic() + OFFLINE_THRESHOLD_SECS + TIMEOUT_MS / 1000
    next_idle_report = 0.0
    while len(watch.seen_at) < 4 and time.monotonic() < deadline:
        if time.monotonic() >= next_idle_report:
            site.report("carol@example.com", "idle")
            next_idle_report = time.monotonic() + 1
        rows, active_rows = everyone.rows(), only_active.rows()
        watch.check("carol idle", rows["carol@example.com"] == ("idle", "idle"))
        watch.check("dave offline", rows["dave@example.com"][0] == "offline")
        watch.check("carol left the active filter", "carol@example.com" not in active_rows)
        watch.check("dave left the active filter", "dave@example.com" not in active_rows)
        time.sleep(0.05)
    assert len(watch.seen_at) == 4, f"not shown in time: {watch.seen_at}"
    # Shown this long after the server's status changed (negative: before; timestamps are
    # whole seconds, so a page may show a change up to a second early).
    by_time = {name: watch.seen_at[name] - expected_at[name] for name in expected_at}
    everyone.screenshot("directory-by-time.png")
    only_active.screenshot("directory-filter-active.png")

    # Filters: each status shows exactly the members the server lists with it.
    for status in ("idle", "offline", "active", ""):
        everyone.filter_status(status)
        everyone.wait_for_rows(
            lambda rows, status=status: (
                set(rows) == set(site.listing(**_status_param(status)))
                and all(rows[email][0] == status for email in rows if status)
            )
        )
    # Search: part of a name, any case.
    everyone.page.fill("input[name=search]", "cHeN")
    everyone.wait_for_rows(lambda rows: set(rows) == {"carol@example.com"})
    assert everyone.page.inner_text("#members tr[data-member] td") == "Carol Chen"
    everyone.screenshot("directory-search.png")

    for directory in (everyone, only_active):
        assert directory.page.evaluate("window.sameDocument") is True, "the page was reloaded"
        assert directory.errors == []
    _record(came_online=came_online, by_time=by_time)
    assert all(seconds <= LIVE_WITHIN_SECS for seconds in came_online.values()), came_online
    assert all(-LIVE_WITHIN_SECS <= seconds <= LIVE_WITHIN_SECS for seconds in by_time.values()), (
        by_time
    )


def test_the_page_reports_its_viewers_presence_as_zulips_web_app_does(
    new_context: Callable[[], Any], site: Site
) -> None:
    # The page's clock is Playwright's: time moves only when the test moves it, and each move
    # fires the page's ping timer once (its interval is the server's, 1 s here).
    context = new_context()
    context.clock.install()
    directory = open_directory(context, site.url)
    page = directory.page
    page_now = datetime.fromtimestamp(page.evaluate("Date.now()") / 1000, tz=UTC)
    page.clock.pause_at(page_now + timedelta(milliseconds=100))

    def next_report(forward: int | str) -> dict[str, str]:
        with page.expect_request(
            lambda request: (
                request.method == "POST" and request.url.endswith("/api/v1/users/me/presence")
            )
        ) as request:
            page.clock.fast_forward(forward)
        return {name: values[0] for name, values in parse_qs(request.value.post_data).items()}

    # No input since the report made on opening the page (which counted as input).
    first = next_report(1000)
    assert (first["status"], first["new_user_input"]) == ("active", "false")
    # The page continues Zulip's incremental presence from the listing's update id.
    assert int(first["last_update_id"]) >= 0
    # Five minutes without input: idle, and still no input.
    after_five_minutes = next_report("05:00")
    assert (after_five_minutes["status"], after_five_minutes["new_user_input"]) == (
        "idle",
        "false",
    )
    # Input makes the next report active, with new_user_input once.
    page.mouse.move(50, 50)
    page.mouse.move(120, 90)
    after_input = next_report(1000)
    assert (after_input["status"], after_input["new_user_input"]) == ("active", "true")
    later = next_report(1000)
    assert (later["status"], later["new_user_input"]) == ("active", "false")
    assert int(later["last_update_id"]) >= int(first["last_update_id"])
    assert directory.errors == []


# The index's badges: email -> (the dot's status class, its title, the words next to it).
BADGES_SCRIPT = """() => Object.fromEntries(
  Array.from(document.querySelectorAll("tr[data-member]")).map((row) => {
    const dot = row.querySelector(".presence-dot");
    return [row.dataset.member, [dot.className.match(/presence-dot--(\\w+)/)[1], dot.title,
                                 row.querySelector("[data-presence-text]").textContent]];
  }))"""
WORDS = {"active": "active now", "idle": "idle"}


def test_the_index_badges_are_the_template_tag_kept_current_by_the_script(
    new_context: Callable[[], Any], site: Site
) -> None:
    # First without presence-dot.js: the template tag's badges as the server renders them.
    context = new_context()
    context.route(
        "**/presence-dot.js",
        lambda route: route.fulfill(body="", content_type="application/javascript"),
    )
    server_rendered = signed_in_page(context, site.url, "/")
    badges = server_rendered.page.evaluate(BADGES_SCRIPT)
    assert "carol@example.com" in badges
    for status, title, words in badges.values():
        assert status in ("active", "idle", "offline")
        assert title == WORDS.get(status, title)
        assert words == ""  # only the script writes the words

    # With the script: it takes the same spans over and agrees with the server's listing.
    directory = signed_in_page(new_context(), site.url, "/")

    def agrees_with_the_server(badges: dict[str, list[str]]) -> bool:
        listing = site.listing()
        for email, (status, title, words) in badges.items():
            listed = listing[email]["status"].replace("never", "offline")
            if (status, words) != (listed, title) or title != WORDS.get(status, title):
                return False
        return True

    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not agrees_with_the_server(badges := directory.page.evaluate(BADGES_SCRIPT)):
        assert time.monotonic() < deadline, f"badges never matched the listing: {badges}"
        time.sleep(0.1)
    directory.screenshot("index-badges.png")
    assert directory.errors == []


def test_the_swagger_ui_page_lists_every_operation_and_runs_one(
    new_context: Callable[[], Any], site: Site
) -> None:
    swagger = watched_page(new_context())
    page = swagger.page
    page.goto(f"{site.url}/api/schema/swagger-ui/")
    page.wait_for_selector(".opblock")
    shown = page.eval_on_selector_all(
        ".opblock",
        """blocks => blocks.map((block) => [
          block.querySelector(".opblock-summary-method").textContent.toLowerCase(),
          block.querySelector(".opblock-summary-path").dataset.path])""",
    )
    assert sorted(map(tuple, shown)) == sorted(
        (method, path) for path, methods in OPERATIONS.items() for method in methods
    )
    # Interactive: GET server_settings needs no credentials.
    operation = page.locator(".opblock", has_text="/api/v1/server_settings")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.first.wait_for()
    assert status.first.inner_text().strip() == "200"
    swagger.screenshot("swagger-ui.png")
    assert swagger.errors == []


def _user_ids(site: Site, names: tuple[str, ...]) -> list[int]:
    listing = site.listing()
    return [listing[f"{name}@example.com"]["user_id"] for name in names]


def _status_param(status: str) -> dict[str, str]:
    return {"status": status} if status else {}


def _record(**measurements: dict[str, float]) -> None:
    """Keep the measured delays next to the screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    rounded = {
        kind: {name: round(seconds, 3) for name, seconds in values.items()}
        for kind, values in measurements.items()
    }
    (ARTIFACTS / "browser-directory.json").write_text(json.dumps(rounded, indent=2) + "\n")


STATUS_CELLS_SCRIPT = """
() => Object.fromEntries(Array.from(document.querySelectorAll('#members tr[data-member]')).map(
  (row) => [row.dataset.member, row.querySelector('[data-user-status]').textContent]))
"""


def test_the_directory_shows_statuses_and_follows_them_live(
    new_context: Callable[[], Any], site: Site
) -> None:
    """A status set through the API shows at once (a user_status event), and goes at its end
    time (the sweeper's clearing event), with no reload."""
    directory = open_directory(new_context(), site.url)

    def status_cells() -> dict[str, str]:
        cells: dict[str, str] = directory.page.evaluate(STATUS_CELLS_SCRIPT)
        return cells

    def wait_for_status(email: str, text: str) -> float:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while status_cells()[email] != text:
            assert time.monotonic() < deadline, status_cells()
            time.sleep(0.05)
        return time.time()

    email = "dave@example.com"
    end = int(time.time()) + 4
    sent_at = time.time()
    response = requests.post(
        f"{site.url}/api/v1/users/me/status",
        data={"status_text": "At lunch", "emoji_name": "car", "scheduled_end_time": str(end)},
        headers={"Authorization": basic_auth(email, site.api_keys[email])},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.json() == {"result": "success", "msg": ""}
    shown_at = wait_for_status(email, "\N{AUTOMOBILE} At lunch")
    assert shown_at - sent_at < LIVE_WITHIN_SECS
    directory.screenshot("directory-status.png")
    gone_at = wait_for_status(email, "")
    assert end <= gone_at < end + LIVE_WITHIN_SECS + 0.5
    assert directory.page.evaluate("window.sameDocument") is True
