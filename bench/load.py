"""Items 4 and 5: HTTP load against real server processes, from a separate load generator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from django_presence.models import PresenceSequence, UserPresence

from .seed import SeededRealm
from .server import SERVERS, Server, run_load

MODES = ("noop", "ping", "poll")
# Zulip's clients report every 60 s; every report more than 55 s after the last one writes.
PING_INTERVAL_SECS = 60


def _users(realm: SeededRealm, count: int | None = None) -> list[tuple[int, str]]:
    """Active members other than member 1 (the in-process viewer), in order."""
    members = [
        (realm.user_id(g), realm.email(g)) for g in range(2, realm.size + 1) if realm.is_active(g)
    ]
    return members[:count] if count else members


def _sequence(realm: SeededRealm) -> int:
    return PresenceSequence.objects.get(realm_id=realm.realm_id).last_update_id


def reset_rows(realm: SeededRealm) -> None:
    """Every member last reported 2 minutes ago: the next report of each writes (as every
    report once a minute does) without counting as coming online."""
    moment = timezone.now() - timedelta(minutes=2)
    UserPresence.objects.filter(realm_id=realm.realm_id).update(
        last_active_time=moment, last_connected_time=moment
    )


def http_load(
    realm: SeededRealm,
    servers: list[str],
    *,
    rounds: int,
    duration: float,
    concurrency: int,
    log_dir: Path,
) -> list[dict[str, Any]]:
    """For each server, ``rounds`` times in turn: the no-op endpoint, ping_only reports and
    polling clients, each for ``duration`` seconds with ``concurrency`` connections. Users are
    taken in turn, and every member last reported 2 minutes before each run, so every report
    writes. The rounds of a case are merged (requests over time, latencies pooled)."""
    results = []
    for name in servers:
        server = Server(name, log_dir / f"{name}.log")
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        try:
            warm = {
                "url": f"{server.url}/bench/noop",
                "mode": "noop",
                "duration": 1.0,
                "max_requests": 2000,
                "concurrency": concurrency,
                "users": [[*user, -1] for user in _users(realm, 50)],
            }
            run_load(warm)
            for _ in range(rounds):
                for mode in MODES:
                    runs[mode].append(_one_run(server, realm, mode, duration, concurrency))
        finally:
            server.stop()
        for mode in MODES:
            result = _merged(runs[mode])
            result.update(server=name, server_description=SERVERS[name], realm_size=realm.size)
            results.append(result)
            print(
                f"  {name:<17} {mode:<5} {result['throughput_rps']:8.1f} req/s  "
                f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                f"errors {result['errors']} {result['error_samples'][:1]}",
                flush=True,
            )
    return results


def _one_run(
    server: Server, realm: SeededRealm, mode: str, duration: float, concurrency: int
) -> dict[str, Any]:
    reset_rows(realm)
    cursor = _sequence(realm)
    path = "/bench/noop" if mode == "noop" else "/api/v1/users/me/presence"
    spec = {
        "url": server.url + path,
        "mode": mode,
        "duration": duration,
        "max_requests": 1_000_000,
        "concurrency": concurrency,
        "users": [[*user, cursor] for user in _users(realm)],
    }
    result = run_load(spec)
    result["writes"] = _sequence(realm) - cursor
    return result


def _merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(latency for run in runs for latency in run.pop("latencies_ms"))
    requests = sum(run["requests"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    response_bytes = sum(run["bytes_per_response"] * run["requests"] for run in runs)
    return {
        "mode": runs[0]["mode"],
        "concurrency": runs[0]["concurrency"],
        "rounds": len(runs),
        "seconds": round(seconds, 3),
        "requests": requests,
        "errors": sum(run["errors"] for run in runs),
        "error_samples": [sample for run in runs for sample in run["error_samples"]][:5],
        "throughput_rps": round(requests / seconds, 1),
        "round_throughputs_rps": [run["throughput_rps"] for run in runs],
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "bytes_per_response": round(response_bytes / requests, 1),
        "writes": sum(run["writes"] for run in runs),
    }


def percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def seed_steady_state(realm: SeededRealm, online: list[tuple[int, str]]) -> list[int]:
    """The minute before the simulated one: online client ``i`` (of ``n``) polled at
    ``60 * i / n - 60`` seconds from now, wrote its row then and got back the update id of
    that write, which becomes its cursor. Returns the cursors."""
    start = timezone.now()
    first_id = _sequence(realm) + 1
    user_ids = [user_id for user_id, _email in online]
    spacing = PING_INTERVAL_SECS / len(online)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {UserPresence._meta.db_table} p SET"
            " last_active_time = %(start)s + ((v.n - 1) * %(spacing)s - %(interval)s)"
            " * interval '1 second',"
            " last_connected_time = %(start)s + ((v.n - 1) * %(spacing)s - %(interval)s)"
            " * interval '1 second',"
            " last_update_id = %(first)s + v.n - 1"
            " FROM unnest(%(users)s::bigint[]) WITH ORDINALITY AS v(user_id, n)"
            " WHERE p.user_id = v.user_id",
            {
                "start": start,
                "spacing": spacing,
                "interval": PING_INTERVAL_SECS,
                "first": first_id,
                "users": user_ids,
            },
        )
    PresenceSequence.objects.filter(realm_id=realm.realm_id).update(
        last_update_id=first_id + len(online) - 1
    )
    return [first_id + i for i in range(len(online))]


def realistic_day(
    realm: SeededRealm, server_name: str, *, online: int, duration: float, log_dir: Path
) -> dict[str, Any]:
    """``online`` clients of the realm each POST users/me/presence every 60 s with their
    last_update_id, in real time (no compression), from a steady state."""
    server = Server(server_name, log_dir / f"day-{server_name}.log")
    try:
        reset_rows(realm)
        users = _users(realm, online)
        cursors = seed_steady_state(realm, users)
        before = _sequence(realm)
        spec = {
            "url": f"{server.url}/api/v1/users/me/presence",
            "mode": "day",
            "duration": duration,
            "interval": PING_INTERVAL_SECS,
            "max_requests": int(online * (duration / PING_INTERVAL_SECS + 1)),
            "concurrency": 64,
            "users": [[*user, cursor] for user, cursor in zip(users, cursors, strict=True)],
        }
        result = run_load(spec)
        result.pop("latencies_ms")
        writes = _sequence(realm) - before
        memory = server.peak_memory()
    finally:
        server.stop()
    result.update(
        server=server_name,
        realm_size=realm.size,
        online_clients=online,
        interval_secs=PING_INTERVAL_SECS,
        db_writes=writes,
        db_writes_per_sec=round(writes / result["seconds"], 1),
        server_peak_memory=memory,
    )
    print(
        f"  day: {online} clients, {result['requests']} polls, p99 {result['p99_ms']} ms, "
        f"{result['db_writes_per_sec']} writes/s, {result['bytes_per_response']} bytes/poll, "
        f"server peak {memory['total_bytes'] / 2**20:.0f} MiB, errors {result['errors']}",
        flush=True,
    )
    return result
