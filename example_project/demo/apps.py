from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from typing import Any

from django.apps import AppConfig
from django.utils import timezone

_log_lock = threading.Lock()


class DemoConfig(AppConfig):
    """The example project's own app: the index page, the seed_demo command, and with
    EXAMPLE_TRANSITIONS_LOG set a host receiver of presence_status_changed that appends each
    transition to that file as a JSON line (tests/test_status_transitions_e2e.py reads it);
    with EXAMPLE_USER_STATUS_LOG, the same for user_status_changed
    (tests/test_e2e_user_status.py)."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if "EXAMPLE_TRANSITIONS_LOG" in os.environ:
            from django_presence.signals import presence_status_changed

            presence_status_changed.connect(log_transition, dispatch_uid="demo.log_transition")
        if "EXAMPLE_USER_STATUS_LOG" in os.environ:
            from django_presence.signals import user_status_changed

            user_status_changed.connect(log_user_status, dispatch_uid="demo.log_user_status")


def log_transition(
    sender: Any,
    *,
    member: Any,
    old_status: str,
    new_status: str,
    at: datetime,
    late: bool,
    **kwargs: Any,
) -> None:
    line = {
        "user_id": member.user_id,
        "old": old_status,
        "new": new_status,
        "at": at.timestamp(),
        "late": late,
        "sent_at": timezone.now().timestamp(),
        "pid": os.getpid(),
    }
    with _log_lock, open(os.environ["EXAMPLE_TRANSITIONS_LOG"], "a") as log:
        log.write(json.dumps(line) + "\n")


def log_user_status(
    sender: Any,
    *,
    member: Any,
    changed: dict[str, Any],
    ended: bool,
    late: bool,
    **kwargs: Any,
) -> None:
    line = {
        "user_id": member.user_id,
        "changed": changed,
        "ended": ended,
        "late": late,
        "sent_at": timezone.now().timestamp(),
        "pid": os.getpid(),
    }
    with _log_lock, open(os.environ["EXAMPLE_USER_STATUS_LOG"], "a") as log:
        log.write(json.dumps(line) + "\n")
