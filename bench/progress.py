"""A one-line progress bar on stderr (redrawn in place on a terminal, one line per step when
the output is a file, as in CI)."""

from __future__ import annotations

import sys
import time

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._draw()

    def advance(self, amount: int) -> None:
        self.done = min(self.done + amount, self.total)
        self._draw()

    def _draw(self) -> None:
        filled = WIDTH * self.done // self.total
        elapsed = time.perf_counter() - self.started
        line = (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
            f"{self.done:,}/{self.total:,} {elapsed:.1f}s"
        )
        if self.tty:
            end = "\n" if self.done >= self.total else ""
            sys.stderr.write(f"\r{line}{end}")
        elif self.done >= self.total:
            sys.stderr.write(f"{line}\n")
        sys.stderr.flush()
