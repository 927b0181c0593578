"""The ASGI application for sites that serve the event queues: Django's own, except that long polls
share one thread for their synchronous work instead of holding a thread each while they wait.

Django's ASGIHandler gives every request a thread-sensitive context, and the first synchronous
step of the request (Django's own ``request_started`` signal, sync middleware) starts a thread
for that context which lives until the response is sent: for ``GET events``, the whole long
poll. A thousand waiting polls would be a thousand parked threads. Here those requests run
without a per-request context, so asgiref sends their synchronous steps (middleware,
authentication) to its one process-wide thread, one after the other; the wait itself is pure
asyncio. Every other request is handled exactly as Django does.

In the host's asgi.py::

    from django_presence.events.asgi import get_asgi_application

    application = get_asgi_application()
"""

from __future__ import annotations

from typing import Any

import django
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve


def is_long_poll(scope: dict[str, Any]) -> bool:
    """A ``GET`` routed to the events view, wherever the host mounted the app."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.url_name == "events" and "django_presence" in match.app_names


class PresenceASGIHandler(ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if is_long_poll(scope):
            await self.handle(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def get_asgi_application() -> PresenceASGIHandler:
    """Like django.core.asgi.get_asgi_application, with PresenceASGIHandler."""
    django.setup(set_prefix=False)
    return PresenceASGIHandler()
