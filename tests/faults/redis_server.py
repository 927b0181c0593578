"""A private Redis server for the fault tests, which stop it, kill it, freeze it and start it
again while the app uses it. The shared server at 127.0.0.1:6379 is never touched.

The server lives in a temporary directory (its dump file and its log) and listens on a free
loopback port, the same one after every restart so that clients reconnect to it. It never
saves by itself: ``save()`` writes the dump, and ``start()`` loads it if there is one, so a
test decides exactly what a restart keeps. ``kill()`` is a crash (nothing saved on the way
out); ``pause()`` freezes the process (SIGSTOP) as a hung server or a lost network would.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from loopback.server import free_port

HOST = "127.0.0.1"
START_TIMEOUT_SECS = 10
STOP_TIMEOUT_SECS = 10


def why_unavailable() -> str | None:
    """Why no private server can be started here, or None when one can."""
    if shutil.which("redis-server") is None:
        return "no redis-server on PATH: install the redis-server package to run the Redis faults"
    return None


class RedisServer:
    """``start``, ``stop`` (SHUTDOWN NOSAVE), ``kill`` (SIGKILL), ``restart``, ``pause`` and
    ``resume`` may be called in any order; ``cleanup`` ends the server whatever state it is in
    and deletes the directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="presence-redis-"))
        self.log_path = self.root / "redis.log"
        self.dump_path = self.root / "dump.rdb"
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        """A client of its own, for the test's checks (close it after use)."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=2,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),  # a server that is not there is an answer here
        )

    def start(self, timeout: float = START_TIMEOUT_SECS) -> None:
        """Start the server (from its dump, if ``save`` wrote one) and wait until it answers."""
        assert not self.running, "the private Redis is already running"
        command = [
            *("redis-server", "--bind", HOST, "--port", str(self.port)),
            *("--dir", str(self.root), "--dbfilename", self.dump_path.name),
            # Saves only when the test says so, no append-only file, no disk-error refusals.
            *("--save", "", "--appendonly", "no", "--stop-writes-on-bgsave-error", "no"),
            *("--daemonize", "no", "--logfile", ""),
        ]
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl+C in the terminal is for pytest, not for it.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start-up:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def save(self) -> None:
        """Write the dump now: what a restart will find."""
        client = self.client()
        try:
            client.save()
        finally:
            client.close()

    def stop(self, timeout: float = STOP_TIMEOUT_SECS) -> None:
        """A clean shutdown (SIGTERM) that saves nothing, as no save point is configured: the
        next start loads the last ``save``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self._wait(timeout)
        self.process = None

    def kill(self, timeout: float = STOP_TIMEOUT_SECS) -> None:
        """SIGKILL, as a crash: its connections are reset, nothing is saved."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self._wait(timeout)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server: connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def _wait(self, timeout: float) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
            raise RuntimeError(f"redis-server did not stop in {timeout} s; killed") from None

    def cleanup(self) -> None:
        """End the server (SIGKILL if need be) and delete its directory."""
        try:
            if self.running:
                self.resume()
                self.kill()
            self.process = None
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def started_private_redis() -> Iterator[RedisServer]:
    """A started private Redis server, ended and deleted afterwards whatever happened; the
    test is skipped, saying why, where redis-server is missing."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(name="private_redis")
def private_redis_fixture() -> Iterator[RedisServer]:
    """A private Redis server for one test."""
    with started_private_redis() as server:
        yield server
