"""The example project as real processes: its manage.py commands, members with API keys, and
the project served by runserver or uvicorn, each on its own SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from .auth import basic_auth
from .server import LoopbackServer

REPO = Path(__file__).resolve().parent.parent
MANAGE = REPO / "example_project" / "manage.py"
COMMAND_TIMEOUT_SECS = 120
REQUEST_TIMEOUT_SECS = 10


def example_env(db_path: Path, **extra: str) -> dict[str, str]:
    """The environment of an example-project process: its own SQLite file, DEBUG off, and none
    of the test run's Django, example or Zulip variables; ``extra`` adds or overrides."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ZULIP_", "EXAMPLE_", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        EXAMPLE_DB_PATH=str(db_path),
        EXAMPLE_DEBUG="0",
        # The app from this checkout, installed or not.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def manage(db_path: Path, *args: str, **env: str) -> str:
    """Run a manage.py command to completion; returns its stdout, fails with its stderr.
    ``env`` adds environment variables (e.g. EXAMPLE_PG_NAME)."""
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=example_env(db_path, **env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECS,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def seeded_example_db(directory: Path, url: str) -> Path:
    """A migrated SQLite file in ``directory`` with seed_demo's realm (which prints ``url``)."""
    db_path = directory / "example.sqlite3"
    manage(db_path, "migrate", "--verbosity=0")
    manage(db_path, "seed_demo", "--url", url)
    return db_path


# Run by manage.py shell: creates each user, its membership (creating the realm the first time
# one is named) and an API key, and prints {username: {email, user_id, api_key}}.
_CREATE_ACCOUNTS_SCRIPT = """
import json
from django.contrib.auth import get_user_model
from django_presence.actions import check_add_realm_member, do_create_api_key, do_create_realm
from django_presence.models import Realm
realms = {}
accounts = {}
for username, string_id in json.loads(REALM_BY_USERNAME).items():
    if string_id not in realms:
        realms[string_id] = Realm.objects.filter(string_id=string_id).first() or do_create_realm(
            string_id, string_id
        )
    user = get_user_model().objects.create_user(username, f"{username}@example.com")
    member = check_add_realm_member(user, realms[string_id])
    _key, raw_key = do_create_api_key(member)
    accounts[username] = {"email": member.email, "user_id": user.pk, "api_key": raw_key}
print(json.dumps(accounts))
"""


@dataclass(frozen=True)
class Account:
    """A member of an example-project database, with its raw API key."""

    email: str
    user_id: int
    api_key: str

    @property
    def authorization(self) -> str:
        return basic_auth(self.email, self.api_key)


def create_accounts(
    db_path: Path, realm_by_username: dict[str, str], **env: str
) -> dict[str, Account]:
    """Members with API keys in a migrated example-project database: each username (email
    <username>@example.com) in the realm with the given string id, made if missing. In the
    order given. ``env`` as for manage()."""
    script = _CREATE_ACCOUNTS_SCRIPT.replace(
        "REALM_BY_USERNAME", repr(json.dumps(realm_by_username))
    )
    accounts = json.loads(manage(db_path, "shell", "--no-imports", "-c", script, **env))
    return {username: Account(**account) for username, account in accounts.items()}


def server_command(port: int, *, asgi: bool) -> list[str]:
    if not asgi:
        return [sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}", "--noreload"]
    # An ASGI server, as the event queues' long polls need; quick to stop despite open polls.
    return [
        *(sys.executable, "-m", "uvicorn", "example_project.asgi:application"),
        *("--app-dir", str(MANAGE.parent), "--host", "127.0.0.1", "--port", str(port)),
        *("--timeout-graceful-shutdown", "1", "--log-level", "warning"),
    ]


class ExampleServer(LoopbackServer):
    """``manage.py runserver --noreload`` (or with ``asgi``, uvicorn) on 127.0.0.1:<port>,
    logging to a file."""

    def __init__(
        self, db_path: Path, port: int, log_path: Path, *, asgi: bool = False, **env: str
    ) -> None:
        super().__init__(
            "the example server",
            server_command(port, asgi=asgi),
            example_env(db_path, **env),
            port,
            log_path,
        )


def signed_in(url: str, username: str = "admin", password: str = "admin") -> requests.Session:
    """A browser-like session signed in to the example site at ``url`` (by default as the
    seeded admin, a realm administrator), through its login form with the CSRF token."""
    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=REQUEST_TIMEOUT_SECS).raise_for_status()
    response = session.post(
        f"{url}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=REQUEST_TIMEOUT_SECS,
    )
    assert response.url == f"{url}/", response.text
    return session
