"""The example project's team directory page (/directory/), served by a real server process:
the page, and the requests its script makes with the session, without a browser
(test_browser_directory.py runs the page in one). SQLite run only, like the other
example-project tests."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from loopback.example import ExampleServer, seeded_example_db, signed_in
from loopback.server import free_port

from .e2e_server import SQLITE_RUN_ONLY

pytestmark = SQLITE_RUN_ONLY

TIMEOUT = 10  # seconds, for every request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("directory-page")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    example = ExampleServer(seeded_example_db(directory, url), port, directory / "server.log")
    yield url
    example.stop()


def test_anonymous_visitors_are_sent_to_the_login(server: str) -> None:
    response = requests.get(f"{server}/directory/", allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/login/?next=/directory/"


def test_the_page_names_the_endpoints_its_script_uses(server: str) -> None:
    session = signed_in(server)
    page = session.get(f"{server}/directory/", timeout=TIMEOUT)
    assert page.status_code == 200
    assert "<h1>Team directory</h1>" in page.text
    urls = dict(re.findall(r'var (LISTING|PRESENCE|REGISTER|EVENTS) = "([^"]+)";', page.text))
    assert urls == {
        "LISTING": "/api/v1/directory/members",
        "PRESENCE": "/api/v1/users/me/presence",
        "REGISTER": "/api/v1/register",
        "EVENTS": "/api/v1/events",
    }
    assert '<script src="/static/django_presence/presence-dot.js"></script>' in page.text
    assert 'href="/directory/"' in session.get(f"{server}/", timeout=TIMEOUT).text


def test_the_scripts_requests_work_with_the_session(server: str) -> None:
    """The page's requests, in its order, as a browser without the page would make them
    (test_browser_directory.py runs the page itself)."""
    session = signed_in(server)
    csrf = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{server}/directory/"}
    listing = session.get(
        f"{server}/api/v1/directory/members",
        params={"search": "admin@", "page": "1", "page_size": "20"},
        timeout=TIMEOUT,
    ).json()
    assert (listing["result"], listing["count"]) == ("success", 1)
    (admin,) = listing["members"]
    assert (admin["email"], admin["full_name"], admin["role"]) == (
        "admin@example.com",
        "admin@example.com",
        200,
    )

    queue = session.post(
        f"{server}/api/v1/register",
        data={
            "event_types": '["presence"]',
            "fetch_event_types": '["realm"]',
            "client_capabilities": '{"simplified_presence_events": true}',
        },
        headers=csrf,
        timeout=TIMEOUT,
    ).json()
    assert (queue["result"], queue["last_event_id"]) == ("success", -1)
    assert queue["server_presence_ping_interval_seconds"] == 60

    # The first report continues from the listing: it brings the viewer's own new row.
    report = session.post(
        f"{server}/api/v1/users/me/presence",
        data={
            "status": "active",
            "new_user_input": "true",
            "last_update_id": str(listing["presence_last_update_id"]),
        },
        headers=csrf,
        timeout=TIMEOUT,
    ).json()
    assert report["result"] == "success"
    assert str(admin["user_id"]) in report["presences"]
    assert report["presence_last_update_id"] > listing["presence_last_update_id"]

    events = session.get(
        f"{server}/api/v1/events",
        params={"queue_id": queue["queue_id"], "last_event_id": "-1", "dont_block": "true"},
        timeout=TIMEOUT,
    ).json()
    # The admin's first report: they came online.
    assert events["result"] == "success"
    assert [event["presences"] for event in events["events"]] == [
        {str(admin["user_id"]): report["presences"][str(admin["user_id"])]}
    ]
