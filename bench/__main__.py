"""``python -m bench``: seed PostgreSQL, measure, write bench/results/presence.json and render
docs/performance.md. ``python -m bench --smoke`` runs every step at small sizes in seconds,
checks the invariants (equal answers, statement counts, no HTTP errors), asserts no timing and
writes nothing into the repository; it also runs the event-queue benchmarks at tiny sizes
(``python -m bench.events_load``, ``bench.events_day`` and ``bench.events_split``, whose full
runs are commands of their own). ``python -m bench --report-only`` measures nothing: it renders
docs/performance.md and its plots again from the stored results (after an edit of
bench/templates/ or bench/report.py). See docs/performance.md."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FULL_SIZES = (1_000, 10_000, 100_000)
SMOKE_SIZES = (50, 200)
FULL_REPEATS = {1_000: 31, 10_000: 15, 100_000: 5}
# The HTTP load and the realistic day use this realm size (the largest in a smoke run).
LOAD_REALM_SIZE = 10_000
DAY_ONLINE = 2_500


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--smoke", action="store_true", help="small sizes, seconds, no docs")
    runs.add_argument(
        "--in-process-only",
        action="store_true",
        help="items 1-3 and 6 only, no servers, no docs (e.g. to measure another checkout)",
    )
    runs.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: render the docs from bench/results/presence.json and before.json",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--output", type=Path, help="results directory (default bench/results)")
    return parser.parse_args()


def machine() -> dict[str, Any]:
    from . import db

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    memory = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        memory = int(meminfo.read_text().split()[1]) * 1024
    packages = (
        "django",
        "djangorestframework",
        "psycopg",
        "orjson",
        "gunicorn",
        "uvicorn",
        "aiohttp",
    )
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": db.server_version(),
        "packages": versions,
        "load_average_at_start": list(os.getloadavg()),
    }


def main() -> int:
    args = parse_args()
    if args.report_only:
        import orjson

        from .report import render

        render(orjson.loads((RESULTS / "presence.json").read_bytes()))
        print("rendered docs/performance.md")
        return 0
    started = time.perf_counter()
    sys.path.insert(0, str(REPO / "example_project"))
    from . import db

    if not db.reachable():
        params = db.server_params()
        print(f"PostgreSQL is not reachable at {params['host']}:{params['port']}.")
        return 2
    smoke = args.smoke
    name = f"presence_bench_smoke_{os.getpid()}" if smoke else "presence_bench"
    os.environ["BENCH_PG_NAME"] = name
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    # Server logs, and a smoke run's results unless --output says where, go to a scratch
    # directory removed at the end (server start-up failures include their log).
    with tempfile.TemporaryDirectory(prefix="presence-bench-") as scratch:
        output = args.output or (Path(scratch) if smoke else RESULTS)
        output.mkdir(parents=True, exist_ok=True)
        db.recreate(name)
        try:
            results = run(smoke=smoke, log_dir=Path(scratch), servers=not args.in_process_only)
        finally:
            if not args.keep_db:
                from django.db import connections

                connections.close_all()
                db.drop(name)
        results["runtime_secs"] = round(time.perf_counter() - started, 1)
        import orjson

        path = output / "presence.json"
        path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        kept = args.output or not smoke
        where = path if kept else "not kept (--output DIR keeps them)"
        print(f"\nresults: {where} ({results['runtime_secs']} s)")
    if not smoke and not args.in_process_only:
        from .report import render

        render(results)
        print("rendered docs/performance.md")
    failures = check_invariants(results)
    if smoke and not args.in_process_only:
        failures += events_smoke()
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def run(*, smoke: bool, log_dir: Path, servers: bool) -> dict[str, Any]:
    import django
    from django.core.management import call_command

    django.setup()
    from . import inprocess, load, seed
    from .server import SERVERS

    sizes = SMOKE_SIZES if smoke else FULL_SIZES
    results: dict[str, Any] = {
        "kind": "smoke" if smoke else "full",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": list(sizes),
    }
    print("migrating", flush=True)
    call_command("migrate", verbosity=0)
    seeding_started = time.perf_counter()
    realms = [seed.seed_realm(size) for size in sizes]
    seed.analyze()
    results["seeding_secs"] = round(time.perf_counter() - seeding_started, 1)

    print("1. full fetch", flush=True)
    repeats = dict.fromkeys(sizes, 3) if smoke else FULL_REPEATS
    results["full_fetch"] = inprocess.full_fetch(realms, repeats)
    print("2. empty incremental polls", flush=True)
    results["empty_poll"] = inprocess.empty_polls(realms, *((2, 5) if smoke else (10, 60)))
    print("3. statements per ping", flush=True)
    results["ping_statements"] = inprocess.ping_statements(realms[0])
    results["explain"] = inprocess.explain(realms[-1])

    print("6. peak memory of a full fetch", flush=True)
    results["memory"] = [
        memory(sizes[-1], response_format) for response_format in ("modern", "legacy")
    ]

    if not servers:
        return results
    results["recommended_server"] = RECOMMENDED_SERVER
    load_realm = next((r for r in realms if r.size == LOAD_REALM_SIZE), realms[-1])
    print("4. HTTP load", flush=True)
    results["http_load"] = load.http_load(
        load_realm,
        ["gunicorn-sync"] if smoke else list(SERVERS),
        rounds=1 if smoke else 3,
        duration=1.0 if smoke else 3.0,
        concurrency=16,
        log_dir=log_dir,
    )
    print("5. a realistic day", flush=True)
    online = min(50, load_realm.visible_members) if smoke else DAY_ONLINE
    results["day"] = load.realistic_day(
        load_realm,
        RECOMMENDED_SERVER,
        online=online,
        duration=3.0 if smoke else 60.0,
        log_dir=log_dir,
    )
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    return results


# The server docs/scaling.md recommends for the presence API (by the HTTP load figures).
RECOMMENDED_SERVER = "gunicorn-gthread"


def memory(size: int, response_format: str) -> dict[str, Any]:
    import orjson

    completed = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(size), response_format],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "example_project")]),
        },
        capture_output=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench.memory failed:\n{completed.stderr.decode()}")
    result: dict[str, Any] = orjson.loads(completed.stdout)
    print(
        f"  {response_format}: {result['peak_above_baseline_bytes'] / 2**20:.1f} MiB above "
        f"baseline for {result['response_bytes'] / 2**20:.1f} MiB "
        f"(x{result['ratio_to_response']})",
        flush=True,
    )
    return result


# The event-queue benchmarks, at tiny sizes (each checks its own invariants: every poll gets
# exactly its event, no errors). Their full runs are commands of their own (docs/performance.md).
EVENTS_SMOKE = (
    ("bench.events_load", "--smoke"),
    ("bench.events_day", "--smoke"),
    ("bench.events_split", "--smoke"),
)


def events_smoke() -> list[str]:
    failures = []
    for module, *arguments in EVENTS_SMOKE:
        print(f"{module} {' '.join(arguments)}", flush=True)
        completed = subprocess.run(
            [sys.executable, "-m", module, *arguments],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            failures.append(f"{module}: {completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return failures


def check_invariants(results: dict[str, Any]) -> list[str]:
    """What must hold at any size and speed (the smoke run's assertions)."""
    failures = []
    statements = results["ping_statements"]
    if statements["repeat_within_55s"]["statements"] > 0:
        failures.append("a repeat ping ran statements beyond authentication")
    for case in ("first", "later"):
        if statements[case]["statements"] < 3:
            failures.append(f"a {case} ping wrote nothing")
    if "day" not in results:
        return failures
    for run in [*results["http_load"], results["day"]]:
        if run["errors"] or not run["requests"]:
            failures.append(f"{run.get('server')} {run['mode']}: {run['errors']} errors")
    if results["day"]["db_writes"] == 0:
        failures.append("the realistic day wrote nothing")
    return failures


if __name__ == "__main__":
    sys.exit(main())
