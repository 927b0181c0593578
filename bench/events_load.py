"""Load test of the presence event queues, on loopback only.

    python -m bench.events_load            1,000 queues, in-process backend and Redis backend
    python -m bench.events_load --smoke    50 queues, one round, no results file

tests/test_events_e2e.py runs it with 50 queues and two rounds.

For each backend: N members of one realm register a queue and long-poll it at once, through
uvicorn (one process for the in-process backend, two processes sharing Redis for the Redis
backend, the polls spread over both). Then one more member comes online, on the first process,
and the load test times how long the presence event takes to reach every poll, from the start
of that member's POST. The realm is far bigger than Zulip's cut-off for presence events (100
members), so PRESENCE_USER_LIMIT_FOR_EVENTS is raised to 100,000.

Reported: p50/p90/p99/max delivery latency, the server processes' resident memory (idle, with
every poll waiting, after delivery) and Redis' memory. Bounded: every phase has a deadline, and
the whole run stops the servers it started. Writes bench/results/events.json (docs/performance.md
quotes it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

from loopback.example import Account, ExampleServer, create_accounts, manage
from loopback.server import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "events.json"
REDIS_URL = os.environ.get("PRESENCE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
USER_LIMIT_FOR_EVENTS = 100_000
SMOKE_QUEUES = 50
BACKENDS = ("in_process", "redis")
SEED_BATCH = 1000

PHASE_TIMEOUT_SECS = 120
DELIVERY_TIMEOUT_SECS = 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REGISTER_CONCURRENCY = 32
# The polls are all waiting once the servers have been idle for QUIET_SAMPLES samples in a row.
SETTLE_FLOOR_SECS = 1.0
SETTLE_SAMPLE_SECS = 0.25
QUIET_SAMPLES = 4
CLIENT_KEEPALIVE_SECS = 1.0
QUIET_TICKS = 1  # CPU clock ticks (usually 1/100 s) per sample that still count as idle


@dataclass
class Round:
    """One member coming online while every queue waits."""

    settle_secs: float
    load_average_before: float
    post_secs: float
    # CPU time the server processes spent from the write until every poll had its answer:
    # unlike the latencies, it does not depend on what else the machine is doing.
    server_cpu_ms: float
    # The whole delivery cycle: from the write until every client, having had its answer, has
    # polled again (acknowledging the event) and waits; less the servers' idle CPU over as long
    # (measured while the polls settled before the write). Per delivered event: the cost the
    # issue's target is about, the write itself included, spread over every delivery.
    cycle_cpu_ms: float
    cycle_cpu_per_delivery_us: float
    answered_before_the_write: int
    latency_ms: dict[str, float]


@dataclass
class Scenario:
    backend: str
    processes: int
    queues: int
    register_secs: float = 0.0
    delivered: int = 0
    # Over every delivery of every round.
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_after_post_response_ms: dict[str, float] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    # The median over the rounds of the cycle's CPU per delivered event.
    cpu_per_delivery_us: float = 0.0
    server_rss_mib: dict[str, float] = field(default_factory=dict)
    # (polls waiting - queues registered) / queues: the connection and the waiting poll.
    memory_per_waiting_poll_kib: float = 0.0
    redis_used_memory_mib: dict[str, float] = field(default_factory=dict)


def rss_mib(pids: list[int]) -> float:
    """Resident memory of the server processes, summed (Linux /proc)."""
    total_kib = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)


def cpu_ticks(pids: list[int]) -> int:
    """User plus system CPU time of the server processes, in clock ticks (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total


@dataclass
class Settled:
    secs: float
    # The servers' CPU while quiet, in ms per second (timers, pings): subtracted from cycles.
    idle_cpu_ms_per_sec: float


async def wait_until_idle(pids: list[int]) -> Settled:
    """Until the servers stop using CPU: every poll has then been read and is waiting.
    Bounded by PHASE_TIMEOUT_SECS."""
    started = time.perf_counter()
    last, quiet = cpu_ticks(pids), 0
    quiet_ticks, quiet_since = 0, started
    while time.perf_counter() - started < PHASE_TIMEOUT_SECS:
        await asyncio.sleep(SETTLE_SAMPLE_SECS)
        ticks = cpu_ticks(pids)
        if ticks - last <= QUIET_TICKS:
            if quiet == 0:
                quiet_ticks, quiet_since = 0, time.perf_counter() - SETTLE_SAMPLE_SECS
            quiet += 1
            quiet_ticks += ticks - last
        else:
            quiet = 0
        last = ticks
        if quiet >= QUIET_SAMPLES and time.perf_counter() - started >= SETTLE_FLOOR_SECS:
            break
    quiet_secs = max(time.perf_counter() - quiet_since, SETTLE_SAMPLE_SECS)
    idle = quiet_ticks * 1000 / os.sysconf("SC_CLK_TCK") / quiet_secs
    return Settled(round(time.perf_counter() - started, 2), round(idle, 2))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)

    return {
        "p50": round(statistics.median(ordered), 1),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1], 1),
    }


