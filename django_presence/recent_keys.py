"""The API keys that event requests (``GET`` and ``DELETE events``) authenticated with lately,
kept in this process for PRESENCE_EVENTS_AUTH_CACHE_SECS.

A Zulip client polls again as soon as it has an answer, so after an event every listening
client authenticates at once; the key's query and the model instances it builds were the
largest part of a delivery's cost (docs/performance.md). Zulip keeps its keys in memcached for
the same reason. Here they are kept in the process, since the event server is where they are
asked for, and forgotten:

- all at once, in every process, when a transaction commits that changed or deleted a key, a
  membership, a realm or a user (the ``post_save`` and ``post_delete`` signals, connected in
  ``PresenceConfig.ready``), or that ran an action changing those rows with
  ``QuerySet.update`` (revoking a member's keys, counting a lost event). The other processes
  hear of it through the event backend (with Redis, a message on the channel their polls'
  wake-ups come by; the in-process backend has no other process to tell);
- after PRESENCE_EVENTS_AUTH_CACHE_SECS in any case, which bounds how long a change that no
  message announced (Redis was down; the host's own ``QuerySet.update``; with the in-process
  backend, a management command in another process) takes to reach this process. It outlasts
  a long poll, so that a client's next poll after an event finds the key its last one
  remembered. A poll already waiting runs to its end whatever happens to its key (up to
  PRESENCE_EVENT_LONG_POLL_SECS), as it always did.

The entries are the rows authentication loaded (the key, its member, user, realm and the
realm's sequence): the same objects a waiting poll holds anyway, shared, and only read.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .conf import presence_settings

if TYPE_CHECKING:
    from .models import ApiKey

logger = logging.getLogger(__name__)

# Past this many keys, expired entries are dropped before another is added; if none has
# expired, the oldest go: a process cannot be made to hold more than this.
MAX_ENTRIES = 50_000


class RecentApiKeys:
    """API keys by digest, each until its time is up; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiKey | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        expires_at, api_key = entry
        if time.monotonic() >= expires_at:
            with self._lock:
                if self._entries.get(digest) is entry:
                    del self._entries[digest]
            return None
        return api_key

    def remember(self, digest: str, api_key: ApiKey) -> None:
        lifetime = presence_settings.EVENTS_AUTH_CACHE_SECS
        if lifetime <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._shrink(now)
            self._entries[digest] = (now + lifetime, api_key)

    def forget_all(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _shrink(self, now: float) -> None:
        live = {digest: entry for digest, entry in self._entries.items() if entry[0] > now}
        if len(live) >= self._max_entries:
            # Insertion order is age order: keep the younger half.
            keep = list(live.items())[len(live) // 2 :]
            live = dict(keep)
        self._entries = live


recent_api_keys = RecentApiKeys()


def forget_recent_api_keys() -> None:
    """Forget every remembered key, in this process and (through the event backend) in the
    others, once the current transaction commits (at once outside one): a poll in between would
    otherwise remember the row as it was. For the actions that change keys, members or realms
    with QuerySet.update, and for the signals below."""
    transaction.on_commit(_forget_everywhere)


def _forget_everywhere() -> None:
    recent_api_keys.forget_all()
    from .events.backends import get_event_backend  # the backends import this module

    try:
        get_event_backend().announce_keys_changed()
    except Exception:
        # The change has committed; the other processes forget it within their time.
        logger.warning(
            "Presence events: could not tell the other processes that API keys changed; they "
            "forget them within PRESENCE_EVENTS_AUTH_CACHE_SECS",
            exc_info=True,
        )


def _forget_on_change(sender: Any, *, created: bool = False, **kwargs: Any) -> None:
    # A row just created is in no remembered entry (a new key, member, user or realm).
    if not created:
        forget_recent_api_keys()


def _forget_on_user_change(
    sender: Any,
    *,
    created: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    # Users are saved often for other reasons (Django's login saves last_login): only what
    # authentication reads of them counts.
    if update_fields is not None and not update_fields & _user_fields_read():
        return
    _forget_on_change(sender, created=created)


def _user_fields_read() -> set[str]:
    return {"is_active", get_user_model().get_email_field_name()}


def connect() -> None:
    """Forget the keys whenever a row they were loaded from is saved or deleted."""
    from .models import ApiKey, PresenceSequence, Realm, RealmMember

    for model in (ApiKey, RealmMember, Realm, PresenceSequence, settings.AUTH_USER_MODEL):
        receiver = (
            _forget_on_user_change if model == settings.AUTH_USER_MODEL else _forget_on_change
        )
        for signal in (post_save, post_delete):
            signal.connect(
                receiver,
                sender=model,
                weak=False,
                dispatch_uid=f"django_presence.recent_keys.{signal is post_save}.{model}",
            )
