"""A realistic day with presence events on, on loopback only.

    python -m bench.events_day             10,000 members, 2,500 online, 90 s measured
    python -m bench.events_day --smoke     200 members, 40 online, 5 s, no results file

The example project on PostgreSQL (a database of its own, dropped after; ``--sqlite`` for a
SQLite file) under uvicorn with django-presence's ASGI application, one process and the
in-process backend (or ``--backend redis``: two processes sharing Redis, clients spread over
both). ``members`` members in one realm; ``online`` of them are online when the window opens,
each with one client as Zulip's are: it long-polls ``events`` without pause (acknowledging what
it got) and posts ``users/me/presence`` with its ``last_update_id`` every 60 s, at its own phase.
During the window more members come online at ``arrivals`` per second: each registers a queue
(fetching the realm's presence, as the zulip package does), reports for the first time (which
sends a presence event to every queue) and becomes one more online client. Nobody leaves: going
offline happens by time alone and sends no event.

The window is real time, not compressed: 90 s is one and a half presence intervals. The arrival
rate is the day's average for this realm: 2,500 members online at once, in sessions of two hours
on average, come online at 2,500 / 7,200 s = 0.35 per second.

Reported: the servers' CPU share over the window (CPU time / wall time, /proc), the p50/p99 of
the presence posts and of the events' delivery (from the start of the arriving member's post
to each poll's answer), errors, and the servers' memory. Writes bench/results/events-day.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

from loopback.example import Account, ExampleServer
from loopback.server import LoopbackServer, free_port

from . import db
from .events_load import (
    CLIENT_KEEPALIVE_SECS,
    CLOCK_TICKS,
    REDIS_URL,
    USER_LIMIT_FOR_EVENTS,
    cpu_ticks,
    machine,
    percentiles,
    raise_open_files_limit,
    redis_reachable,
    register_all,
    rss_mib,
    seed,
    wait_until_idle,
)
from .server import REPO, SERVERS
from .server import Server as BenchServer
from .server import environment as server_environment

RESULTS = Path(__file__).resolve().parent / "results" / "events-day.json"
PRESENCE_INTERVAL_SECS = 60
SETUP_CONCURRENCY = 32
# A poll answers within the long-poll time (50 s); one that takes longer has failed.
POLL_TIMEOUT_SECS = 70
STOP_TIMEOUT_SECS = 30


@dataclass
class Stats:
    post_ms: list[float] = field(default_factory=list)
    delivery_ms: list[float] = field(default_factory=list)
    register_ms: list[float] = field(default_factory=list)
    polls: int = 0
    heartbeats: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


@dataclass
class Day:
    backend: str
    processes: int
    members: int
    online_at_start: int
    arrivals_per_sec: float
    window_secs: float
    # Whether the window waits for the steady state (every post writes); not in a smoke run.
    steady: bool = True
    arrivals: int = 0
    server_cpu_secs: float = 0.0
    # Of one core: 1.0 is one core busy all the time.
    server_cpu_share: float = 0.0
    # The share of the processes that serve register and events (with gunicorn for the
    # presence API, the rest is gunicorn's).
    events_server_cpu_share: float = 0.0
    presence_server: str = ""
    posts: int = 0
    post_ms: dict[str, float] = field(default_factory=dict)
    deliveries: int = 0
    delivery_ms: dict[str, float] = field(default_factory=dict)
    register_ms: dict[str, float] = field(default_factory=dict)
    polls: int = 0
    heartbeats: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server_rss_mib: dict[str, float] = field(default_factory=dict)


class Clients:
    """The online clients of the day, and what they measured."""

    def __init__(
        self, session: aiohttp.ClientSession, urls: list[str], presence_url: str, stop_at: float
    ) -> None:
        self.session = session
        self.urls = urls
        self.presence_url = presence_url
        self.stop_at = stop_at
        self.stats = Stats()
        # When each arriving member's first post started: their event's delivery is timed
        # from there.
        self.arrived_at: dict[int, float] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.measuring = False

    def url(self, index: int) -> str:
        return self.urls[index % len(self.urls)]

    def start(self, index: int, account: Account, queue_id: str, cursor: int, phase: float) -> None:
        self.tasks.append(asyncio.create_task(self.poller(index, account, queue_id)))
        self.tasks.append(asyncio.create_task(self.poster(index, account, cursor, phase)))

    async def poller(self, index: int, account: Account, queue_id: str) -> None:
        url = f"{self.url(index)}/api/v1/events"
        headers = {"Authorization": account.authorization}
        last = -1
        while time.perf_counter() < self.stop_at:
            params = {"queue_id": queue_id, "last_event_id": str(last)}
            try:
                async with self.session.get(url, params=params, headers=headers) as response:
                    raw = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.stats.error(f"GET events: {type(exc).__name__}: {exc}")
                return
            received = time.perf_counter()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"unreadable": raw[:200]}
            if body.get("result") != "success":
                self.stats.error(f"GET events: {body}")
                return
            if self.measuring:
                self.stats.polls += 1
            for event in body["events"]:
                last = event["id"]
                if event["type"] == "heartbeat":
                    self.stats.heartbeats += self.measuring
                    continue
                started = self.arrived_at.get(event["user_id"])
                if started is not None and self.measuring:
                    self.stats.delivery_ms.append((received - started) * 1000)

    async def poster(self, index: int, account: Account, cursor: int, phase: float) -> None:
        url = f"{self.presence_url}/api/v1/users/me/presence"
        headers = {"Authorization": account.authorization}
        due = time.perf_counter() + phase
        while True:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if time.perf_counter() >= self.stop_at:
                return
            data = {"status": "active", "last_update_id": str(cursor)}
            started = time.perf_counter()
            try:
                async with self.session.post(url, data=data, headers=headers) as response:
                    body = json.loads(await response.read())
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.stats.error(f"POST presence: {type(exc).__name__}: {exc}")
                return
            if body.get("result") != "success":
                self.stats.error(f"POST presence: {body}")
                return
            if self.measuring:
                self.stats.post_ms.append((time.perf_counter() - started) * 1000)
            cursor = body["presence_last_update_id"]
            due += PRESENCE_INTERVAL_SECS

    async def arrive(self, index: int, account: Account) -> None:
        """A member comes online: registers (fetching the realm's presence), reports, and
        stays online."""
        headers = {"Authorization": account.authorization}
        started = time.perf_counter()
        data = {"event_types": '["presence"]', "narrow": "[]", "slim_presence": "true"}
        try:
            async with self.session.post(
                f"{self.url(index)}/api/v1/register", data=data, headers=headers
            ) as response:
                registered = json.loads(await response.read())
            self.stats.register_ms.append((time.perf_counter() - started) * 1000)
            self.arrived_at[account.user_id] = time.perf_counter()
            async with self.session.post(
                f"{self.presence_url}/api/v1/users/me/presence",
                data={"status": "active", "last_update_id": "-1"},
                headers=headers,
            ) as response:
                body = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.stats.error(f"arrival: {type(exc).__name__}: {exc}")
            return
        if registered.get("result") != "success" or body.get("result") != "success":
            self.stats.error(f"arrival: {registered} {body}")
            return
        self.start(
            index,
            account,
            registered["queue_id"],
            body["presence_last_update_id"],
            PRESENCE_INTERVAL_SECS,
        )


async def setup(session: aiohttp.ClientSession, url: str, online: list[Account]) -> int:
    """Every member online at the start reports once; returns the realm's newest update id
    then, the cursor each client starts from (as if its previous poll had just given it)."""
    semaphore = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def report(index: int, account: Account) -> None:
        async with (
            semaphore,
            session.post(
                f"{url}/api/v1/users/me/presence",
                data={"status": "active", "ping_only": "true"},
                headers={"Authorization": account.authorization},
            ) as response,
        ):
            body = await response.json()
            assert body["result"] == "success", body

    await asyncio.gather(*(report(i, a) for i, a in enumerate(online)))
    async with session.post(
        f"{url}/api/v1/users/me/presence",
        data={"status": "active", "last_update_id": "-1"},
        headers={"Authorization": online[0].authorization},
    ) as response:
        newest: int = (await response.json())["presence_last_update_id"]
    return newest


async def run_day(
    day: Day, servers: list[LoopbackServer], presence: LoopbackServer, accounts: list[Account]
) -> None:
    """``servers`` serve register and events, ``presence`` the presence API (one of them, or
    gunicorn)."""
    urls = [server.url for server in servers]
    event_pids = [server.process.pid for server in servers]
    presence_pids = _pids(presence) if presence not in servers else []
    pids = event_pids + presence_pids
    online, arriving = accounts[: day.online_at_start], accounts[day.online_at_start :]
    # Idle connections are dropped well before gunicorn closes them (keep-alive 2 s): a post
    # sent on one the server is closing fails with "Server disconnected", the client's race.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=CLIENT_KEEPALIVE_SECS)
    timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT_SECS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cursor = await setup(session, presence.url, online)
        reported = time.perf_counter()
        queue_ids = await register_all(session, urls, online)
        day.server_rss_mib["queues_registered"] = rss_mib(pids)
        # Every post of the window comes a minute after the client's previous one, and so
        # writes, as in the steady state (a report within 55 s of the last writes nothing).
        steady_at = reported + PRESENCE_INTERVAL_SECS - 4 if day.steady else 0.0
        window_start = max(steady_at, time.perf_counter() + 2)
        clients = Clients(session, urls, presence.url, window_start + day.window_secs)
        for index, (account, queue_id) in enumerate(zip(online, queue_ids, strict=True)):
            # Posting every 60 s at its own phase, from the start of the window.
            phase = (
                window_start - time.perf_counter() + PRESENCE_INTERVAL_SECS * index / len(online)
            )
            clients.start(index, account, queue_id, cursor, phase)
        await wait_until_idle(pids)
        day.server_rss_mib["polls_waiting"] = rss_mib(pids)
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        clients.measuring = True
        ticks, event_ticks = cpu_ticks(pids), cpu_ticks(event_pids)
        started = time.perf_counter()
        arrivals: list[asyncio.Task[None]] = []
        interval = 1 / day.arrivals_per_sec
        for count, account in enumerate(arriving):
            due = started + interval * (count + 1)
            if due >= clients.stop_at:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            arrivals.append(asyncio.create_task(clients.arrive(len(online) + count, account)))
        await asyncio.sleep(max(0.0, clients.stop_at - time.perf_counter()))
        elapsed = time.perf_counter() - started
        day.server_cpu_secs = round((cpu_ticks(pids) - ticks) / CLOCK_TICKS, 2)
        day.server_cpu_share = round(day.server_cpu_secs / elapsed, 3)
        event_secs = (cpu_ticks(event_pids) - event_ticks) / CLOCK_TICKS
        day.events_server_cpu_share = round(event_secs / elapsed, 3)
        day.window_secs = round(elapsed, 1)
        day.server_rss_mib["end_of_window"] = rss_mib(pids)
        clients.measuring = False
        day.arrivals = len(arrivals)
        for task in [*clients.tasks, *arrivals]:
            task.cancel()
        await asyncio.wait_for(
            asyncio.gather(*clients.tasks, *arrivals, return_exceptions=True), STOP_TIMEOUT_SECS
        )
    stats = clients.stats
    day.posts = len(stats.post_ms)
    day.post_ms = percentiles(stats.post_ms) if stats.post_ms else {}
    day.deliveries = len(stats.delivery_ms)
    day.delivery_ms = percentiles(stats.delivery_ms) if stats.delivery_ms else {}
    day.register_ms = percentiles(stats.register_ms) if stats.register_ms else {}
    day.polls, day.heartbeats = stats.polls, stats.heartbeats
    day.errors, day.error_samples = stats.errors, stats.error_samples


# The presence API's server in the recommended deployment (docs/scaling.md).
PRESENCE_SERVER = "gunicorn-gthread"


def _events_server(log_path: Path, **env: str) -> LoopbackServer:
    """One uvicorn process with django-presence's ASGI application, on bench.settings (the
    database the day runs on; no persistent connections under ASGI)."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "example_project.asgi:application"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--no-access-log", "--timeout-graceful-shutdown", "1"),
    ]
    return LoopbackServer(
        "the events server",
        command,
        server_environment(BENCH_CONN_MAX_AGE="0", **env),
        port,
        log_path,
        cwd=REPO,
    )


