"""Zulip's API-key authentication, as a client sends it; nothing else, so that bench's load
generator imports it without Django or requests."""

from __future__ import annotations

import base64


def basic_auth(email: str, api_key: str) -> str:
    """The Authorization header of Zulip's API-key authentication."""
    return "Basic " + base64.b64encode(f"{email}:{api_key}".encode()).decode()