def seed(db_path: Path, count: int, **env: str) -> list[Account]:
    """``count`` members of one realm with API keys, in the SQLite file ``db_path`` (or the
    database ``env`` names, e.g. EXAMPLE_PG_NAME)."""
    manage(db_path, "migrate", "--verbosity=0", **env)
    usernames = [f"load{index}" for index in range(count)]
    accounts: list[Account] = []
    # In batches: the usernames go to manage.py on its command line.
    for start in range(0, count, SEED_BATCH):
        batch = dict.fromkeys(usernames[start : start + SEED_BATCH], "loadtest")
        accounts += create_accounts(db_path, batch, **env).values()
    return accounts


async def register_all(
    session: aiohttp.ClientSession, servers: list[str], accounts: list[Account]
) -> list[str]:
    semaphore = asyncio.Semaphore(REGISTER_CONCURRENCY)

    async def register(index: int, account: Account) -> str:
        async with semaphore:
            url = f"{servers[index % len(servers)]}/api/v1/register"
            data = {"event_types": '["presence"]', "narrow": "[]", "fetch_event_types": "[]"}
            headers = {"Authorization": account.authorization}
            async with session.post(url, data=data, headers=headers) as response:
                body = await response.json()
        assert body["result"] == "success", body
        queue_id: str = body["queue_id"]
        return queue_id

    return await asyncio.gather(*(register(i, a) for i, a in enumerate(accounts)))


async def long_poll(
    session: aiohttp.ClientSession, server: str, account: Account, queue_id: str, last: int
) -> tuple[float, bytes]:
    url = f"{server}/api/v1/events"
    params = {"queue_id": queue_id, "last_event_id": str(last)}
    headers = {"Authorization": account.authorization}
    async with session.get(url, params=params, headers=headers) as response:
        raw = await response.read()
    # Timed on arrival; parsed after every poll has answered, off the critical path.
    return time.perf_counter(), raw


async def run_scenario(
    scenario: Scenario,
    servers: list[ExampleServer],
    watchers: list[Account],
    subjects: list[Account],
    redis_client: redis.Redis | None,
) -> None:
    """Register a queue per watcher, then one round per subject: every queue long-polls
    (acknowledging the previous round's event), the subject comes online, every poll answers."""
    urls = [server.url for server in servers]
    pids = [server.process.pid for server in servers]

    def memory(label: str) -> None:
        scenario.server_rss_mib[label] = rss_mib(pids)
        if redis_client is not None:
            used = int(redis_client.info("memory")["used_memory"])
            scenario.redis_used_memory_mib[label] = round(used / 2**20, 1)

    memory("idle")
    # Idle connections are dropped before uvicorn closes them (keep-alive 5 s): a request sent
    # on one the server is closing fails with "Server disconnected", the client's race.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=CLIENT_KEEPALIVE_SECS)
    timeout = aiohttp.ClientTimeout(total=PHASE_TIMEOUT_SECS)
    latencies: list[float] = []
    after_post: list[float] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        queue_ids = await asyncio.wait_for(
            register_all(session, urls, watchers), PHASE_TIMEOUT_SECS
        )
        scenario.register_secs = round(time.perf_counter() - started, 2)
        memory("queues_registered")

        def start_polls(last: int) -> list[asyncio.Task[tuple[float, bytes]]]:
            return [
                asyncio.create_task(
                    long_poll(session, urls[i % len(urls)], account, queue_id, last)
                )
                for i, (account, queue_id) in enumerate(zip(watchers, queue_ids, strict=True))
            ]

        polls = start_polls(-1)
        settled = await wait_until_idle(pids)
        memory("polls_waiting")
        try:
            for event_id, subject in enumerate(subjects):
                load_average = round(os.getloadavg()[0], 2)
                ticks_before = cpu_ticks(pids)
                write_started = time.perf_counter()
                async with session.post(
                    f"{urls[0]}/api/v1/users/me/presence",
                    data={"status": "active"},
                    headers={"Authorization": subject.authorization},
                ) as response:
                    assert (await response.json())["result"] == "success"
                write_answered = time.perf_counter()
                done = await asyncio.wait_for(asyncio.gather(*polls), DELIVERY_TIMEOUT_SECS)
                server_cpu_ms = (cpu_ticks(pids) - ticks_before) * 1000 / CLOCK_TICKS
                # As real clients do: every client polls again at once, acknowledging the event.
                polls = start_polls(event_id)
                idle_rate = settled.idle_cpu_ms_per_sec
                settled = await wait_until_idle(pids)
                cycle_secs = time.perf_counter() - write_started
                cycle_cpu_ms = (cpu_ticks(pids) - ticks_before) * 1000 / CLOCK_TICKS
                cycle_cpu_ms = max(0.0, cycle_cpu_ms - idle_rate * cycle_secs)

                round_latencies = []
                answered_early = 0
                for received_at, raw in done:
                    body = json.loads(raw)
                    assert body["result"] == "success", body
                    expected = [("presence", subject.user_id, event_id)]
                    assert [(e["type"], e["user_id"], e["id"]) for e in body["events"]] == expected
                    answered_early += "queue_id" not in body
                    round_latencies.append((received_at - write_started) * 1000)
                    after_post.append((received_at - write_answered) * 1000)
                latencies += round_latencies
                scenario.rounds.append(
                    Round(
                        settle_secs=settled.secs,
                        load_average_before=load_average,
                        post_secs=round(write_answered - write_started, 4),
                        server_cpu_ms=round(server_cpu_ms),
                        cycle_cpu_ms=round(cycle_cpu_ms),
                        cycle_cpu_per_delivery_us=round(cycle_cpu_ms * 1000 / len(watchers), 1),
                        answered_before_the_write=answered_early,
                        latency_ms=percentiles(round_latencies),
                    )
                )
        finally:
            # The last re-polls would wait for the long-poll time: the run is over.
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        memory("after_delivery")

    scenario.delivered = len(latencies)
    scenario.cpu_per_delivery_us = statistics.median(
        r.cycle_cpu_per_delivery_us for r in scenario.rounds
    )
    rss = scenario.server_rss_mib
    waiting = rss["polls_waiting"] - rss["queues_registered"]
    scenario.memory_per_waiting_poll_kib = round(waiting * 1024 / len(watchers), 1)
    scenario.latency_ms = percentiles(latencies)
    scenario.latency_after_post_response_ms = percentiles(after_post)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    info: dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20),
        "python": platform.python_version(),
        "os": platform.platform(),
    }
    return info