def _pids(server: LoopbackServer) -> list[int]:
    """A server's process and its children (gunicorn's workers)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    found = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    return [server.process.pid, *found]


def _postgres_env(name: str) -> dict[str, str]:
    params = db.server_params()
    return {
        "EXAMPLE_PG_NAME": name,
        "EXAMPLE_PG_HOST": params["host"],
        "EXAMPLE_PG_PORT": params["port"],
        "EXAMPLE_PG_USER": params["user"],
        "EXAMPLE_PG_PASSWORD": params["password"],
    }


def run(
    members: int,
    online: int,
    arrivals: float,
    window: float,
    backend: str,
    *,
    steady: bool = True,
    postgres: bool = True,
) -> dict[str, Any]:
    raise_open_files_limit()
    if backend == "redis" and not redis_reachable():
        raise SystemExit(f"Redis is not reachable at {REDIS_URL}")
    if postgres and not db.reachable():
        raise SystemExit("PostgreSQL is not reachable (or pass --sqlite)")
    results: dict[str, Any] = {"machine": machine()}
    database = f"presence_perf_day_{os.getpid()}"
    database_env = _postgres_env(database) if postgres else {}
    results["machine"]["database"] = f"PostgreSQL {db.server_version()}" if postgres else "SQLite"
    with tempfile.TemporaryDirectory(prefix="presence-events-day-") as tmp:
        directory = Path(tmp)
        db_path = directory / "day.sqlite3"
        if postgres:
            db.recreate(database)
        try:
            results["day"] = _run(
                directory, db_path, database_env, members, online, arrivals, window, backend, steady
            )
        finally:
            if postgres:
                db.drop(database)
    return results


def _run(
    directory: Path,
    db_path: Path,
    database_env: dict[str, str],
    members: int,
    online: int,
    arrivals: float,
    window: float,
    backend: str,
    steady: bool,
) -> dict[str, Any]:
    print(f"Seeding {members} members ...", flush=True)
    accounts = seed(db_path, members, **database_env)
    env = {"EXAMPLE_USER_LIMIT_FOR_EVENTS": str(USER_LIMIT_FOR_EVENTS), **database_env}
    prefix = f"presence-day-{uuid.uuid4().hex[:12]}"
    day = Day(backend, 1, members, online, arrivals, window, steady)
    servers: list[LoopbackServer] = []
    presence: LoopbackServer | None = None
    try:
        if backend == "redis":
            # The deployment docs/scaling.md recommends: the presence API on gunicorn, the
            # event queues on uvicorn, sharing the database and Redis.
            redis_env = {
                "EXAMPLE_EVENT_REDIS_URL": REDIS_URL,
                "EXAMPLE_EVENT_REDIS_KEY_PREFIX": prefix,
                "EXAMPLE_USER_LIMIT_FOR_EVENTS": str(USER_LIMIT_FOR_EVENTS),
                "BENCH_PG_NAME": database_env["EXAMPLE_PG_NAME"],
            }
            servers.append(_events_server(directory / "events.log", **redis_env))
            presence = BenchServer(PRESENCE_SERVER, directory / "presence.log", **redis_env)
            day.presence_server = SERVERS[PRESENCE_SERVER]
        else:
            env = {"EXAMPLE_USER_LIMIT_FOR_EVENTS": str(USER_LIMIT_FOR_EVENTS), **database_env}
            log_path = directory / "server.log"
            servers.append(ExampleServer(db_path, free_port(), log_path, asgi=True, **env))
            presence = servers[0]
            day.presence_server = "the same uvicorn process"
        print(f"{online} clients online, {arrivals}/s arriving, {window} s ...", flush=True)
        asyncio.run(run_day(day, servers, presence, accounts))
    finally:
        for server in servers:
            server.stop()
        if presence is not None and presence not in servers:
            presence.stop()
        if backend == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            for key in client.scan_iter(f"{prefix}:*"):
                client.delete(key)
            client.close()
    print(json.dumps(asdict(day), indent=2), flush=True)
    return asdict(day)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--online", type=int, default=2_500)
    parser.add_argument("--arrivals", type=float, default=0.35, help="members coming online /s")
    parser.add_argument("--window", type=float, default=90.0, help="seconds measured")
    parser.add_argument(
        "--backend",
        choices=("in_process", "redis"),
        default="redis",
        help="redis: gunicorn for the presence API and uvicorn for the events, as docs/scaling.md "
        "recommends; in_process: everything on one uvicorn process",
    )
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    parser.add_argument("--smoke", action="store_true", help="200 members, 40 online, 5 s")
    parser.add_argument("--output", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    if args.smoke and args.backend == "redis" and not redis_reachable():
        args.backend = "in_process"  # the smoke run checks what it can
    if args.smoke:
        results = run(200, 40, 2.0, 5.0, args.backend, steady=False, postgres=not args.sqlite)
    else:
        results = run(
            args.members,
            args.online,
            args.arrivals,
            args.window,
            args.backend,
            postgres=not args.sqlite,
        )
    day = results["day"]
    failed = day["errors"] or not day["posts"] or not day["deliveries"]
    output = args.output or (None if args.smoke else RESULTS)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"Wrote {output}")
    if failed:
        print(f"FAILED: {day['errors']} errors, {day['posts']} posts, {day['deliveries']} events")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
