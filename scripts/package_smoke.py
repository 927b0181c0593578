"""Packaging smoke test: build the sdist and the wheel, check what each contains, install the
wheel into a fresh virtualenv and use it from a minimal Django project outside the checkout.

    python scripts/package_smoke.py     (with `build` installed: pip install -e '.[dev]')

The project's `django-admin check` and `migrate` must pass on SQLite, and one presence report
through Django's test client must succeed. Packages come from pip's cache or from PyPI. Exits
non-zero with a message on the first failure.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import textwrap
import venv
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each command gets this long: the build and the install may download packages.
COMMAND_TIMEOUT_SECS = 300

# Paths in the checkout that are not part of the distribution.
NOT_SHIPPED = ("tests/", "example_project/", "bench/", "loopback/", "scripts/", "docs/", ".ci/")
IN_WHEEL = (
    "django_presence/__init__.py",
    "django_presence/py.typed",
    "django_presence/static/django_presence/presence-dot.js",
    "django_presence/migrations/0001_initial.py",
    "django_presence/management/commands/presence_stats.py",
    "django_presence/management/commands/presence_purge.py",
)
IN_SDIST = (
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "pyproject.toml",
    "docs/commands.md",
    "django_presence/py.typed",
    "django_presence/migrations/0001_initial.py",
)

SETTINGS = """
SECRET_KEY = "package-smoke"
USE_TZ = True
ROOT_URLCONF = "smoke_urls"
ALLOWED_HOSTS = ["testserver"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "django_presence",
]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
"""

URLS = """
from django.urls import include, path

urlpatterns = [path("api/v1/", include("django_presence.urls"))]
"""

# Run by the fresh virtualenv's Python: one report through the API, as a Zulip client makes it.
CLIENT = """
import base64
import json
from io import StringIO
from pathlib import Path

import django

django.setup()

from django.core.management import call_command
from django.test import Client

import django_presence

site_packages = Path(django_presence.__file__).resolve().parents[1]
assert site_packages.name == "site-packages", f"not the installed wheel: {django_presence.__file__}"

call_command(
    "presence_add_member", "hamlet@example.com", "--realm", "smoke", "--create-realm",
    "--create-user", stdout=StringIO(),
)
out = StringIO()
call_command("presence_api_key", "hamlet@example.com", stdout=out, stderr=StringIO())
credentials = base64.b64encode(f"hamlet@example.com:{out.getvalue().strip()}".encode()).decode()
response = Client().post(
    "/api/v1/users/me/presence",
    "status=active",
    content_type="application/x-www-form-urlencoded",
    HTTP_AUTHORIZATION=f"Basic {credentials}",
)
assert response.status_code == 200, response.content
body = response.json()
assert (body["result"], body["msg"]) == ("success", ""), body
print("POST users/me/presence:", json.dumps(body["presences"]))
print("django-presence", django_presence.__version__, "from", site_packages)
"""


class SmokeFailure(Exception):
    pass


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    print("  $", " ".join(str(a) for a in args), flush=True)
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECS,
        check=False,
    )
    if done.returncode != 0:
        raise SmokeFailure(f"exit status {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def check_contents(kind: str, names: list[str], required: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in names]
    expect(not missing, f"the {kind} lacks {missing}")
    stray = sorted(name for name in names if name.startswith(NOT_SHIPPED))
    if kind == "sdist":
        stray = [name for name in stray if not name.startswith("docs/")]
    expect(not stray, f"the {kind} ships files that are not the package's: {stray[:10]}")
    print(f"  {kind}: {len(names)} files, with {', '.join(required)}")


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode())
    check_contents("wheel", names, IN_WHEEL)
    license_files = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    expect(len(license_files) == 1, "the wheel lacks its LICENSE")
    expect(metadata["License-Expression"] == "MIT", "the wheel's License-Expression is not MIT")
    classifiers = metadata.get_all("Classifier") or []
    print("  wheel classifiers:", ", ".join(c.split(" :: ", 1)[1] for c in classifiers))


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        # Drop the leading "django_presence-X.Y.Z/".
        names = [m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name]
    check_contents("sdist", names, IN_SDIST)


def smoke(work: Path) -> None:
    print("==> python -m build (the wheel is built from the sdist)", flush=True)
    dist = work / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=ROOT)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    print(f"  built {wheel.name} and {sdist.name}")
    check_wheel(wheel)
    check_sdist(sdist)

    print("==> install the wheel into a fresh virtualenv", flush=True)
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    python = bin_dir / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=work)

    print("==> a minimal project: check, migrate, one presence report", flush=True)
    project = work / "project"
    project.mkdir()
    (project / "smoke_settings.py").write_text(SETTINGS.format(db=str(work / "smoke.sqlite3")))
    (project / "smoke_urls.py").write_text(textwrap.dedent(URLS))
    (project / "smoke_client.py").write_text(textwrap.dedent(CLIENT))
    # The project directory only: the checkout must not be importable.
    env = {"PATH": str(bin_dir), "PYTHONPATH": str(project)}
    env["DJANGO_SETTINGS_MODULE"] = "smoke_settings"
    run(bin_dir / "django-admin", "check", "--fail-level", "WARNING", cwd=project, env=env)
    run(bin_dir / "django-admin", "migrate", "--verbosity", "0", cwd=project, env=env)
    print(run(python, "smoke_client.py", cwd=project, env=env), end="")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="presence-package-") as work:
        try:
            smoke(Path(work))
        except SmokeFailure as failure:
            print(f"\nPackage smoke test FAILED: {failure}", file=sys.stderr)
            return 1
    print("Package smoke test passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
