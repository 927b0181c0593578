#!/usr/bin/env python3
"""Newcomer commands; needs nothing but Python 3.11+.

    python3 dev.py demo [--port 8000]   seed the example project and serve it
    python3 dev.py test [PYTEST_ARGS]   lint, type-check, migrations check, the test suites,
                                        the strict docs build, the package smoke test and
                                        the Django 6 test matrix

Both create .venv on first use and reinstall the project into it whenever pyproject.toml
changes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import venv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".dev-py-installed"
EXAMPLE = ROOT / "example_project"
FAULT_SUITE = "tests/faults"


def bootstrap() -> None:
    """Create the venv if missing; pip install when pyproject.toml differs from the last install."""
    if not PYTHON.exists():
        print(f"==> creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    extras = ".[test,lint,dev,bench,docs]"
    print(f"==> pip install -e '{extras}'", flush=True)
    subprocess.run([PYTHON, "-m", "pip", "install", "-e", extras], cwd=ROOT, check=True)
    STAMP.write_text(digest)


def run(*args: str | Path, env: dict[str, str] | None = None) -> bool:
    print(f"\n==> {' '.join(str(a) for a in args)}", flush=True)
    return subprocess.run(args, cwd=ROOT, env=env).returncode == 0


# The floor and what counts are in pyproject.toml ([tool.coverage.*]).
COVERAGE_REPORT = ("-m", "coverage", "report")


@dataclass(frozen=True)
class Step:
    """A step of a test-matrix cell: its name (a line of dev.py's summary), the arguments after
    `python`, the environment variables it adds, and why it does not run ("" when it does)."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    skipped: str = ""


def cell_steps(
    database: str, pytest_args: Sequence[str], *, nox_cell: bool = False, coverage: bool = False
) -> list[Step]:
    """What a cell of the test matrix runs, on "sqlite" or "postgres", once the project is
    installed. noxfile.py runs these in each cell's virtualenv, `python3 dev.py test` in .venv
    (its Django 5.2 / Python 3.11 cells). The migrations check and the custom-user suite do not
    depend on the database: the SQLite cell runs them.

    The fault suite starts server processes on a PostgreSQL of its own, whatever the cell's
    database, and the tests marked ``once`` are long real-server runs: they run once, in .venv,
    and nox's cells (``nox_cell``) leave them out (named in ``pytest_args``, they run there
    too). With ``coverage``, the pytest runs add the package's branch coverage to .coverage
    (COVERAGE_REPORT reads it)."""
    pytest = (
        "-m",
        "pytest",
        *((f"--ignore={FAULT_SUITE}", "-m", "not once") if nox_cell else ()),
        *(("--cov", "--cov-append", "--cov-report=") if coverage else ()),
        *pytest_args,
    )
    if database == "postgres":
        return [Step("pytest (PostgreSQL)", pytest, {"PRESENCE_TEST_DATABASE": "postgres"})]
    custom_user = Step(
        "pytest (custom user)",
        ("-m", "pytest", "--ds=tests.settings_custom_user", "tests/custom_user"),
    )
    return [
        Step(
            "makemigrations --check",
            ("-m", "django", "makemigrations", "--check", "--dry-run", "--settings=tests.settings"),
        ),
        Step("pytest (SQLite)", pytest),
        # Whole or not at all: extra arguments usually name other tests.
        replace(custom_user, skipped="extra pytest arguments given")
        if pytest_args
        else custom_user,
    ]


def postgres_address() -> tuple[str, int]:
    # The same variables tests/settings.py reads.
    host = os.environ.get("PRESENCE_TEST_PG_HOST", "127.0.0.1")
    return host, int(os.environ.get("PRESENCE_TEST_PG_PORT", "5432"))


def postgres_reachable() -> bool:
    try:
        socket.create_connection(postgres_address(), timeout=2).close()
    except OSError:
        return False
    return True


def ensure_chromium() -> str:
    """Debian's Chromium for tests/test_browser_directory.py, installed with apt-get when it is
    missing and this runs as root; otherwise that test skips and says why. Returns the outcome
    for the summary."""
    if os.environ.get("PRESENCE_TEST_CHROMIUM") or shutil.which("chromium"):
        return "ok: found"
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "skipped: no chromium and no root apt-get; the browser test skips"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if run("apt-get", "update", "-q", env=env) and run(
        "apt-get", "install", "-y", "-q", "chromium", env=env
    ):
        return "ok: installed"
    return "skipped: apt-get install chromium failed; the browser test skips"


def venv_versions() -> tuple[str, str]:
    """The Python and Django versions of .venv: the matrix cell that its own runs stand for."""
    script = "import platform, django; print(platform.python_version(), django.get_version())"
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, check=True)
    python_version, django_version = done.stdout.split()
    return python_version, django_version


