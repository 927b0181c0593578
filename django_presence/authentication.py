"""Zulip-style HTTP Basic authentication: ``Authorization: Basic base64(email:api_key)``."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import threading
from typing import Any

from django.db import connections, router
from django.db.models.query import QuerySet, get_related_populators
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from .actions import api_key_digest
from .exceptions import WWW_AUTHENTICATE, ZulipAuthenticationFailed, ZulipError
from .models import ApiKey, RealmMember
from .recent_keys import recent_api_keys

API_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{32}")


def _keys_with_members(digest: str) -> QuerySet[ApiKey]:
    # With the caller's presence row and the realm's sequence, so that a report that changes
    # nothing, and a poll when nothing is new, cost no further query.
    return ApiKey.objects.select_related(
        "member__user__presence", "member__realm__presence_sequence"
    ).filter(key_digest=digest, revoked_at__isnull=True)


class _CompiledKeyLookup:
    """``_keys_with_members(digest).first()``, compiled once per database: building and
    compiling that five-table query cost several times running it, on every request with an API
    key (a long poll's authentication was half of a delivery's cost, docs/performance.md). The
    SQL is the ORM's own, and the rows become objects as the ORM makes them."""

    PLACEHOLDER = "<digest>"

    def __init__(self, db: str) -> None:
        query = _keys_with_members(self.PLACEHOLDER).using(db).order_by("pk")[:1].query
        compiler = query.get_compiler(using=db)
        self.sql, params = compiler.as_sql()
        if tuple(params) != (self.PLACEHOLDER,):
            raise ValueError("the API key query takes other parameters")
        self.db = db
        self.compiler = compiler
        klass_info = compiler.klass_info
        assert klass_info is not None
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [f[0].target.attname for f in compiler.select[self.start : self.end]]
        # Django 5.2's signature (newer ones add a fetch mode: TypeError, and the ORM's way).
        self.populators = get_related_populators(klass_info, compiler.select, db)  # type: ignore[call-arg]
        self.converters = compiler.get_converters([column for column, *_ in compiler.select])

    def first(self, digest: str) -> ApiKey | None:
        with connections[self.db].cursor() as cursor:
            cursor.execute(self.sql, [digest])
            row = cursor.fetchone()
        if row is None:
            return None
        if self.converters:
            row = next(iter(self.compiler.apply_converters([row], self.converters)))
        api_key: ApiKey = self.model.from_db(self.db, self.init_list, row[self.start : self.end])
        for populator in self.populators:
            populator.populate(row, api_key)
        return api_key


_compiled_lookups: dict[str, _CompiledKeyLookup | None] = {}
_compiled_lookups_lock = threading.Lock()


def _find_api_key(digest: str) -> ApiKey | None:
    db = router.db_for_read(ApiKey)
    lookup = _compiled_lookups.get(db)
    if lookup is None and db not in _compiled_lookups:
        with _compiled_lookups_lock:
            try:
                lookup = _CompiledKeyLookup(db)
            except (ValueError, AssertionError, TypeError):
                lookup = None  # an unforeseen query shape: the ORM's way, every time
            _compiled_lookups[db] = lookup
    if lookup is None:
        return _keys_with_members(digest).first()
    return lookup.first(digest)


def check_member_can_authenticate(member: RealmMember) -> None:
    """Refuse members of a deactivated realm, and deactivated members, with Zulip's codes."""
    if member.realm.deactivated:
        raise ZulipAuthenticationFailed(
            "This organization has been deactivated", code="REALM_DEACTIVATED"
        )
    if not member.is_active or not getattr(member.user, "is_active", True):
        raise ZulipAuthenticationFailed("Account is deactivated", code="USER_DEACTIVATED")


def authenticate_api_key(email: str, raw_key: str, *, remembered: bool = False) -> RealmMember:
    """The active member that ``raw_key`` belongs to, if it belongs to ``email``. With
    ``remembered``, a key this process looked up lately is taken from recent_keys.py, and one
    looked up now is kept there."""
    if not API_KEY_FORMAT.fullmatch(raw_key):
        raise ZulipAuthenticationFailed("Malformed API key")
    digest = api_key_digest(raw_key)
    api_key = recent_api_keys.get(digest) if remembered else None
    if api_key is None:
        api_key = _find_api_key(digest)
        if remembered and api_key is not None:
            recent_api_keys.remember(digest, api_key)
    # The digest lookup goes through an index; the comparisons below run in constant time so
    # that neither the key nor the email leaks through timing.
    if api_key is None or not hmac.compare_digest(api_key.key_digest, digest):
        raise ZulipAuthenticationFailed("Invalid API key")
    member = api_key.member
    if not hmac.compare_digest(member.email.lower().encode(), email.strip().lower().encode()):
        raise ZulipAuthenticationFailed("Invalid API key")
    check_member_can_authenticate(member)
    return member


class ZulipSessionAuthentication(SessionAuthentication):
    """DRF's session authentication, with Zulip's CSRF error (403, code CSRF_FAILED)."""

    def enforce_csrf(self, request: Request) -> None:
        try:
            super().enforce_csrf(request)
        except PermissionDenied as exc:
            reason = str(exc.detail).removeprefix("CSRF Failed: ")
            raise ZulipError(
                f"CSRF error: {reason}",
                code="CSRF_FAILED",
                http_status=403,
                extra={"reason": reason},
            ) from None


class ZulipApiKeyAuthentication(BaseAuthentication):
    """DRF authentication with the member's email and API key. ``request.auth`` is the
    RealmMember, so views need no further query to find the caller's realm."""

    # Whether the keys this process looked up lately serve (recent_keys.py): for the event
    # endpoints, whose clients all authenticate again at once after each event.
    remembered_keys = False

    def authenticate(self, request: Request) -> tuple[Any, RealmMember] | None:
        # From META, as DRF's get_authorization_header reads it but without building
        # request.headers (a mapping of every header): a tenth of a long poll's cost.
        header = request.META.get("HTTP_AUTHORIZATION", b"")
        if isinstance(header, str):
            header = header.encode(HTTP_HEADER_ENCODING)
        if not header:
            return None
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() != b"basic":
            raise ZulipError("This endpoint requires HTTP basic authentication.")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        email, separator, raw_key = decoded.partition(":")
        if not separator:
            raise ZulipAuthenticationFailed("Invalid authorization header for basic auth")
        member = authenticate_api_key(email, raw_key, remembered=self.remembered_keys)
        return member.user, member

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class RememberedApiKeyAuthentication(ZulipApiKeyAuthentication):
    """ZulipApiKeyAuthentication for GET and DELETE events, with the keys looked up lately."""

    remembered_keys = True
