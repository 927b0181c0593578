"""Pure builders for Zulip's presence JSON shapes. No database access here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


def legacy_status(
    last_active: datetime, last_connected: datetime, activity_offset_secs: int
) -> tuple[str, int]:
    """Zulip's single rule for legacy output: active (at last_active) when the last active
    report is within the offset of the last connection, else idle (at last_connected)."""
    if last_active.timestamp() + activity_offset_secs >= last_connected.timestamp():
        return "active", datetime_to_timestamp(last_active)
    return "idle", datetime_to_timestamp(last_connected)


def format_legacy_entry(
    last_active: datetime, last_connected: datetime, activity_offset_secs: int
) -> LegacyEntry:
    """The legacy per-user entry of realm-wide responses; the client key is always "website"."""
    status, timestamp = legacy_status(last_active, last_connected, activity_offset_secs)
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
    last_active: datetime,
    last_connected: datetime,
    *,
    now: datetime,
    activity_offset_secs: int,
    offline_threshold_secs: int,
) -> LegacyEntry:
    """The reduced legacy entry of GET users/<id>/presence: no client or pushable keys, and an
    aggregated status of "offline" once the timestamp is older than the offline threshold."""
    status, timestamp = legacy_status(last_active, last_connected, activity_offset_secs)
    aggregated_status = (
        "offline" if now.timestamp() - timestamp > offline_threshold_secs else status
    )
    return {
        LEGACY_CLIENT_NAME: {"status": status, "timestamp": timestamp},
        "aggregated": {"status": aggregated_status, "timestamp": timestamp},
    }
