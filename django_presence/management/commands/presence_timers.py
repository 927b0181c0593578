"""``manage.py presence_timers``: the sweeper of work that falls due by time alone (status
transitions, and user statuses that end at their end time; django_presence.timers) as a worker
of its own, for sites that set PRESENCE_TIMERS_IN_PROCESS = False on their web processes
(docs/scaling.md). Any number of workers may run: each transition is still announced once,
and each status ended once."""

from __future__ import annotations

import signal
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from django_presence import timers


class Command(BaseCommand):
    help = (
        "Announce presence status changes and end user statuses as they fall due, until "
        "stopped (SIGTERM or ^C)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Do what is due now and exit (for a scheduler such as cron).",
        )

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        if once:
            for name, done in timers.run_due_work().items():
                self.stdout.write(f"{name}: {done}")
            return
        sweeper = timers.Sweeper()

        def stop(signal_number: int, frame: Any) -> None:
            sweeper.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("Sweeping for due presence work; SIGTERM or ^C stops.")
        sweeper.start()
        # In the main thread, so that the signals above can stop it.
        while sweeper.is_alive():
            sweeper.join(timeout=1)
        self.stdout.write("Stopped.")