def redis_reachable() -> bool:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def raise_open_files_limit() -> int:
    """Every poll is a socket in the load generator and in a server (which inherit the limit):
    the soft limit goes up to the hard one. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run(
    queues: int, rounds: int, backends: tuple[str, ...] = BACKENDS, redis_processes: int = 2
) -> dict[str, Any]:
    """The scenarios of ``backends`` (the Redis one only if Redis answers) with ``queues`` long
    polls each, ``rounds`` members coming online one after the other."""
    open_files = raise_open_files_limit()
    if open_files < queues + 1000:
        raise SystemExit(f"{queues} polls need more open files than the hard limit {open_files}")
    use_redis = "redis" in backends and redis_reachable()
    if not use_redis:
        print(f"Redis is not reachable at {REDIS_URL}: the Redis scenario is skipped.")
    results: dict[str, Any] = {
        "machine": machine(),
        "queues": queues,
        "rounds": rounds,
        "scenarios": [],
    }
    if use_redis:
        client = redis.Redis.from_url(REDIS_URL)
        results["machine"]["redis"] = client.info("server")["redis_version"]
        client.close()

    with tempfile.TemporaryDirectory(prefix="presence-events-load-") as tmp:
        directory = Path(tmp)
        db_path = directory / "load.sqlite3"
        print(f"Seeding {queues + 2 * rounds} members ...", flush=True)
        accounts = seed(db_path, queues + 2 * rounds)
        watchers, subjects = accounts[:queues], accounts[queues:]
        base_env = {"EXAMPLE_USER_LIMIT_FOR_EVENTS": str(USER_LIMIT_FOR_EVENTS)}
        plans: list[tuple[str, int, dict[str, str]]] = []
        if "in_process" in backends:
            plans.append(("in_process", 1, {}))
        prefix = f"presence-load-{uuid.uuid4().hex[:12]}"
        if use_redis:
            redis_env = {
                "EXAMPLE_EVENT_REDIS_URL": REDIS_URL,
                "EXAMPLE_EVENT_REDIS_KEY_PREFIX": prefix,
            }
            plans.append(("redis", redis_processes, redis_env))
        for index, (backend, processes, env) in enumerate(plans):
            scenario_subjects = subjects[index * rounds : (index + 1) * rounds]
            print(f"{backend}: {queues} long polls on {processes} process(es) ...", flush=True)
            servers: list[ExampleServer] = []
            redis_client = redis.Redis.from_url(REDIS_URL) if backend == "redis" else None
            try:
                for index in range(processes):
                    log_path = directory / f"{backend}-{index}.log"
                    servers.append(
                        ExampleServer(db_path, free_port(), log_path, asgi=True, **base_env, **env)
                    )
                scenario = Scenario(backend=backend, processes=processes, queues=queues)
                asyncio.run(
                    run_scenario(scenario, servers, watchers, scenario_subjects, redis_client)
                )
            finally:
                for server in servers:
                    server.stop()
                if redis_client is not None:
                    for key in redis_client.scan_iter(f"{prefix}:*"):
                        redis_client.delete(key)
                    redis_client.close()
            results["scenarios"].append(asdict(scenario))
            print(json.dumps(asdict(scenario), indent=2), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--redis-processes", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_QUEUES} queues, no file")
    parser.add_argument("--output", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    results = run(
        *((SMOKE_QUEUES, 1) if args.smoke else (args.queues, args.rounds)),
        backends=tuple(args.backends.split(",")),
        redis_processes=args.redis_processes,
    )
    output = args.output or (None if args.smoke else RESULTS)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
