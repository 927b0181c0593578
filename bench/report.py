"""Render docs/performance.md and its plots from bench/results/presence.json.

The section "## Presence events" (bench/events_load.py's) is kept as it is in the current file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"
IMAGES = REPO / "docs" / "img"
RESULTS = REPO / "bench" / "results"
EVENTS_HEADING = "## Presence events"

TARGET_FULL_FETCH = 2.0
TARGET_POLL_SIZE = 1.25
TARGET_POLL_NOOP = 1.5
TARGET_REPEAT_STATEMENTS = 3
TARGET_PING_THROUGHPUT = 0.6
TARGET_MEMORY = 4.0


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _events_section() -> str:
    """The events helper's section of the current file, from its heading to the next "## "."""
    if not DOC.exists():
        return ""
    text = DOC.read_text()
    start = text.find(EVENTS_HEADING)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(EVENTS_HEADING))
    return text[start:] if end < 0 else text[start : end + 1]


def _fetch(results: dict[str, Any], fmt: str, size: int) -> dict[str, Any]:
    return next(r for r in results["full_fetch"] if r["format"] == fmt and r["realm_size"] == size)


def _load(results: dict[str, Any], server: str, mode: str) -> dict[str, Any] | None:
    return next(
        (r for r in results["http_load"] if r["server"] == server and r["mode"] == mode), None
    )


def plots(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMAGES.mkdir(parents=True, exist_ok=True)
    sizes = results["sizes"]
    styles = {"legacy": "tab:blue", "modern": "tab:orange"}

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=80)
    for fmt, color in styles.items():
        rows = [_fetch(results, fmt, size) for size in sizes]
        ax.plot(sizes, [r["median_ms"] for r in rows], "o-", color=color, label=f"{fmt} full fetch")
        ax.plot(
            sizes,
            [r["floor_median_ms"] for r in rows],
            "o--",
            color=color,
            alpha=0.6,
            label=f"{fmt} floor (raw SQL + orjson)",
        )
    polls = results["empty_poll"]["median_ms"]
    ax.plot(
        sizes,
        [polls[str(size)] for size in sizes],
        "s-",
        color="tab:green",
        label="empty incremental poll",
    )
    one_row = results["empty_poll"]["one_new_row_median_ms"]
    ax.plot(
        sizes,
        [one_row[str(size)] for size in sizes],
        "s--",
        color="tab:green",
        alpha=0.6,
        label="incremental poll, one new row",
    )
    ax.axhline(
        results["empty_poll"]["noop_median_ms"],
        color="grey",
        linestyle=":",
        label="authenticated no-op",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="realm members",
        ylabel="median latency (ms)",
        title="Presence requests in one process",
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMAGES / "performance-latency.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
    for fmt, color in styles.items():
        rows = [_fetch(results, fmt, size) for size in sizes]
        ax.plot(
            sizes, [r["response_bytes"] for r in rows], "o-", color=color, label=f"{fmt} full fetch"
        )
    memory = {m["format"]: m for m in results["memory"]}
    for fmt, color in styles.items():
        if fmt in memory:
            ax.plot(
                [memory[fmt]["realm_size"]],
                [memory[fmt]["peak_above_baseline_bytes"]],
                "x",
                color=color,
                markersize=9,
                label=f"{fmt}: peak memory above baseline",
            )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="realm members",
        ylabel="bytes",
        title="Response size and peak memory",
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(IMAGES / "performance-bytes.png")
    plt.close(fig)


def render(results: dict[str, Any]) -> None:
    plots(results)
    before_path = RESULTS / "before.json"
    before = orjson.loads(before_path.read_bytes()) if before_path.exists() else None
    DOC.write_text(markdown(results, before, _events_section()))


def markdown(results: dict[str, Any], before: dict[str, Any] | None, events: str) -> str:
    m = results["machine"]
    lines: list[str] = []
    add = lines.append
    add("# Performance")
    add("")
    add(
        "<!-- Rendered by `python -m bench` from bench/results/presence.json: edit bench/report.py,"
    )
    add('not this file (the section "Presence events" is kept as it is). -->')
    add("")
    add("Presence must stay cheap in a 100k-member organization. `python -m bench` measures it")
    add("on PostgreSQL, and this page shows every figure with its target. Each latency is the")
    add("median of repeated runs, each ratio against a baseline measured in the same run.")
    add("")
    add("## Running it")
    add("")
    add("```bash")
    add(".venv/bin/pip install -e '.[bench]'   # matplotlib, aiohttp, gunicorn, uvicorn, psycopg")
    add(
        ".venv/bin/python -m bench             # about "
        f"{round(results['runtime_secs'] / 60 + 0.5)} minutes here; --keep-db keeps the database"
    )
    add(".venv/bin/python -m bench --smoke     # every step at small sizes, no timing (CI)")
    add(".venv/bin/python -m bench --in-process-only --output DIR  # items 1-3 and 6 only")
    add("```")
    add("")
    add("It creates the database `presence_bench` on the PostgreSQL server the tests use")
    add("(`PRESENCE_TEST_PG_HOST`, default 127.0.0.1:5432, user postgres), seeds it, measures,")
    add("drops it, and writes `bench/results/presence.json`, this page and its plots.")
    add("`--in-process-only` made `bench/results/before.json`, run on the app as it was before")
    add("the speed work (the section at the end compares the two).")
    add("")
    add("## Machine")
    add("")
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items() if version)
    add(f"- {m['cpu']}, {m['cores']} cores, {mib(m['memory_bytes'])} of memory; {m['os']}")
    add(f"- Python {m['python']}, PostgreSQL {m['postgresql']}; {packages}")
    load_start = ", ".join(f"{x:.1f}" for x in m["load_average_at_start"])
    load_end = ", ".join(f"{x:.1f}" for x in m.get("load_average_at_end", []))
    add(
        f"- Run of {results['date']}, {results['runtime_secs']} s in all (seeding "
        f"{sum(results['sizes']):,} members: {results['seeding_secs']} s). Load average at the "
        f"start {load_start}, at the end {load_end}: the machine was shared, so absolute figures"
    )
    add("  vary from run to run by tens of percent; the ratios, measured side by side, vary less.")
    add("")
    lines.extend(summary(results))
    lines.extend(details(results))
    if before:
        lines.extend(before_after(before, results))
    lines.extend(method())
    text = "\n".join(lines) + "\n"
    if events:
        text += "\n" + events.rstrip("\n") + "\n"
    return text


