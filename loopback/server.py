"""A server process on a free loopback port, up once it answers ``server_settings``."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import requests

START_TIMEOUT_SECS = 30
STOP_TIMEOUT_SECS = 10


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """A server process on 127.0.0.1:<port>, logging to a file, up once it answers
    ``server_settings``; ``stop()`` ends it (terminate, then kill)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        port: int,
        log_path: Path,
        *,
        cwd: Path | None = None,
        start_timeout: float = START_TIMEOUT_SECS,
        stop_timeout: float = STOP_TIMEOUT_SECS,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_up(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log()}")
            try:
                requests.get(f"{self.url}/api/v1/server_settings", timeout=2)
            except requests.RequestException:
                time.sleep(0.2)
            else:
                return
        raise RuntimeError(f"{self.name} did not answer in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=self.stop_timeout)
