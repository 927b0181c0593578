"""Measurements inside one process (items 1-3 of docs/performance.md): full fetches against the
raw-SQL floor, empty incremental polls, and SQL statements per ping."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import orjson
import psycopg
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_presence.conf import presence_settings
from django_presence.models import ApiKey, PresenceSequence, RealmMember, UserPresence

from . import db
from .client import Response, WSGIClient, ok
from .seed import SeededRealm

VIEWER = 1  # member g=1 of each realm does the in-process requests


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


# Item 1: full fetch against the floor -------------------------------------------------------


def _floor_sql() -> str:
    """The app's realm read written by hand, timestamps as UNIX microseconds in SQL (psycopg
    parses integers in C; datetimes would cost more than everything else)."""
    presence = UserPresence._meta.db_table
    member = RealmMember._meta.db_table
    users = get_user_model()._meta.db_table
    return (
        "SELECT p.user_id, u.email,"
        " (EXTRACT(EPOCH FROM COALESCE(p.last_active_time, m.date_joined)) * 1000000)::bigint,"
        " (EXTRACT(EPOCH FROM COALESCE(p.last_connected_time, m.date_joined)) * 1000000)::bigint,"
        " p.last_update_id"
        f" FROM {presence} p JOIN {member} m ON m.user_id = p.user_id"
        f" JOIN {users} u ON u.id = p.user_id"
        " WHERE p.realm_id = %(realm)s AND m.realm_id = %(realm)s AND m.is_active"
        " AND NOT m.is_bot AND u.is_active AND p.last_connected_time >= %(window)s"
    )


def floor_fetch(conn: psycopg.Connection, realm: SeededRealm, modern: bool) -> bytes:
    """The least a server can do for the same answer: one query with psycopg, the dict built
    in a comprehension, orjson.dumps."""
    window = timezone.now() - timedelta(days=presence_settings.DEFAULT_HISTORY_LIMIT_DAYS)
    rows = conn.execute(_floor_sql(), {"realm": realm.realm_id, "window": window}).fetchall()
    body: dict[str, Any] = {"result": "success", "msg": ""}
    if modern:
        body["presences"] = {
            str(user_id): {
                "active_timestamp": int(active / 1_000_000),
                "idle_timestamp": int(connected / 1_000_000),
            }
            for user_id, _email, active, connected, _update_id in rows
        }
    else:
        offset = presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS
        presences = {}
        for _user_id, email, active, connected, _update_id in rows:
            active_at, connected_at = active / 1_000_000, connected / 1_000_000
            if active_at + offset >= connected_at:
                status, timestamp = "active", int(active_at)
            else:
                status, timestamp = "idle", int(connected_at)
            presences[email] = {
                "aggregated": {"client": "website", "status": status, "timestamp": timestamp},
                "website": {
                    "client": "website",
                    "status": status,
                    "timestamp": timestamp,
                    "pushable": False,
                },
            }
        body["presences"] = presences
    body["server_timestamp"] = time.time()
    if modern:
        body["presence_last_update_id"] = max(row[4] for row in rows) if rows else -1
    return orjson.dumps(body)


def _comparable(body: bytes) -> Any:
    parsed = orjson.loads(body)
    parsed.pop("server_timestamp")
    return parsed


def full_fetch(realms: list[SeededRealm], repeats: dict[int, int]) -> list[dict[str, Any]]:
    """GET realm/presence and POST users/me/presence last_update_id=-1 at each size, each run
    followed by the floor for the same answer; the bodies must be equal but for
    server_timestamp."""
    results = []
    with db.connect(connection.settings_dict["NAME"]) as conn:
        for realm in realms:
            client = WSGIClient(realm, VIEWER)
            ok(client.post_presence(status="active"))  # the viewer's write, before timing
            for modern in (False, True):
                fetch: Callable[[], Response] = (
                    partial(client.post_presence, status="active", last_update_id=-1)
                    if modern
                    else client.realm_presence
                )
                app_times, floor_times = [], []
                body = floor_body = b""
                for _ in range(repeats[realm.size] + 1):  # the first run warms up
                    response = ok(fetch())
                    body = response.body
                    app_times.append(response.seconds)
                    started = time.perf_counter()
                    floor_body = floor_fetch(conn, realm, modern)
                    floor_times.append(time.perf_counter() - started)
                if _comparable(body) != _comparable(floor_body):
                    raise AssertionError(f"app and floor answers differ at {realm.size}")
                entries = len(orjson.loads(body)["presences"])
                app_ms, floor_ms = median_ms(app_times[1:]), median_ms(floor_times[1:])
                results.append(
                    {
                        "endpoint": "POST users/me/presence last_update_id=-1"
                        if modern
                        else "GET realm/presence",
                        "format": "modern" if modern else "legacy",
                        "realm_size": realm.size,
                        "entries": entries,
                        "runs": repeats[realm.size],
                        "median_ms": app_ms,
                        "floor_median_ms": floor_ms,
                        "ratio_to_floor": round(app_ms / floor_ms, 3),
                        "response_bytes": len(body),
                        "bytes_per_entry": round(len(body) / max(entries, 1), 1),
                    }
                )
                print(
                    f"  full fetch {results[-1]['format']:>6} {realm.size:>7,}: "
                    f"{app_ms:8.2f} ms, floor {floor_ms:8.2f} ms, "
                    f"x{results[-1]['ratio_to_floor']:.2f}, {len(body):,} bytes",
                    flush=True,
                )
    return results


# Item 2: incremental poll with nothing new --------------------------------------------------


def current_update_id(realm: SeededRealm) -> int:
    return PresenceSequence.objects.get(realm_id=realm.realm_id).last_update_id


def empty_polls(realms: list[SeededRealm], rounds: int, per_round: int) -> dict[str, Any]:
    """POST users/me/presence by a viewer whose last report is recent (so nothing is
    written): with last_update_id = the realm's current id (nothing new), and with the id
    before it (one new row: the viewer's own last write, so the realm read runs). Interleaved
    across realm sizes and the no-op endpoint, so that all share the machine's state."""
    clients = {realm.size: WSGIClient(realm, VIEWER) for realm in realms}
    noop_client = clients[realms[0].size]
    for client in clients.values():
        ok(client.post_presence(status="active"))  # the newest write of its realm
    current = {realm.size: current_update_id(realm) for realm in realms}
    cases = [(str(size), 0) for size in clients] + [(f"{size}:one", 1) for size in clients]
    samples: dict[str, list[float]] = {key: [] for key, _ in cases} | {"noop": []}
    for _ in range(rounds):
        # Reported just now (without a new update id): no poll of this round writes.
        moment = timezone.now()
        UserPresence.objects.filter(user_id__in=[c.user_id for c in clients.values()]).update(
            last_active_time=moment, last_connected_time=moment
        )
        for key, behind in cases:
            size = int(key.split(":")[0])
            cursor = current[size] - behind
            for _ in range(per_round):
                response = ok(clients[size].post_presence(status="active", last_update_id=cursor))
                samples[key].append(response.seconds)
            body = orjson.loads(response.body)
            expected = [str(clients[size].user_id)] if behind else []
            if (
                list(body["presences"]) != expected
                or body["presence_last_update_id"] != (current[size])
            ):
                raise AssertionError(f"unexpected poll answer at {key}: {body}")
        for _ in range(per_round):
            samples["noop"].append(ok(noop_client.noop()).seconds)
    smallest, largest = str(realms[0].size), str(realms[-1].size)
    medians = {key: median_ms(values) for key, values in samples.items()}
    result = {
        "requests_per_case": rounds * per_round,
        "median_ms": {key: medians[key] for key in [*clients_keys(clients), "noop"]},
        "one_new_row_median_ms": {str(size): medians[f"{size}:one"] for size in clients},
        "noop_median_ms": medians["noop"],
        "ratio_largest_to_smallest": round(medians[largest] / medians[smallest], 3),
        "ratio_largest_to_noop": round(medians[largest] / medians["noop"], 3),
        "one_new_row_ratio_largest_to_smallest": round(
            medians[f"{largest}:one"] / medians[f"{smallest}:one"], 3
        ),
        "one_new_row_ratio_largest_to_noop": round(medians[f"{largest}:one"] / medians["noop"], 3),
    }
    print(f"  polls: {medians}", flush=True)
    return result


def clients_keys(clients: dict[int, WSGIClient]) -> list[str]:
    return [str(size) for size in clients]


# Item 3: SQL statements per ping ------------------------------------------------------------


def _statements(client: WSGIClient) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        ok(client.post_presence(status="active", ping_only=True))
    return [query["sql"] for query in captured.captured_queries]


def _noop_statements(client: WSGIClient) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        ok(client.noop())
    return [query["sql"] for query in captured.captured_queries]


def ping_statements(realm: SeededRealm) -> dict[str, Any]:
    """Statements of ping_only reports by member 2: its first report ever, a repeat within
    55 s, and a report 2 minutes later. Authentication (what the no-op endpoint runs) is
    counted apart."""
    client = WSGIClient(realm, 2)
    auth = _noop_statements(client)
    UserPresence.objects.filter(user_id=client.user_id).delete()
    first = _statements(client)
    repeat = _statements(client)
    earlier = timezone.now() - timedelta(minutes=2)
    UserPresence.objects.filter(user_id=client.user_id).update(
        last_active_time=earlier, last_connected_time=earlier
    )
    later = _statements(client)
    cases = {"first": first, "repeat_within_55s": repeat, "later": later}
    result: dict[str, Any] = {"authentication_statements": len(auth)}
    for name, statements in cases.items():
        if statements[: len(auth)] != auth:
            raise AssertionError(f"{name}: authentication is not the first statements")
        own = statements[len(auth) :]
        result[name] = {"statements": len(own), "sql": [_short(sql) for sql in own]}
    print(
        "  statements per ping (without auth): "
        + ", ".join(f"{name} {result[name]['statements']}" for name in cases),
        flush=True,
    )
    return result


def _short(sql: str, limit: int = 160) -> str:
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."


# EXPLAIN of the realm reads -----------------------------------------------------------------


def explain(realm: SeededRealm) -> dict[str, str]:
    """The plans of the app's own realm-read statements at the largest size: an incremental
    poll with one new row (the index on (realm, last_update_id)) and the full fetch."""
    client = WSGIClient(realm, VIEWER)
    ok(client.post_presence(status="active"))
    plans = {}
    for name, params in (
        # From the id before the newest: with nothing new, no read would run at all.
        ("incremental", {"last_update_id": current_update_id(realm) - 1}),
        ("full", {"last_update_id": -1}),
    ):
        with CaptureQueriesContext(connection) as captured:
            ok(client.post_presence(status="active", **params))
        read = next(q["sql"] for q in captured.captured_queries if _is_realm_read(q["sql"]))
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {read}")
            plans[name] = "\n".join(row[0] for row in cursor.fetchall())
    return plans


def _is_realm_read(sql: str) -> bool:
    """A SELECT of presence rows by realm: not authentication (which loads the caller's row
    with the API key), nor the write path's read of the caller's row."""
    return (
        sql.startswith("SELECT")
        and UserPresence._meta.db_table in sql
        and '"realm_id" = ' in sql
        and ApiKey._meta.db_table not in sql
    )
