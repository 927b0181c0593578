"""Where a delivery's CPU and a waiting poll's memory go, inside the app: no HTTP server.

    python -m bench.events_split            1,000 polls, 7 rounds
    python -m bench.events_split --smoke    50 polls, 2 rounds, no results file

bench/events_load.py measures through uvicorn, as clients see it. This drives
django-presence's ASGI application (events/asgi.py, as get_asgi_application makes it) directly
in one process, with the example project on a SQLite file of its own and the in-process
backend: N members of one realm each register a queue; in each round every member long-polls
(``GET events`` with an API key, acknowledging the last event, as a Zulip client's next poll
does) until all N wait, then one more member comes online and every poll is answered.
Reported, as medians over the rounds after the first (whose polls look their keys up): the
process's CPU time (``time.process_time``, every thread included) per **next poll**, from the
request until it waits, and per **answer**, from the presence write until every poll has its
answer sent; and, in one more round traced by tracemalloc, the bytes each waiting poll holds,
by where they were allocated (its key's rows are remembered already). What events_load
measures beyond these two is the HTTP server's share (uvicorn: parsing, the connection,
writing).

Writes bench/results/events-split.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .events_load import machine
from .server import REPO

RESULTS = REPO / "bench" / "results" / "events-split.json"
ROUND_TIMEOUT_SECS = 60
# tracemalloc frames are matched to these, first match wins: where a waiting poll's bytes were
# allocated.
REMEMBERED_KEYS = "remembered API keys (the rows of each key, which its polls share)"
MEMORY_PLACES = (
    ("django_presence/recent_keys.py", REMEMBERED_KEYS),
    ("django_presence/authentication.py", REMEMBERED_KEYS),
    ("django/core/handlers/asgi.py", "Django's ASGIRequest"),
    ("django_presence/views.py", "parameters (QueryDict, Params)"),
    ("rest_framework/", "DRF's Request and the view"),
    ("django_presence/events/", "the poll's queue, waiter and frames"),
)

Scope = dict[str, Any]


def setup_django(directory: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        EXAMPLE_DB_PATH=str(Path(directory) / "split.sqlite3"),
        EXAMPLE_DEBUG="0",
    )
    sys.path.insert(0, str(REPO / "example_project"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def run(polls: int, rounds: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test.utils import override_settings
    from django.utils import timezone

    from django_presence import actions
    from django_presence.conf import presence_settings
    from django_presence.events.asgi import get_asgi_application
    from django_presence.events.service import register_event_queue
    from django_presence.events.wakeups import registry

    assert presence_settings.EVENT_BACKEND.endswith("InProcessBackend")
    # As a deployment gets it: with the garbage collector's thresholds it sets.
    application = get_asgi_application()
    realm = actions.do_create_realm("split", "Split")
    users = get_user_model().objects
    listeners: list[tuple[str, bytes]] = []
    for number in range(polls):
        user = users.create(username=f"listener{number}", email=f"listener{number}@example.com")
        member = actions.do_add_realm_member(user, realm)
        _key, raw_key = actions.do_create_api_key(member)
        queue_id, _state = register_event_queue(
            member,
            event_types=None,
            fetch_event_types=[],
            slim_presence=False,
            simplified_presence_events=False,
            history_limit_days=None,
        )
        credentials = base64.b64encode(f"{user.email}:{raw_key}".encode())
        listeners.append((queue_id, b"Basic " + credentials))
    arrivals = [
        actions.do_add_realm_member(
            users.create(username=f"arrival{number}", email=f"arrival{number}@example.com"), realm
        )
        for number in range(rounds + 2)
    ]

    def scope(queue_id: str, authorization: bytes, last_event_id: int) -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/v1/events",
            "raw_path": b"/api/v1/events",
            "root_path": "",
            "query_string": f"queue_id={queue_id}&last_event_id={last_event_id}".encode(),
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"user-agent", b"ZulipPython/0.9.1"),
                (b"accept", b"*/*"),
                (b"accept-encoding", b"gzip, deflate"),
                (b"authorization", authorization),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }

    async def rounds_of_polls() -> dict[str, Any]:
        answers: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                answers.append(message["body"])

        async def until(condition: Callable[[], bool]) -> None:
            deadline = asyncio.get_running_loop().time() + ROUND_TIMEOUT_SECS
            while not condition():
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("a round did not finish in time")
                await asyncio.sleep(0.001)

        measured: list[dict[str, float]] = []
        memory: dict[str, float] = {}
        tasks: set[asyncio.Task[None]] = set()
        # One more round than measured, traced: tracemalloc makes everything slow.
        for round_number in range(rounds + 1):
            last_event_id = round_number - 1
            gc.collect()
            tracing = round_number == rounds
            if tracing:
                tracemalloc.start(12)
                before = tracemalloc.take_snapshot()
            started = time.process_time()
            for queue_id, authorization in listeners:
                task = asyncio.ensure_future(
                    application(scope(queue_id, authorization, last_event_id), receive, send)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await until(lambda: registry.waiting() >= polls)
            waiting = time.process_time()
            if tracing:
                gc.collect()
                memory = _memory_by_place(before, tracemalloc.take_snapshot(), polls)
                tracemalloc.stop()
                waiting = time.process_time()
            answers.clear()
            with override_settings(PRESENCE_USER_LIMIT_FOR_EVENTS=None):
                await asyncio.to_thread(
                    actions.do_update_user_presence,
                    arrivals[round_number],
                    log_time=timezone.now(),
                    status="active",
                )
            await until(lambda: len(answers) >= polls)
            answered = time.process_time()
            expected = f'"user_id":{arrivals[round_number].user_id}'.encode()
            assert all(expected in answer for answer in answers), answers[:1]
            if not tracing:
                measured.append(
                    {
                        "next_poll_us": (waiting - started) * 1e6 / polls,
                        "answer_us": (answered - waiting) * 1e6 / polls,
                    }
                )
        # The first round's polls look their keys up; later ones find them remembered.
        steady = measured[1:] or measured
        return {
            "rounds": measured,
            "next_poll_us": statistics.median(r["next_poll_us"] for r in steady),
            "answer_us": statistics.median(r["answer_us"] for r in steady),
            "memory_per_waiting_poll_bytes": memory,
        }

    results = asyncio.run(rounds_of_polls())
    return {"polls": polls, "rounds_run": rounds, "machine": machine(), **results}


def _memory_by_place(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, polls: int
) -> dict[str, float]:
    places: dict[str, float] = {}
    for difference in after.compare_to(before, "traceback"):
        files = [frame.filename for frame in difference.traceback]
        place = next(
            (name for marker, name in MEMORY_PLACES if any(marker in f for f in files)),
            "asyncio and the rest",
        )
        places[place] = places.get(place, 0) + difference.size_diff / polls
    places["total"] = sum(places.values())
    return {name: round(size) for name, size in places.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="50 polls, 2 rounds, no file")
    parser.add_argument("--output", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    polls, rounds = (50, 2) if args.smoke else (args.polls, args.rounds)
    with tempfile.TemporaryDirectory() as directory:
        setup_django(directory)
        results = run(polls, rounds)
    print(json.dumps(results, indent=2), flush=True)
    output = args.output or (None if args.smoke else RESULTS)
    if output is not None:
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
