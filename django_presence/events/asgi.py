"""The ASGI application for sites that serve the event queues: Django's own, except for long
polls (``GET events``), which it serves itself, as Zulip's Tornado server does.

- A long poll with an API key (every Zulip client but the web app) goes straight to the events
  endpoint's pipeline (events/views.py ``serve_events``: authentication, permission, rate
  limit, parameters, envelope, errors), without Django's middleware and request signals: with
  the stock middleware each of those is a thread hop, and they made most of the cost of a
  delivery (docs/performance.md). Its synchronous steps queue up for one thread
  (events/worker.py); the wait itself is pure asyncio, with no task, request or thread of its
  own.
- Any other long poll (a browser session's) goes through Django's whole handler, middleware
  included, but without a per-request thread-sensitive context: Django's ASGIHandler gives
  every request one, and its first synchronous step starts a thread for it that lives until the
  response is sent, so a thousand waiting polls would be a thousand parked threads. Here their
  synchronous steps go to asgiref's one process-wide thread, one after the other.

Every other request is handled exactly as Django does.

In the host's asgi.py::

    from django_presence.events.asgi import get_asgi_application

    application = get_asgi_application()
"""

from __future__ import annotations

import gc
import io
from typing import Any

import django
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import Resolver404, get_resolver, set_script_prefix

# What is_long_poll found for each path, by URL resolver (a changed URLconf has another one):
# resolving costs more than the rest of the routing, on every request. Emptied when full, so
# that arbitrary paths cannot grow it.
_long_polls: dict[tuple[object, str], bool] = {}
ROUTING_CACHE_SIZE = 1024


def is_long_poll(scope: dict[str, Any]) -> bool:
    """A ``GET`` routed to the events view, wherever the host mounted the app."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    # The project's URLconf: nothing has set another one for a request not yet handled (and
    # asking asgiref's context-local for it costs more than the rest of the routing).
    resolver = get_resolver()
    known = _long_polls.get((resolver, path))
    if known is None:
        try:
            match = resolver.resolve(path)
        except Resolver404:
            known = False
        else:
            known = match.url_name == "events" and "django_presence" in match.app_names
        if len(_long_polls) >= ROUTING_CACHE_SIZE:
            _long_polls.clear()
        _long_polls[(resolver, path)] = known
    return known


def _served_directly(scope: dict[str, Any]) -> bool:
    """A long poll with an API key and no body: one the application answers itself."""
    api_key = False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            api_key = value[:6].lower() == b"basic "
        elif name in (b"content-length", b"transfer-encoding") and value not in (b"0", b""):
            return False  # GET events takes no body: Django's handler deals with this one
    return api_key


class PresenceASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        # Imported once Django is set up (the host's asgi.py imports this module before).
        from .views import serve_events
        from .worker import worker

        self._serve_events = serve_events
        self._run_sync = worker.run

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not is_long_poll(scope):
            await super().__call__(scope, receive, send)
        elif _served_directly(scope):
            await self.answer_long_poll(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    async def answer_long_poll(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The events endpoint for an API-key long poll, without middleware or request signals
        (they run no code of this app's, and each is a thread hop)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before it asked anything
            if not message.get("more_body", False):
                break
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, io.BytesIO())
        if request is None:
            assert error_response is not None
            await self.send_response(error_response, send)
            return
        response = await self._serve_events(request, run_sync=self._run_sync)
        await self.send_response(response, send)


def get_asgi_application() -> PresenceASGIHandler:
    """Like django.core.asgi.get_asgi_application, with PresenceASGIHandler, and the garbage
    collector's thresholds of PRESENCE_EVENTS_GC_THRESHOLD for this process: with Python's
    (a young collection every 700 new objects), the collections that a burst of thousands of
    polls sets off cost more than the polls (docs/performance.md)."""
    django.setup(set_prefix=False)
    from django_presence.conf import presence_settings

    threshold = presence_settings.EVENTS_GC_THRESHOLD
    if threshold is not None:
        gc.set_threshold(*threshold)
    return PresenceASGIHandler()
