"""The example project behind a production server, on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from loopback.server import LoopbackServer, free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_project"
START_TIMEOUT_SECS = 60
STOP_TIMEOUT_SECS = 15
WORKERS = 2
GTHREAD_THREADS = 4

# name -> how to start it; every one serves example_project with bench.settings.
SERVERS = {
    "gunicorn-sync": "gunicorn, 2 sync workers",
    "gunicorn-gthread": f"gunicorn, 2 gthread workers x {GTHREAD_THREADS} threads",
    "uvicorn": "uvicorn, 2 workers (ASGI)",
}


# Django keeps no persistent database connections under ASGI (docs/scaling.md).
SERVER_ENV = {"uvicorn": {"BENCH_CONN_MAX_AGE": "0"}}


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), str(EXAMPLE), os.environ.get("PYTHONPATH")])
    )
    env.update(extra)
    return env


def command(server: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server == "gunicorn-sync":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(WORKERS),
            "--bind",
            bind,
            "--log-level",
            "warning",
            "example_project.wsgi:application",
        ]
    if server == "gunicorn-gthread":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(WORKERS),
            "--worker-class",
            "gthread",
            "--threads",
            str(GTHREAD_THREADS),
            "--bind",
            bind,
            "--log-level",
            "warning",
            "example_project.wsgi:application",
        ]
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "example_project.asgi:application",
            "--workers",
            str(WORKERS),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    raise ValueError(f"unknown server {server!r}")


class Server(LoopbackServer):
    """One of SERVERS serving the example project with bench.settings."""

    def __init__(self, server: str, log_path: Path, **env: str) -> None:
        port = free_port()
        super().__init__(
            server,
            command(server, port),
            environment(**{**SERVER_ENV.get(server, {}), **env}),
            port,
            log_path,
            cwd=REPO,
            start_timeout=START_TIMEOUT_SECS,
            stop_timeout=STOP_TIMEOUT_SECS,
        )

    def pids(self) -> list[int]:
        """The server's processes: the master and its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *found]

    def peak_memory(self) -> dict[str, Any]:
        """Linux's high-water mark of resident memory (VmHWM) of each server process."""
        peaks = []
        for pid in self.pids():
            status = Path(f"/proc/{pid}/status")
            try:
                lines = status.read_text().splitlines()
            except FileNotFoundError:
                continue
            kib = next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:"))
            peaks.append(kib * 1024)
        return {"per_process_bytes": peaks, "total_bytes": sum(peaks)}


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """One load-generator process; its result."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        cwd=REPO,
        input=orjson.dumps(spec),
        capture_output=True,
        timeout=spec["duration"] + 120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{result.stderr.decode()}")
    parsed: dict[str, Any] = orjson.loads(result.stdout)
    return parsed
