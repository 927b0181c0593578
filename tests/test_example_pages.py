"""The example project's pages apply the app's own permission rule (permissions.member_allowed_in):
a deactivated member, a member of a deactivated realm and a user of no realm see on the index
and the directory no more than the API shows them. Served by a real server process; SQLite run
only, like the other example-project tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loopback.example import (
    ExampleServer,
    create_accounts,
    manage,
    seeded_example_db,
    signed_in,
)
from loopback.server import free_port

from .e2e_server import SQLITE_RUN_ONLY

pytestmark = SQLITE_RUN_ONLY

TIMEOUT = 10  # seconds, for every request
PASSWORD = "pages-test-password"
REFUSED = "The presence API refuses this user"

# Passwords for the accounts, a deactivated member, a realm deactivated with its member, and a
# user of no realm.
_SET_UP_SCRIPT = f"""
from django.contrib.auth import get_user_model
from django_presence.actions import do_deactivate_member, do_set_realm_deactivated
from django_presence.models import RealmMember
User = get_user_model()
for user in User.objects.filter(username__in=["ada", "dora", "rita"]):
    user.set_password({PASSWORD!r})
    user.save()
do_deactivate_member(RealmMember.objects.get(user__username="dora"))
do_set_realm_deactivated(RealmMember.objects.get(user__username="rita").realm, True)
User.objects.create_user("nobody", "nobody@example.com", {PASSWORD!r})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("example-pages")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db_path = seeded_example_db(directory, url)
    create_accounts(db_path, {"ada": "pages", "dora": "pages", "rita": "closed"})
    manage(db_path, "shell", "--no-imports", "-c", _SET_UP_SCRIPT)
    example = ExampleServer(db_path, port, directory / "server.log")
    yield url
    example.stop()


def test_an_active_member_sees_the_realm(server: str) -> None:
    session = signed_in(server, "ada", PASSWORD)
    index = session.get(f"{server}/", timeout=TIMEOUT)
    assert "<h2>Presence in realm pages</h2>" in index.text
    assert REFUSED not in index.text
    assert session.get(f"{server}/directory/", timeout=TIMEOUT).status_code == 200
    assert session.get(f"{server}/api/v1/realm/presence", timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize(
    ("username", "api_code"),
    [("dora", "USER_DEACTIVATED"), ("rita", "REALM_DEACTIVATED"), ("nobody", "UNAUTHORIZED")],
)
def test_the_pages_refuse_whom_the_api_refuses(server: str, username: str, api_code: str) -> None:
    session = signed_in(server, username, PASSWORD)
    index = session.get(f"{server}/", timeout=TIMEOUT)
    assert index.status_code == 200
    assert REFUSED in index.text
    assert "Presence in realm" not in index.text
    assert "ada@example.com" not in index.text
    directory = session.get(f"{server}/directory/", timeout=TIMEOUT)
    assert directory.status_code == 403
    assert REFUSED in directory.text
    api = session.get(f"{server}/api/v1/realm/presence", timeout=TIMEOUT)
    assert api.json()["code"] == api_code
