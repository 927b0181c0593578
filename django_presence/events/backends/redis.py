"""The shared backend: realm logs and queues in Redis, for any number of server processes on any
number of hosts. Needs the ``redis`` package (``pip install django-presence[redis]``).

Redis primitives only (docs/events.md says why each):

- ``<prefix>:log:<realm_id>``: a Stream per realm, one entry per presence change (XADD, trimmed
  with ``MINID ~`` to what a live queue can still need, and expiring when the realm is quiet).
  Its entry ids are the queues' cursors; XRANGE reads past one.
- ``<prefix>:queue:<queue_id>``: a Hash per queue, ``v`` (version) and ``d`` (the JSON record),
  expiring after PRESENCE_EVENT_QUEUE_TIMEOUT_SECS without a poll: Redis does the garbage
  collection. Saves are a compare-and-set on ``v`` in a short Lua script.
- ``<prefix>:wake:<realm_id>``: a pub/sub channel. Each server process keeps one connection
  pattern-subscribed to them all, in a thread, and wakes its own waiting polls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from typing import cast

import redis
import redis.asyncio

from django_presence.conf import presence_settings
from django_presence.events import queues
from django_presence.events.queues import EventQueue, LogEntry
from django_presence.events.wakeups import registry

from . import MAX_ENTRIES_PER_READ, EventBackend

logger = logging.getLogger(__name__)

# What XRANGE and XREVRANGE answer, with decode_responses=True: [(entry id, fields), ...].
StreamEntries = list[tuple[str, dict[str, str]]]

# The payload of a wake-up for a new log entry; any other payload is the id of a deleted queue.
NEW_ENTRY = "*"

# Logs keep entries this much longer than the queue timeout: the trim horizon comes from the
# publishing host's clock and entry ids from the Redis server's.
CLOCK_SKEW_MARGIN_SECS = 60

# Connections per event loop for the events view; polls borrow one per command.
ASYNC_POOL_SIZE = 64
POOL_TIMEOUT_SECS = 10

LISTENER_START_TIMEOUT_SECS = 5
LISTENER_IDLE_CHECK_SECS = 30
RECONNECT_DELAYS_SECS = (0.5, 1, 2, 5, 10)

# Saves the queue record only if its version is still the one that was read.
COMPARE_AND_SET = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


def _key(*parts: object) -> str:
    return ":".join([presence_settings.EVENT_REDIS_KEY_PREFIX, *map(str, parts)])


def log_key(realm_id: int) -> str:
    return _key("log", realm_id)


def queue_key(queue_id: str) -> str:
    return _key("queue", queue_id)


def wake_channel(realm_id: int | str) -> str:
    return _key("wake", realm_id)


class _AsyncClient:
    """A pooled asyncio client and its compare-and-set script, for one event loop."""

    def __init__(self, url: str) -> None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=ASYNC_POOL_SIZE,
            timeout=POOL_TIMEOUT_SECS,
            decode_responses=True,
        )
        self.client = redis.asyncio.Redis(connection_pool=pool)
        self.compare_and_set = self.client.register_script(COMPARE_AND_SET)


class _Listener(threading.Thread):
    """This process's subscriber: one connection, pattern-subscribed to every realm's wake
    channel, for the life of the process. It reconnects by itself; after a reconnection it
    wakes every waiting poll, since wake-ups published meanwhile were lost."""

    def __init__(self, url: str, pattern: str) -> None:
        super().__init__(name=f"presence-events {pattern}", daemon=True)
        self.url = url
        self.pattern = pattern
        self.subscribed = threading.Event()

    def run(self) -> None:
        failures = 0
        while True:
            try:
                self._listen()
            except redis.RedisError:
                delay = RECONNECT_DELAYS_SECS[min(failures, len(RECONNECT_DELAYS_SECS) - 1)]
                logger.warning(
                    "Presence events: lost the Redis subscription, retrying in %s s",
                    delay,
                    exc_info=True,
                )
                failures += 1
                self.subscribed.clear()
                time.sleep(delay)

    def _listen(self) -> None:
        client = redis.Redis.from_url(
            self.url, decode_responses=True, health_check_interval=LISTENER_IDLE_CHECK_SECS
        )
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.psubscribe(self.pattern)
            while True:
                message = pubsub.get_message(timeout=LISTENER_IDLE_CHECK_SECS)
                if message is None:
                    continue
                if message["type"] == "psubscribe":
                    self.subscribed.set()
                    registry.wake_all()
                elif message["type"] == "pmessage":
                    realm = message["channel"].rpartition(":")[2]
                    if not realm.isdigit():
                        continue  # not one of ours: it must not end the subscription
                    if message["data"] == NEW_ENTRY:
                        registry.wake_realm(int(realm))
                    else:
                        registry.wake_queue(message["data"])
        finally:
            pubsub.close()
            client.close()


class RedisBackend(EventBackend):
    """Reads PRESENCE_EVENT_REDIS_URL and PRESENCE_EVENT_REDIS_KEY_PREFIX at each use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, redis.Redis] = {}
        # asyncio connections belong to the loop that made them.
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, _AsyncClient]
        ] = weakref.WeakKeyDictionary()
        self._listeners: dict[tuple[str, str], _Listener] = {}

    # Synchronous side: the signal receiver and the register view.

    def _client(self) -> redis.Redis:
        url = presence_settings.EVENT_REDIS_URL
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = redis.Redis.from_url(url, decode_responses=True)
        return client

    def publish(self, realm_id: int, entry: LogEntry) -> None:
        retention_secs = presence_settings.EVENT_QUEUE_TIMEOUT_SECS + CLOCK_SKEW_MARGIN_SECS
        oldest_kept_ms = int((queues.now() - retention_secs) * 1000)
        pipe = self._client().pipeline(transaction=False)
        pipe.xadd(
            log_key(realm_id),
            {"e": json.dumps(entry, separators=(",", ":"))},
            minid=oldest_kept_ms,
            approximate=True,
        )
        pipe.expire(log_key(realm_id), retention_secs)
        pipe.publish(wake_channel(realm_id), NEW_ENTRY)
        pipe.execute()

    def create_queue(self, queue: EventQueue) -> None:
        client = self._client()
        newest = cast(StreamEntries, client.xrevrange(log_key(queue.realm_id), count=1))
        # "0-0" precedes every entry id, should the log be empty or gone.
        queue.read_pos = newest[0][0] if newest else "0-0"
        queue.version = 1
        pipe = client.pipeline(transaction=True)
        pipe.hset(queue_key(queue.queue_id), mapping={"v": queue.version, "d": queue.to_json()})
        pipe.expire(queue_key(queue.queue_id), presence_settings.EVENT_QUEUE_TIMEOUT_SECS)
        pipe.execute()

    # Asynchronous side: the events view.

    def _async(self) -> _AsyncClient:
        loop = asyncio.get_running_loop()
        url = presence_settings.EVENT_REDIS_URL
        with self._lock:
            clients = self._async_clients.setdefault(loop, {})
            client = clients.get(url)
            if client is None:
                client = clients[url] = _AsyncClient(url)
        return client

    async def load_queue(self, queue_id: str) -> EventQueue | None:
        version, raw = await self._async().client.hmget(queue_key(queue_id), ["v", "d"])
        if version is None or raw is None:
            return None
        return EventQueue.from_json(raw, version=int(version))

    async def save_queue(self, queue: EventQueue) -> bool:
        saved = await self._async().compare_and_set(
            keys=[queue_key(queue.queue_id)],
            args=[
                queue.version,
                queue.version + 1,
                queue.to_json(),
                presence_settings.EVENT_QUEUE_TIMEOUT_SECS,
            ],
        )
        if saved != 1:
            return False
        queue.version += 1
        return True

    async def delete_queue(self, queue: EventQueue) -> None:
        pipe = self._async().client.pipeline(transaction=False)
        pipe.delete(queue_key(queue.queue_id))
        pipe.publish(wake_channel(queue.realm_id), queue.queue_id)
        await pipe.execute()

    async def wake_queue(self, queue: EventQueue) -> None:
        await self._async().client.publish(wake_channel(queue.realm_id), queue.queue_id)

    async def read_log(self, realm_id: int, after: str) -> list[tuple[str, LogEntry]]:
        entries = cast(
            StreamEntries,
            await self._async().client.xrange(
                log_key(realm_id), min=f"({after}", max="+", count=MAX_ENTRIES_PER_READ
            ),
        )
        return [(entry_id, json.loads(fields["e"])) for entry_id, fields in entries]

    async def start_listening(self) -> None:
        url = presence_settings.EVENT_REDIS_URL
        pattern = wake_channel("*")
        with self._lock:
            listener = self._listeners.get((url, pattern))
            if listener is None:
                listener = self._listeners[(url, pattern)] = _Listener(url, pattern)
                listener.start()
        if not listener.subscribed.is_set():
            # Only until the first subscription: a poll that starts waiting before it would
            # miss wake-ups. Should Redis be down, the poll's own commands fail soon anyway.
            await asyncio.to_thread(listener.subscribed.wait, LISTENER_START_TIMEOUT_SECS)
