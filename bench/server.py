"""The example project behind a production server, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import requests

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class Server:
    def __init__(self, server: str, log_path: Path, **env: str) -> None:
        self.name = server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command(server, self.port),
                cwd=REPO,
                env=environment(**{**SERVER_ENV.get(server, {}), **env}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()}")
            try:
                requests.get(f"{self.url}/api/v1/server_settings", timeout=2)
            except requests.RequestException:
                time.sleep(0.2)
            else:
                return
        raise RuntimeError(f"{self.name} did not answer in time:\n{self.log_path.read_text()}")

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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECS)


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