def summary(results: dict[str, Any]) -> list[str]:
    sizes = results["sizes"]
    mid = 10_000 if 10_000 in sizes else sizes[len(sizes) // 2]
    largest, smallest = sizes[-1], sizes[0]
    poll = results["empty_poll"]
    statements = results["ping_statements"]
    rows = [
        "## Figures and targets",
        "",
        "| # | figure | measured | target | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for fmt, endpoint in (
        ("legacy", "GET realm/presence"),
        ("modern", "POST users/me/presence, last_update_id=-1"),
    ):
        r = _fetch(results, fmt, mid)
        rows.append(
            f"| 1 | full fetch, {endpoint}, {mid:,} members | {r['median_ms']:.1f} ms vs floor "
            f"{r['floor_median_ms']:.1f} ms: **x{r['ratio_to_floor']:.2f}**, "
            f"{r['response_bytes']:,} bytes | <= x{TARGET_FULL_FETCH} | "
            f"{verdict(r['ratio_to_floor'] <= TARGET_FULL_FETCH)} |"
        )
    ratio_size = poll["ratio_largest_to_smallest"]
    ratio_noop = poll["ratio_largest_to_noop"]
    rows.append(
        f"| 2 | empty incremental poll, {largest:,} vs {smallest:,} members | "
        f"{poll['median_ms'][str(largest)]:.2f} vs {poll['median_ms'][str(smallest)]:.2f} ms: "
        f"**x{ratio_size:.2f}** | <= x{TARGET_POLL_SIZE} | "
        f"{verdict(ratio_size <= TARGET_POLL_SIZE)} |"
    )
    rows.append(
        f"| 2 | empty incremental poll, {largest:,} members vs authenticated no-op | "
        f"{poll['median_ms'][str(largest)]:.2f} vs {poll['noop_median_ms']:.2f} ms: "
        f"**x{ratio_noop:.2f}** | <= x{TARGET_POLL_NOOP} | "
        f"{verdict(ratio_noop <= TARGET_POLL_NOOP)} |"
    )
    one = poll["one_new_row_median_ms"]
    rows.append(
        f"| 2 | incremental poll with one new row (the realm read runs), {largest:,} vs "
        f"{smallest:,} members, and vs the no-op | {one[str(largest)]:.2f} vs "
        f"{one[str(smallest)]:.2f} ms: x{poll['one_new_row_ratio_largest_to_smallest']:.2f}; "
        f"x{poll['one_new_row_ratio_largest_to_noop']:.2f} the no-op | reported | |"
    )
    repeat = statements["repeat_within_55s"]["statements"]
    rows.append(
        f"| 3 | SQL statements per ping beyond authentication: first / repeat within 55 s / "
        f"later | {statements['first']['statements']} / **{repeat}** / "
        f"{statements['later']['statements']} | repeat <= {TARGET_REPEAT_STATEMENTS} | "
        f"{verdict(repeat <= TARGET_REPEAT_STATEMENTS)} |"
    )
    recommended = results["recommended_server"]
    servers = list(dict.fromkeys(r["server"] for r in results["http_load"]))
    # The recommended server first: the target is judged on it, the others are shown beside.
    for server in sorted(servers, key=lambda name: name != recommended):
        noop, ping, polling = (_load(results, server, mode) for mode in ("noop", "ping", "poll"))
        if not (noop and ping and polling):
            continue
        share = ping["throughput_rps"] / noop["throughput_rps"]
        errors = noop["errors"] + ping["errors"] + polling["errors"]
        judged = server == recommended
        rows.append(
            f"| 4 | HTTP, {server}{' (recommended)' if judged else ''}: ping_only / polling "
            f"clients / no-op | {ping['throughput_rps']:.0f} / {polling['throughput_rps']:.0f} / "
            f"{noop['throughput_rps']:.0f} req/s; pings **{share:.0%}** of the no-op; "
            f"p50 {ping['p50_ms']:.0f} / {polling['p50_ms']:.0f} / {noop['p50_ms']:.0f} ms, "
            f"p99 {ping['p99_ms']:.0f} / {polling['p99_ms']:.0f} / {noop['p99_ms']:.0f} ms; "
            f"{errors} errors | pings >= {TARGET_PING_THROUGHPUT:.0%}, 0 errors | "
            + (
                f"{verdict(share >= TARGET_PING_THROUGHPUT and errors == 0)} |"
                if judged
                else "reported |"
            )
        )
    day = results["day"]
    rows.append(
        f"| 5 | a realistic day: {day['online_clients']:,} online clients of {day['realm_size']:,}"
        f" members, a poll each every {day['interval_secs']} s, {day['seconds']:.0f} s | p99 "
        f"{day['p99_ms']:.0f} ms, {day['db_writes_per_sec']:.0f} DB writes/s, "
        f"{day['bytes_per_response']:,.0f} bytes/poll, server peak "
        f"{mib(day['server_peak_memory']['total_bytes'])}, {day['errors']} errors | "
        "reported | |"
    )
    for memory in results["memory"]:
        rows.append(
            f"| 6 | peak memory of a {memory['format']} full fetch, {memory['realm_size']:,} "
            f"members | {mib(memory['peak_above_baseline_bytes'])} above baseline for "
            f"{mib(memory['response_bytes'])}: **x{memory['ratio_to_response']:.2f}** | "
            f"<= x{TARGET_MEMORY} | {verdict(memory['ratio_to_response'] <= TARGET_MEMORY)} |"
        )
    rows.append("")
    rows.append("![latency vs realm size](img/performance-latency.png)")
    rows.append("")
    rows.append("![bytes vs realm size](img/performance-bytes.png)")
    rows.append("")
    return rows


def details(results: dict[str, Any]) -> list[str]:
    out = ["## 1. Full fetch against the floor", ""]
    out += [
        "In one process, through the whole Django stack (the WSGI handler, every middleware,",
        "DRF, API-key authentication, throttling), by a member whose report changes nothing.",
        "The floor answers the same request with one hand-written SQL query through psycopg",
        "(timestamps as integers, as the app reads them), a dict comprehension and",
        "`orjson.dumps`; the two answers are checked equal but for `server_timestamp`.",
        "",
        "| endpoint | members | entries | median | floor | ratio | bytes | bytes/entry |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["full_fetch"]:
        out.append(
            f"| {r['endpoint']} | {r['realm_size']:,} | {r['entries']:,} | {r['median_ms']:.2f} ms"
            f" | {r['floor_median_ms']:.2f} ms | x{r['ratio_to_floor']:.2f} | "
            f"{r['response_bytes']:,} | {r['bytes_per_entry']} |"
        )
    poll = results["empty_poll"]
    out += [
        "",
        "## 2. Incremental poll with nothing new",
        "",
        "`POST users/me/presence` with `status=active` and `last_update_id` = the realm's",
        "current id, by a member who reported a moment before (so nothing is written),",
        f"{poll['requests_per_case']} requests per case, interleaved; the baseline is the",
        "bench-only `POST bench/noop`: the same authentication, permission, throttle, parsers",
        "and renderer, answering the bare envelope. Authentication loads the realm's newest",
        "update id with the API key, so a poll with nothing new reads nothing more. The",
        "second column polls from the id before the newest (the poller's own last write), so",
        "the realm read runs and returns one row: the read itself is O(1) in the realm's size.",
        "",
        "| case | nothing new | one new row |",
        "| --- | --- | --- |",
    ]
    for key, value in poll["median_ms"].items():
        if key == "noop":
            out.append(f"| authenticated no-op | {value:.3f} ms | |")
        else:
            one_row = poll["one_new_row_median_ms"][key]
            out.append(f"| {int(key):,} members | {value:.3f} ms | {one_row:.3f} ms |")
    out += [
        "",
        "The incremental read (from the id before the newest: one row) uses the index on",
        "(realm, last_update_id):",
        "",
        "```",
        results["explain"]["incremental"],
        "```",
        "",
        "A full fetch of the largest realm reads the realm's rows in one pass:",
        "",
        "```",
        results["explain"]["full"],
        "```",
        "",
    ]
    statements = results["ping_statements"]
    out += [
        "## 3. SQL statements per ping",
        "",
        "`ping_only` reports, counted with Django's query log, authentication "
        f"({statements['authentication_statements']} statement, which also loads the "
        "caller's presence row) apart. A first report also sends `presence_changed`; when a",
        "receiver is connected (the event queues' is, in the example project), its recipients",
        "are counted after commit, for Zulip's cut-off at `PRESENCE_USER_LIMIT_FOR_EVENTS`.",
        "",
    ]
    for case, label in (
        ("first", "first report ever"),
        ("repeat_within_55s", "repeat within 55 s"),
        ("later", "report 2 minutes later"),
    ):
        sqls = statements[case]["sql"] or ["(none)"]
        out.append(f"- {label}: {statements[case]['statements']}")
        out.extend(f"  - `{sql}`" for sql in sqls)
    out += [
        "",
        "## 4. HTTP load",
        "",
        "The example project with `bench.settings` (PostgreSQL, `DEBUG = False`, persistent",
        "connections under WSGI) behind each server with 2 workers on 127.0.0.1; the load",
        "generator (`bench/loadgen.py`, asyncio + aiohttp) runs in its own process with 16",
        "connections. Each case runs for a few seconds, in rounds taken in turn with the other",
        "cases (the machine's load drifts); the rounds are pooled. Users are taken in turn",
        "through the realm, and every member last reported 2 minutes before each run, so every",
        "report writes, as a report once a minute does in production. Polling clients send",
        "`last_update_id` and keep the cursor each answer gives them.",
        "",
        "| server | case | req/s (per round) | p50 | p99 | errors | bytes/response | writes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["http_load"]:
        per_round = ", ".join(f"{value:.0f}" for value in r.get("round_throughputs_rps", []))
        out.append(
            f"| {r['server_description']} | {r['mode']} | {r['throughput_rps']:.0f} "
            f"({per_round}) | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['errors']} | "
            f"{r['bytes_per_response']:,.0f} | {r['writes']:,} |"
        )
    day = results["day"]
    memory = day["server_peak_memory"]
    per_process = ", ".join(mib(b) for b in memory["per_process_bytes"])
    out += [
        "",
        "## 5. A realistic day",
        "",
        f"{day['online_clients']:,} of the {day['realm_size']:,} members are online, each with one",
        "client that posts `users/me/presence` with its `last_update_id` every",
        f"{day['interval_secs']} s, the clients spread evenly over the minute, for",
        f"{day['seconds']:.0f} s of real time: time is not compressed. The run starts from",
        "the steady state (each client's previous poll, write and cursor one minute back), so",
        "every poll writes and returns the reports of the last minute. Served by",
        f"{day['server']}.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| polls | {day['requests']:,} ({day['throughput_rps']:.1f}/s), {day['errors']} errors |",
        f"| latency p50 / p99 | {day['p50_ms']:.1f} / {day['p99_ms']:.1f} ms |",
        f"| DB writes | {day['db_writes']:,} ({day['db_writes_per_sec']:.1f}/s) |",
        f"| entries / bytes per poll | {day['entries_per_response']:,.0f} / "
        f"{day['bytes_per_response']:,.0f} |",
        f"| server peak memory (VmHWM) | {mib(memory['total_bytes'])} in all ({per_process}) |",
        "",
    ]
    out += [
        "## 6. Peak memory of a full fetch",
        "",
        "In a fresh process: the resident set after a warm-up fetch of a 1k-member realm is the",
        "baseline; Linux's high-water mark (VmHWM, reset just before) gives the peak.",
        "",
        "| format | members | response | peak above baseline | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results["memory"]:
        out.append(
            f"| {r['format']} | {r['realm_size']:,} | {mib(r['response_bytes'])} | "
            f"{mib(r['peak_above_baseline_bytes'])} | x{r['ratio_to_response']:.2f} |"
        )
    out.append("")
    return out


def before_after(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = [
        "## Before and after the speed work",
        "",
        "The same in-process measurements on the app as it was before this work "
        f"(bench/results/before.json, run of {before['date']}).",
        "",
        "| figure | before | after |",
        "| --- | --- | --- |",
    ]
    for fmt in ("legacy", "modern"):
        for size in after["sizes"]:
            try:
                b, a = _fetch(before, fmt, size), _fetch(after, fmt, size)
            except StopIteration:
                continue
            out.append(
                f"| full fetch, {fmt}, {size:,} members | {b['median_ms']:.1f} ms | "
                f"{a['median_ms']:.1f} ms |"
            )
    for size, value in before["empty_poll"]["median_ms"].items():
        if size in after["empty_poll"]["median_ms"]:
            label = "no-op" if size == "noop" else f"empty poll, {int(size):,} members"
            out.append(
                f"| {label} | {value:.2f} ms | {after['empty_poll']['median_ms'][size]:.2f} ms |"
            )
    for case in ("first", "repeat_within_55s", "later"):
        out.append(
            f"| statements, {case.replace('_', ' ')} ping | "
            f"{before['ping_statements'][case]['statements']} | "
            f"{after['ping_statements'][case]['statements']} |"
        )
    for b in before["memory"]:
        a = next((m for m in after["memory"] if m["format"] == b["format"]), None)
        if a:
            out.append(
                f"| peak memory, {b['format']} full fetch, {b['realm_size']:,} members | "
                f"x{b['ratio_to_response']:.2f} | x{a['ratio_to_response']:.2f} |"
            )
    out.append("")
    out.append(
        "The first ping's fifth statement is the `presence_changed` recipient count: the event"
    )
    out.append("queues, added since, connect a receiver in the example project.")
    out.append("")
    return out


def method() -> list[str]:
    return [
        "## What makes it cheap",
        "",
        "- Realm reads are one SQL statement, whatever the realm's size: written out by hand on",
        "  PostgreSQL (building and compiling the QuerySet cost more than running it on an empty",
        "  poll), with the timestamps as integer microseconds (`EXTRACT(EPOCH ...)`, exact):",
        "  Django's timestamptz loader builds a Python datetime per value, which was the largest",
        "  cost of a large read. The rows are read 2,000 at a time from an ordinary cursor.",
        "- Entries are plain dicts rendered by orjson chunk by chunk and embedded into the",
        "  envelope as `orjson.Fragment`: a 100k-member fetch never holds every entry as Python",
        "  objects at once.",
        "- The membership join filters on the realm too, so a small realm's read uses the",
        "  membership index instead of scanning every membership of the server.",
        "- `UserPresence.realm` has no index of its own: the three composite indexes lead with the",
        "  realm, and a realm-only index misled the planner into scanning a whole realm on",
        "  incremental polls.",
        "- Authentication loads the caller's presence row and the realm's sequence with the",
        "  API key. A report that changes nothing (a second tab, a repeat within 55 s) then costs",
        "  no statement at all; a write is a locked read (written out in SQL) and one",
        "  data-modifying CTE, as before. A poll whose cursor is at the realm's newest id reads",
        "  nothing; any other incremental read stops at the newest id the request knows of,",
        "  which keeps the planner's row estimate (made from every realm's ids) small, so it",
        "  joins the rows found through (realm, last_update_id) instead of hashing the realm's",
        "  memberships (which made mid-sized realms O(members) per poll).",
        "",
    ]
