"""Item 6: the peak memory of one full fetch, in a fresh process of its own.

``python -m bench.memory SIZE FORMAT`` (FORMAT modern or legacy) prints one JSON object. The
baseline is the resident set after a warm-up fetch of a 1k-member realm; the peak is Linux's
high-water mark (VmHWM), reset just before the measured fetch through /proc/self/clear_refs.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import orjson

WARM_UP_SIZE = 1000


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def main() -> None:
    size, response_format = int(sys.argv[1]), sys.argv[2]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from .client import WSGIClient, ok
    from .seed import load_realm

    def fetch(client: WSGIClient) -> bytes:
        if response_format == "modern":
            return ok(client.post_presence(status="active", last_update_id=-1)).body
        return ok(client.realm_presence()).body

    warm_up_size = min(WARM_UP_SIZE, size)
    fetch(WSGIClient(load_realm(warm_up_size), 1))
    client = WSGIClient(load_realm(size), 1)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline_kib = _status_kib("VmRSS")
    body = fetch(client)
    peak_kib = _status_kib("VmHWM")
    above = (peak_kib - baseline_kib) * 1024
    result = {
        "realm_size": size,
        "format": response_format,
        "entries": len(orjson.loads(body)["presences"]),
        "response_bytes": len(body),
        "baseline_rss_bytes": baseline_kib * 1024,
        "peak_rss_bytes": peak_kib * 1024,
        "peak_above_baseline_bytes": above,
        "ratio_to_response": round(above / len(body), 3),
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
