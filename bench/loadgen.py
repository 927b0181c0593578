"""The load generator: an asyncio HTTP client in a process of its own, bounded in time and in
requests. ``python -m bench.loadgen < spec.json`` prints one JSON object of results.

Modes:
- ``noop``: POST bench/noop (the authenticated no-op baseline).
- ``ping``: POST users/me/presence with ``ping_only=true``, users taken in turn.
- ``poll``: POST users/me/presence with the user's ``last_update_id`` (a full polling client:
  each user keeps the cursor its last answer gave it), users taken in turn.
- ``day``: one client per online user, each polling every ``interval`` seconds at its own
  phase, as Zulip's clients do; see bench/day.py for the steady state it starts from.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from loopback.auth import basic_auth

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REQUEST_TIMEOUT_SECS = 30


def api_key_for(user_id: int) -> str:
    return f"bench{user_id:027d}"  # as bench.seed.api_key_for, without importing Django


@dataclass
class User:
    user_id: int
    email: str
    cursor: int = -1
    authorization: str = field(init=False)

    def __post_init__(self) -> None:
        self.authorization = basic_auth(self.email, api_key_for(self.user_id))


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    response_bytes: int = 0
    entries: int = 0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def one_request(
    session: aiohttp.ClientSession, url: str, user: User, mode: str, stats: Stats
) -> None:
    if mode == "noop":
        body = "status=active"
    elif mode == "ping":
        body = "status=active&ping_only=true"
    else:
        body = f"status=active&last_update_id={user.cursor}"
    headers = {**FORM, "Authorization": user.authorization}
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            content = await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        stats.error(f"{type(exc).__name__}: {exc}")
        return
    stats.latencies.append(time.perf_counter() - started)
    stats.response_bytes += len(content)
    if status != 200:
        stats.error(f"HTTP {status}: {content[:200]!r}")
        return
    if mode in ("poll", "day"):
        answer = orjson.loads(content)
        user.cursor = answer["presence_last_update_id"]
        stats.entries += len(answer["presences"])


async def closed_loop(spec: dict[str, Any], users: list[User], stats: Stats) -> float:
    """``concurrency`` connections, each sending its next request as soon as the last one is
    answered, until ``duration`` seconds or ``max_requests`` requests."""
    url = spec["url"]
    deadline = time.perf_counter() + spec["duration"]
    budget = spec["max_requests"]
    next_user = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal budget, next_user
        while time.perf_counter() < deadline and budget > 0:
            budget -= 1
            user = users[next_user % len(users)]
            next_user += 1
            await one_request(session, url, user, spec["mode"], stats)

    started = time.perf_counter()
    async with _session(spec["concurrency"]) as session:
        await asyncio.gather(*(worker(session) for _ in range(spec["concurrency"])))
    return time.perf_counter() - started


async def day(spec: dict[str, Any], users: list[User], stats: Stats) -> float:
    """Each user polls every ``interval`` seconds, the first time at its phase
    (``interval * i / len(users)``), for ``duration`` seconds; at most ``max_requests``."""
    url = spec["url"]
    interval = spec["interval"]
    started = time.perf_counter()
    end = started + spec["duration"]
    budget = spec["max_requests"]

    async def client(session: aiohttp.ClientSession, index: int, user: User) -> None:
        nonlocal budget
        due = started + interval * index / len(users)
        while due < end and budget > 0:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            budget -= 1
            await one_request(session, url, user, "day", stats)
            due += interval

    async with _session(spec["concurrency"]) as session:
        await asyncio.gather(*(client(session, i, user) for i, user in enumerate(users)))
    return time.perf_counter() - started


def _session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECS)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def main() -> None:
    spec = orjson.loads(sys.stdin.buffer.read())
    users = [User(user_id, email, cursor) for user_id, email, cursor in spec["users"]]
    stats = Stats()
    runner = day if spec["mode"] == "day" else closed_loop
    seconds = asyncio.run(runner(spec, users, stats))
    done = len(stats.latencies)
    result = {
        "mode": spec["mode"],
        "concurrency": spec["concurrency"],
        "seconds": round(seconds, 3),
        "requests": done,
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "throughput_rps": round(done / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(stats.latencies, 0.50) * 1000, 2) if done else None,
        "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 2) if done else None,
        "bytes_per_response": round(stats.response_bytes / done, 1) if done else None,
        "entries_per_response": round(stats.entries / done, 1) if done else None,
        "latencies_ms": [round(latency * 1000, 3) for latency in stats.latencies],
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
