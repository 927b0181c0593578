"""Which of the checkout's top-level packages may import which: the tests and the benchmarks
share loopback/ and never import each other, loopback/ imports neither, and the app imports
none of them (it ships alone)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Package -> the top-level packages its modules must not import.
FORBIDDEN = {
    "tests": {"bench"},
    "bench": {"tests"},
    "loopback": {"tests", "bench"},
    "django_presence": {"tests", "bench", "loopback"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports by absolute name, wherever in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    modules = sorted((REPO / package).rglob("*.py"))
    assert modules, f"{package}/ has no modules"
    offending = {
        str(module.relative_to(REPO)): sorted(imported_packages(module) & FORBIDDEN[package])
        for module in modules
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_the_scan_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("def f():\n    from bench import events_load\n    import tests.settings\n")
    assert imported_packages(module) == {"bench", "tests"}
