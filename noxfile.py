"""The test matrix: Django 5.2 LTS on Python 3.11, the newest Django 6 on Python 3.12 and 3.13,
on SQLite and on PostgreSQL.

    python -m nox                 every cell
    python -m nox -t django6      the Django 6 cells, which `python3 dev.py test` runs (its own
                                  runs in .venv are the Django 5.2 / Python 3.11 cells)
    python -m nox -l              the list of cells

Each cell installs the project with its test extra into a fresh virtualenv under .nox/, then
runs the steps that dev.py's cell_steps names, which `python3 dev.py test` runs in .venv: on
SQLite the migrations check, pytest and the custom-user suite, on PostgreSQL pytest; all but the
fault suite (tests/faults), which `python3 dev.py test` runs once, in .venv. PostgreSQL cells
are skipped when nothing listens on PRESENCE_TEST_PG_HOST:PRESENCE_TEST_PG_PORT
(127.0.0.1:5432). A missing interpreter skips its cells, except under CI (the CI variable is
set), where nox makes it an error.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nox

# nox loads this file by its path, so its directory is not on sys.path for dev.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev import cell_steps, postgres_address, postgres_reachable

# The standard library's venv: every interpreter of the matrix has it, nothing else needed.
nox.options.default_venv_backend = "venv"

# The cells: (Python, Django release line, database), and the pip requirement of each line.
DJANGO = {"django52": "django>=5.2,<5.3", "django6": "django>=6.0,<7"}
MATRIX = [
    ("3.11", "django52", "sqlite"),
    ("3.11", "django52", "postgres"),
    ("3.12", "django6", "sqlite"),
    ("3.13", "django6", "sqlite"),
    ("3.13", "django6", "postgres"),
]
CELLS = [
    nox.param(python, DJANGO[line], database, id=f"{python}-{line}-{database}", tags=[line])
    for python, line, database in MATRIX
]

VERSIONS = (
    "import platform, django, rest_framework, django_filters; "
    "print('Python', platform.python_version(), '| Django', django.get_version(), "
    "'| DRF', rest_framework.__version__, '| django-filter', django_filters.__version__)"
)


def _put_pyenv_pythons_on_path() -> None:
    """pyenv's shims only run the active version, so `python3.13` on PATH may be a shim that
    fails. Put the real interpreters pyenv installed first on PATH, newest patch release of
    each minor version, for nox to find."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found: dict[str, tuple[int, Path]] = {}  # minor version: (patch number, bin directory)
    for path in versions.glob("3.*/bin"):
        match = re.fullmatch(r"(3\.\d+)\.(\d+)", path.parent.name)
        if match is None:
            continue  # dev builds, virtualenvs and the like
        minor, patch = match[1], int(match[2])
        if minor not in found or found[minor][0] < patch:
            found[minor] = (patch, path)
    directories = [str(path) for _patch, path in found.values()]
    os.environ["PATH"] = os.pathsep.join([*directories, os.environ.get("PATH", "")])


_put_pyenv_pythons_on_path()


@nox.session
@nox.parametrize(("python", "django", "database"), CELLS)
def tests(session: nox.Session, django: str, database: str) -> None:
    if database == "postgres" and not postgres_reachable():
        host, port = postgres_address()
        session.skip(f"PostgreSQL not reachable at {host}:{port}")
    session.install("-e", ".[test]", django)
    session.run("python", "-c", VERSIONS)
    for step in cell_steps(database, session.posargs, nox_cell=True):
        if step.skipped:
            session.log(f"{step.name}: skipped, {step.skipped}")
        else:
            session.run("python", *step.args, env=dict(step.env))
