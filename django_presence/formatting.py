"""Pure builders for Zulip's presence JSON shapes. No database access here; the statuses they
carry come from status.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .status import aggregated_status, legacy_status

LEGACY_CLIENT_NAME = "website"

ModernEntry = dict[str, int]
LegacyEntry = dict[str, dict[str, Any]]


def datetime_to_timestamp(value: datetime) -> int:
    """Zulip's wire timestamps: UNIX seconds, truncated."""
    return int(value.timestamp())


def format_modern_entry(last_active: datetime, last_connected: datetime) -> ModernEntry:
    """The modern entry; ``idle_timestamp`` means "last connected, idle or not"."""
    return {
        "active_timestamp": datetime_to_timestamp(last_active),
        "idle_timestamp": datetime_to_timestamp(last_connected),
    }


def modern_entry_at(active_at: float, connected_at: float) -> ModernEntry:
    """format_modern_entry on UNIX seconds as ``datetime.timestamp()`` gives them."""
    return {"active_timestamp": int(active_at), "idle_timestamp": int(connected_at)}


def legacy_entry(status: str, timestamp: int) -> LegacyEntry:
    """The legacy entry for a status and its timestamp (see status.legacy_status)."""
    return {
        "aggregated": {"client": LEGACY_CLIENT_NAME, "status": status, "timestamp": timestamp},
        LEGACY_CLIENT_NAME: {
            "client": LEGACY_CLIENT_NAME,
            "status": status,
            "timestamp": timestamp,
            "pushable": False,
        },
    }


def format_single_user_entry(
    last_active: datetime, last_connected: datetime, *, now: datetime, activity_offset_secs: int
) -> dict[str, Any]:
    """The entry of GET users/<id>/presence as Zulip 12.0 (feature level 497) answers it: the
    modern ``active_timestamp`` and ``idle_timestamp`` beside the reduced legacy entry (no
    client or pushable keys, and the aggregated status of status.aggregated_status)."""
    status, timestamp = legacy_status(last_active, last_connected, activity_offset_secs)
    return {
        **format_modern_entry(last_active, last_connected),
        "aggregated": {"status": aggregated_status(status, timestamp, now), "timestamp": timestamp},
        LEGACY_CLIENT_NAME: {"status": status, "timestamp": timestamp},
    }
