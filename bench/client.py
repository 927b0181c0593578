"""Requests through the whole Django stack in this process: the WSGI handler that gunicorn
calls, with every middleware, DRF, authentication and throttling, but no socket."""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from django.core.handlers.wsgi import WSGIHandler

from loopback.auth import basic_auth

from .seed import SeededRealm, api_key_for

PRESENCE_PATH = "/api/v1/users/me/presence"
REALM_PRESENCE_PATH = "/api/v1/realm/presence"
NOOP_PATH = "/bench/noop"
FORM = "application/x-www-form-urlencoded"


def form(params: dict[str, Any]) -> bytes:
    """A form body as Zulip clients send it: booleans and numbers JSON-encoded."""
    encoded = {
        key: value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in params.items()
    }
    return urlencode(encoded).encode()


class Response:
    def __init__(self, status: int, body: bytes, seconds: float) -> None:
        self.status = status
        self.body = body
        self.seconds = seconds


class WSGIClient:
    """One member's requests, timed from the call into the handler to the last body byte."""

    def __init__(self, realm: SeededRealm, g: int) -> None:
        self.handler = WSGIHandler()
        self.user_id = realm.user_id(g)
        self.authorization = basic_auth(realm.email(g), api_key_for(self.user_id))

    def request(self, method: str, path: str, body: bytes = b"") -> Response:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": self.authorization,
            "CONTENT_TYPE": FORM,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        statuses: list[str] = []

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            statuses.append(status)

        started = time.perf_counter()
        result: Iterable[bytes] = self.handler(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()  # request_finished, as a WSGI server sends it
        seconds = time.perf_counter() - started
        return Response(int(statuses[0].split()[0]), content, seconds)

    def post_presence(self, **params: Any) -> Response:
        return self.request("POST", PRESENCE_PATH, form(params))

    def realm_presence(self) -> Response:
        return self.request("GET", REALM_PRESENCE_PATH)

    def noop(self) -> Response:
        return self.request("POST", NOOP_PATH, form({"status": "active"}))


def ok(response: Response) -> Response:
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.body[:500]!r}")
    return response
