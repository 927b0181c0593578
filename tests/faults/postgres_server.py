"""A private PostgreSQL cluster for the fault tests, which stop it, crash it and start it again
while a server writes to it. The shared server at 127.0.0.1:5432 is never touched.

The cluster lives in a temporary directory: its data, its log and its unix socket. It listens
on a free loopback port only and trusts every local connection, as user ``postgres``.
PostgreSQL refuses to run as root, so when the tests run as root (CI does) initdb and the
server run as the ``postgres`` OS user, and the directory belongs to that user. The server is a
child of the test process itself (not daemonized by pg_ctl), so the test can stop it, SIGKILL
it and always reap it.

``fsync`` is off: every fault here is a process fault, and what a killed process wrote is
already in the kernel's page cache, which survives it. Commits still wait for their WAL write
(``synchronous_commit`` keeps its default, on), which is what an acknowledged write relies on.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from loopback.server import free_port

psycopg = pytest.importorskip("psycopg", reason="the fault tests talk to PostgreSQL with psycopg")

# A directory with initdb and postgres, in place of the newest /usr/lib/postgresql/*/bin.
BIN_ENV = "PRESENCE_FAULTS_PG_BIN"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
OS_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
INITDB_TIMEOUT_SECS = 60
START_TIMEOUT_SECS = 30
STOP_TIMEOUT_SECS = 30
CONNECT_TIMEOUT_SECS = 2

# Small and quick: a few server processes and a test connect at once.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "max_connections": "40",
    "shared_buffers": "32MB",
    "fsync": "off",
    "logging_collector": "off",
    "log_line_prefix": "%m [%p] ",
}


def find_bin_dir() -> Path | None:
    """Where initdb and postgres are: $PRESENCE_FAULTS_PG_BIN, else the newest Debian/Ubuntu
    version under /usr/lib/postgresql, else the directory of the initdb on PATH."""
    if BIN_ENV in os.environ:
        candidates = [Path(os.environ[BIN_ENV])]
    else:
        debian = [Path(p) for p in Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/"))]
        candidates = sorted(debian, key=_version_key, reverse=True)
        on_path = shutil.which("initdb")
        if on_path is not None:
            candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    return None


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,); directories not named by a version sort first."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def why_unavailable() -> str | None:
    """Why no private cluster can be started here, or None when one can."""
    if find_bin_dir() is None:
        if BIN_ENV in os.environ:
            return f"no initdb and postgres in {BIN_ENV} ({os.environ[BIN_ENV]})"
        return (
            f"no PostgreSQL server binaries (initdb, postgres) under {DEBIAN_BIN_GLOB} or on "
            f"PATH; install the postgresql package or set {BIN_ENV}"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL as"
    if not Path("/proc/self/stat").exists():
        return "the crash simulation finds the server's processes in /proc (Linux only)"
    return None


def _as_os_user() -> dict[str, Any]:
    """Popen arguments that run a command as the postgres OS user when this process is root,
    and as this process's user otherwise."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam(OS_USER)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _traversable_by_anyone(directory: Path) -> bool:
    """Whether every user may pass through ``directory`` and each of its parents."""
    return all(path.stat().st_mode & 0o001 for path in [directory, *directory.parents])


class PostgresServer:
    """A PostgreSQL cluster in its own temporary directory, listening on a free loopback port.
    ``start``, ``stop`` (fast shutdown), ``kill`` (SIGKILL, as a crash) and ``restart`` may be
    called in any order; ``cleanup`` ends the server whatever state it is in and deletes the
    directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self._run_as = _as_os_user()
        parent = Path(tempfile.gettempdir())
        if self._run_as and not _traversable_by_anyone(parent):
            parent = Path("/tmp")  # the postgres user must reach its directory
        self.root = Path(tempfile.mkdtemp(prefix="presence-pg-", dir=parent))
        if self._run_as:
            os.chown(self.root, self._run_as["user"], self._run_as["group"])
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self._initdb()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                *(str(self.bin_dir / "initdb"), "--pgdata", str(self.data_dir)),
                *("--username", SUPERUSER, "--auth", "trust", "--encoding", "UTF8"),
                *("--no-locale", "--no-sync", "--no-instructions"),
            ],
            capture_output=True,
            text=True,
            timeout=INITDB_TIMEOUT_SECS,
            check=False,
            **self._run_as,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_SECS) -> None:
        """Start the server and wait until it accepts connections (after crash recovery, when
        it was killed)."""
        assert not self.running, "the private PostgreSQL is already running"
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        settings = {**SERVER_SETTINGS, "port": str(self.port)}
        settings["unix_socket_directories"] = str(self.root)
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl+C in the terminal is for pytest, not for it.
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_as,
            )
        deadline = time.monotonic() + timeout
        while not self._accepts_connections():
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start-up:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start in {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def _accepts_connections(self) -> bool:
        try:
            self.connect().close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT_SECS) -> None:
        """Fast shutdown (SIGINT): open transactions are rolled back, clients disconnected."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"PostgreSQL did not stop in {timeout} s; killed") from None
        self.process = None

    def kill(self, timeout: float = STOP_TIMEOUT_SECS) -> None:
        """SIGKILL the postmaster and every backend at once, as a crash would; the next start
        runs crash recovery."""
        if self.process is None:
            return
        postmaster = self.process.pid
        if self.process.poll() is None:
            # Stopped, it forks no new backend while its children are listed and killed.
            os.kill(postmaster, signal.SIGSTOP)
            children = _children_of(postmaster)
            for pid in [postmaster, *children]:
                _signal_if_alive(pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
            _wait_until_gone(children, timeout)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """End the server (fast shutdown, else SIGKILL) and delete its directory."""
        try:
            if self.running:
                with suppress(RuntimeError):  # stop() killed it
                    self.stop()
            else:
                self.process = None
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def connect(self, dbname: str = "postgres") -> Any:
        """A psycopg connection in autocommit mode, as the superuser."""
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECS,
        )

    def create_database(self, name: str) -> None:
        sql = psycopg.sql
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def example_env(self, dbname: str) -> dict[str, str]:
        """The example project's variables that point it at database ``dbname`` here."""
        return {
            "EXAMPLE_PG_NAME": dbname,
            "EXAMPLE_PG_HOST": HOST,
            "EXAMPLE_PG_PORT": str(self.port),
            "EXAMPLE_PG_USER": SUPERUSER,
        }


def _children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ...": the command may contain spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _signal_if_alive(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def _is_gone(pid: int) -> bool:
    """Ended: no /proc entry, or a zombie that its new parent has not reaped yet."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] == "Z"


def _wait_until_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(_is_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL backends still alive after SIGKILL: {pids}")
        time.sleep(0.05)


@contextmanager
def private_postgres(log_dir: Path | None = None) -> Iterator[PostgresServer]:
    """A started private cluster, ended and deleted on exit whatever happened, its log copied
    to ``log_dir`` first; skips the test (with the reason) where none can run."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        if log_dir is not None and server.log_path.exists():
            shutil.copyfile(server.log_path, log_dir / "postgres.log")
        server.cleanup()


@pytest.fixture(name="private_postgres")
def private_postgres_fixture(tmp_path: Path) -> Iterator[PostgresServer]:
    """private_postgres() for one test, its log kept in the test's tmp_path."""
    with private_postgres(tmp_path) as server:
        yield server
