"""Per-user rate limit of the presence API, with DRF's throttle machinery."""

from __future__ import annotations

from rest_framework.throttling import UserRateThrottle

from .conf import presence_settings


class PresenceRateThrottle(UserRateThrottle):
    """PRESENCE_API_RATE requests per user (Zulip: 200 a minute); None disables it."""

    scope = "django_presence"

    def get_rate(self) -> str | None:
        return presence_settings.API_RATE