def cmd_test(pytest_args: list[str]) -> int:
    python_version, django_version = venv_versions()
    results: list[tuple[str, str]] = []  # (step, outcome)

    def step(name: str, *args: str | Path, env: dict[str, str] | None = None) -> None:
        results.append((name, "ok" if run(*args, env=env) else "FAILED"))

    # The coverage floor (pyproject.toml) holds for the SQLite and PostgreSQL runs together,
    # and only for a whole run: extra arguments usually name some tests.
    measure = not pytest_args
    if measure:
        (ROOT / ".coverage").unlink(missing_ok=True)

    def cell(database: str) -> None:
        for cell_step in cell_steps(database, pytest_args, coverage=measure):
            if cell_step.skipped:
                results.append((cell_step.name, f"skipped: {cell_step.skipped}"))
            else:
                step(cell_step.name, PYTHON, *cell_step.args, env={**os.environ, **cell_step.env})

    step("ruff check", PYTHON, "-m", "ruff", "check", ".")
    step("ruff format --check", PYTHON, "-m", "ruff", "format", "--check", ".")
    step("mypy django_presence", PYTHON, "-m", "mypy", "django_presence")
    results.append(("chromium (browser test)", ensure_chromium()))
    cell("sqlite")

    # Strict: a broken link or anchor in docs/ fails the step. Built outside the repository.
    with tempfile.TemporaryDirectory(prefix="presence-docs-") as site_dir:
        mkdocs = (PYTHON, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", site_dir)
        step("mkdocs build --strict", *mkdocs)

    host, port = postgres_address()
    if postgres_reachable():
        cell("postgres")
        # Every benchmark step at small sizes, in seconds, with no timing assertion
        # (docs/performance.md); it fails on wrong answers, statement counts or HTTP errors.
        step("bench smoke", PYTHON, "-m", "bench", "--smoke")
        if measure:
            step("coverage >= 95 % (branches)", PYTHON, *COVERAGE_REPORT)
        else:
            results.append(("coverage >= 95 % (branches)", "skipped: extra pytest arguments"))
    else:
        print(f"\n==> PostgreSQL not reachable at {host}:{port}, skipping the PostgreSQL run")
        for cell_step in cell_steps("postgres", pytest_args):
            results.append((cell_step.name, f"skipped: not reachable at {host}:{port}"))
        results.append(("bench smoke", f"skipped: PostgreSQL not reachable at {host}:{port}"))
        results.append(("coverage >= 95 % (branches)", "skipped: needs the PostgreSQL run too"))

    step("package build + smoke", PYTHON, ROOT / "scripts" / "package_smoke.py")

    # The runs above are the matrix's Django 5.2 / Python 3.11 cells when .venv has those (it
    # does when python3 is 3.11), so nox adds only the Django 6 cells; otherwise every cell.
    if django_version.startswith("5.2."):
        nox_step, nox_selection = "nox (Django 6 cells)", ["-t", "django6"]
    else:
        nox_step, nox_selection = "nox (every cell)", []
    nox = (PYTHON, "-m", "nox", "--reuse-existing-virtualenvs", *nox_selection)
    step(nox_step, *nox, "--", *pytest_args)

    print(f"\nSummary (.venv: Python {python_version}, Django {django_version}):")
    for name, outcome in results:
        print(f"  {name:<26} {outcome}")
    failed = any(outcome == "FAILED" for _name, outcome in results)
    print("\nSome steps FAILED." if failed else "\nAll steps passed.")
    return 1 if failed else 0


def cmd_demo(port: int) -> int:
    manage = [PYTHON, EXAMPLE / "manage.py"]
    url = f"http://127.0.0.1:{port}"
    if not (run(*manage, "migrate") and run(*manage, "seed_demo", "--url", url)):
        return 1
    print(f"\nServing {url}/ (Ctrl+C stops it)\n", flush=True)
    try:
        return subprocess.run([*manage, "runserver", f"127.0.0.1:{port}"], cwd=ROOT).returncode
    except KeyboardInterrupt:
        return 0


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - run by whatever python3 the machine has
        sys.exit("dev.py needs Python 3.11 or newer.")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="seed the example project and serve it")
    demo.add_argument("--port", type=int, default=8000)
    commands.add_parser("test", help="every check CI runs; extra arguments go to pytest")
    args, extra = parser.parse_known_args()
    if args.command == "demo" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bootstrap()
    return cmd_demo(args.port) if args.command == "demo" else cmd_test(extra)


if __name__ == "__main__":
    sys.exit(main())
