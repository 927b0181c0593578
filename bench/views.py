"""The bench-only baseline endpoint: the presence views' stack with nothing behind it."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from django_presence.serializers import Params
from django_presence.views import PresenceAPIView

# The envelope alone: parsing is the presence endpoints' work, not the baseline's.
NO_PARAMS = Params({}, [])


class NoopView(PresenceAPIView):
    """POST bench/noop: the same authentication, permission, throttle, parsers and renderer as
    the presence endpoints, answering the bare success envelope."""

    def post(self, request: Request) -> Response:
        return self.success(NO_PARAMS)
