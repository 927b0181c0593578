"""The shared backend: realm logs and queues in Redis, for any number of server processes on any
number of hosts. Needs the ``redis`` package (``pip install django-presence[redis]``).

Redis primitives only (docs/events.md says why each):

- ``<prefix>:log:<realm_id>``: a Stream per realm, one entry per presence change (XADD, trimmed
  with ``MINID ~`` to what a live queue can still need, and expiring when the realm is quiet).
  Its entry ids are the queues' cursors; XRANGE reads past one.
- ``<prefix>:queue:<queue_id>``: a Hash per queue, ``v`` (version), ``d`` (the JSON record) and
  ``r`` (the run_id of the Redis server it was created on), expiring after
  PRESENCE_EVENT_QUEUE_TIMEOUT_SECS without a poll: Redis does the garbage collection. Saves
  are a compare-and-set on ``v`` in a short Lua script.
- ``<prefix>:wake:<realm_id>``: a pub/sub channel. Each server process keeps one connection
  pattern-subscribed to them all, in a thread, and wakes its own waiting polls.
- ``<prefix>:wake:keys``: on the same subscription, news that an API key, a member, a user or a
  realm changed: every process forgets the keys it remembers (recent_keys.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from django_presence.conf import presence_settings
from django_presence.events import queues
from django_presence.events.queues import EventQueue, LogEntry
from django_presence.events.wakeups import registry
from django_presence.recent_keys import recent_api_keys

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
POOL_TIMEOUT_SECS = 5
# Requests of polls per pipeline, at most (see _Batches).
BATCH_SIZE = 256

# Every command fails within seconds when Redis is down, hung or out of reach, so that
# register and GET events answer with an error at once rather than hang (redis-py's defaults
# are 5 s per connect and per read, with 10 retries).
CONNECT_TIMEOUT_SECS = 2
SOCKET_TIMEOUT_SECS = 2
# A command that fails with a connection error (on a pooled connection that Redis closed when
# it restarted, or while Redis loads its dump) is sent again on a new connection, after random
# pauses of up to 0.1, 0.2, 0.4 s. Timeouts are not retried: a hung server stays hung. Sending
# a command again is safe even if Redis ran it before the connection broke: reads and the
# writes of create_queue and delete_queue give the same result twice; a compare-and-set that
# ran finds its own version and answers "lost", so the poll reads the queue again and redoes
# its change; only publish's XADD can then append an entry twice, and a presence event given
# twice changes nothing for a client.
RECONNECT_RETRIES = 3
RECONNECT_BACKOFF_BASE_SECS = 0.05
RECONNECT_BACKOFF_CAP_SECS = 0.5

LISTENER_START_TIMEOUT_SECS = 5
# The subscriber pings Redis this often, and gives its connection up as lost when nothing has
# come back for this long plus the socket timeout (a hung server or a silent network).
LISTENER_PING_SECS = 1
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


KEYS_CHANGED = "keys"


def wake_channel(realm_id: int | str) -> str:
    return _key("wake", realm_id)


def _compare_and_set_args(queue: EventQueue) -> list[Any]:
    return [
        queue.version,
        queue.version + 1,
        queue.to_json(),
        presence_settings.EVENT_QUEUE_TIMEOUT_SECS,
    ]


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(
        base=RECONNECT_BACKOFF_BASE_SECS, cap=RECONNECT_BACKOFF_CAP_SECS
    )


def _sync_client(
    url: str,
    *,
    retries: int = RECONNECT_RETRIES,
    on_connect: Callable[[redis.connection.Connection], None] | None = None,
) -> redis.Redis:
    retry = Retry(_backoff(), retries, supported_errors=(redis.ConnectionError,))
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_SECS,
        socket_timeout=SOCKET_TIMEOUT_SECS,
        retry=retry,
        redis_connect_func=on_connect,
    )


def _run_id(info: str) -> str:
    """The run_id of ``INFO server``: Redis draws a new one each time it starts."""
    for line in info.splitlines():
        name, _colon, value = line.partition(":")
        if name == "run_id":
            return value.strip()
    raise redis.ResponseError("INFO server gave no run_id")


class _SyncClient:
    """The client of the synchronous side, and the run_id of the server it last connected to.
    Every command runs on a connection that is connected first, so after a command the run_id
    is that of the server that answered it (or of a newer one)."""

    def __init__(self, url: str) -> None:
        self.run_id = ""
        self.client = _sync_client(url, on_connect=self._connected)

    def _connected(self, connection: redis.connection.Connection) -> None:
        connection.on_connect()  # type: ignore[no-untyped-call]
        connection.send_command("INFO", "server")  # type: ignore[no-untyped-call]
        self.run_id = _run_id(connection.read_response())


# Queues a request's commands on a pipeline (async: a script call checks for its script).
_Adder = Callable[[redis.asyncio.client.Pipeline], Awaitable[object]]


class _Batches:
    """The commands that the polls of one event loop send in one turn of the loop go to Redis
    together, in pipelines of at most BATCH_SIZE requests: when a thousand clients poll again
    at once, they cost a few round trips instead of three each, and the connections in use stay
    few. Each request gets its own answers, or the error of its own commands (or of the
    pipeline)."""

    def __init__(self, client: _AsyncClient) -> None:
        self._client = client
        self._pending: list[tuple[_Adder, int, asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, add: _Adder, count: int) -> list[Any]:
        """The answers to the ``count`` commands that ``add`` queues."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((add, count, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), BATCH_SIZE):
            task = asyncio.ensure_future(self._send(pending[start : start + BATCH_SIZE]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[_Adder, int, asyncio.Future[list[Any]]]]) -> None:
        try:
            pipe = self._client.client.pipeline(transaction=False)
            for add, _count, _future in batch:
                await add(pipe)
            answers = await pipe.execute(raise_on_error=False)
        except BaseException as error:
            for _add, _count, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        start = 0
        for _add, count, future in batch:
            mine = answers[start : start + count]
            start += count
            if future.done():
                continue
            failed = next((answer for answer in mine if isinstance(answer, Exception)), None)
            if failed is None:
                future.set_result(mine)
            else:
                future.set_exception(failed)


class _AsyncClient:
    """A pooled asyncio client, its compare-and-set script and the run_id of the server it
    last connected to, for one event loop."""

    def __init__(self, url: str) -> None:
        self.run_id = ""
        retry = AsyncRetry(_backoff(), RECONNECT_RETRIES, supported_errors=(redis.ConnectionError,))
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=ASYNC_POOL_SIZE,
            timeout=POOL_TIMEOUT_SECS,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_SECS,
            socket_timeout=SOCKET_TIMEOUT_SECS,
            retry=retry,
            redis_connect_func=self._connected,
        )
        self.client = redis.asyncio.Redis(connection_pool=pool)
        self.compare_and_set = self.client.register_script(COMPARE_AND_SET)
        self.batches = _Batches(self)

    async def save(self, pipe: redis.asyncio.client.Pipeline, queue: EventQueue) -> None:
        """Queue the compare-and-set of ``queue`` on ``pipe``."""
        await self.compare_and_set(
            keys=[queue_key(queue.queue_id)], args=_compare_and_set_args(queue), client=pipe
        )

    async def _connected(self, connection: redis.asyncio.Connection) -> None:
        await connection.on_connect()
        await connection.send_command("INFO", "server")
        self.run_id = _run_id(await connection.read_response())


class _Listener(threading.Thread):
    """This process's subscriber: one connection, pattern-subscribed to every realm's wake
    channel, while polls wait. It reconnects by itself. Whenever it loses its
    subscription it wakes every waiting poll, which reads its queue again: with Redis down,
    that read fails and the poll answers with the error at once, instead of at the end of the
    long poll. After it subscribes again it wakes them all again, since wake-ups published
    meanwhile were lost. Once no poll waits any more it ends, rather than knock at a Redis that
    is gone, and the next poll to wait starts a new one (``retire`` decides, see RedisBackend)."""

    def __init__(self, url: str, pattern: str, retire: Callable[[_Listener], bool]) -> None:
        super().__init__(name=f"presence-events {pattern}", daemon=True)
        self.url = url
        self.pattern = pattern
        self.subscribed = threading.Event()
        self._retire = retire

    def run(self) -> None:
        failures = 0
        while True:
            try:
                self._listen()
            except redis.RedisError:
                # Counted since the last subscription: after a restart, reconnect at once.
                failures = 0 if self.subscribed.is_set() else failures + 1
                self.subscribed.clear()
                registry.wake_all()
                delay = RECONNECT_DELAYS_SECS[min(failures, len(RECONNECT_DELAYS_SECS) - 1)]
                logger.warning(
                    "Presence events: lost the Redis subscription, retrying in %s s",
                    delay,
                    exc_info=True,
                )
                # Meanwhile the polls just woken find out whether Redis is still there.
                time.sleep(delay)
                if self._retire(self):
                    return

    def _listen(self) -> None:
        # No retries: a lost connection is news for the waiting polls (see run).
        client = _sync_client(self.url, retries=0)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.psubscribe(self.pattern)
            answered = time.monotonic()
            next_ping = answered + LISTENER_PING_SECS
            while True:
                message = pubsub.get_message(timeout=LISTENER_PING_SECS)
                now = time.monotonic()
                if message is not None:
                    answered = now
                    self._on_message(message)
                elif now - answered > LISTENER_PING_SECS + SOCKET_TIMEOUT_SECS:
                    raise redis.TimeoutError("Redis did not answer the subscriber's PING")
                if now >= next_ping:
                    pubsub.ping()
                    next_ping = now + LISTENER_PING_SECS
        finally:
            pubsub.close()
            client.close()

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "psubscribe":
            self.subscribed.set()
            # News of changed keys may have been lost while unsubscribed.
            recent_api_keys.forget_all()
            registry.wake_all()
        elif message["type"] == "pmessage":
            realm = message["channel"].rpartition(":")[2]
            if realm == KEYS_CHANGED:
                recent_api_keys.forget_all()
                return
            if not realm.isdigit():
                return  # not one of ours: it must not end the subscription
            if message["data"] == NEW_ENTRY:
                registry.wake_realm(int(realm))
            else:
                registry.wake_queue(message["data"])


class RedisBackend(EventBackend):
    """Reads PRESENCE_EVENT_REDIS_URL and PRESENCE_EVENT_REDIS_KEY_PREFIX at each use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, _SyncClient] = {}
        # asyncio connections belong to the loop that made them.
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, _AsyncClient]
        ] = weakref.WeakKeyDictionary()
        self._listeners: dict[tuple[str, str], _Listener] = {}

    # Synchronous side: the signal receiver and the register view.

    def _sync(self) -> _SyncClient:
        url = presence_settings.EVENT_REDIS_URL
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = _SyncClient(url)
        return client

    def publish(self, realm_id: int, entry: LogEntry) -> None:
        retention_secs = presence_settings.EVENT_QUEUE_TIMEOUT_SECS + CLOCK_SKEW_MARGIN_SECS
        oldest_kept_ms = int((queues.now() - retention_secs) * 1000)
        pipe = self._sync().client.pipeline(transaction=False)
        pipe.xadd(
            log_key(realm_id),
            {"e": json.dumps(entry, separators=(",", ":"))},
            minid=oldest_kept_ms,
            approximate=True,
        )
        pipe.expire(log_key(realm_id), retention_secs)
        pipe.publish(wake_channel(realm_id), NEW_ENTRY)
        pipe.execute()

    def announce_keys_changed(self) -> None:
        self._sync().client.publish(wake_channel(KEYS_CHANGED), KEYS_CHANGED)

    def create_queue(self, queue: EventQueue) -> None:
        sync = self._sync()
        newest = cast(StreamEntries, sync.client.xrevrange(log_key(queue.realm_id), count=1))
        # "0-0" precedes every entry id, should the log be empty or gone.
        queue.read_pos = newest[0][0] if newest else "0-0"
        queue.version = 1
        pipe = sync.client.pipeline(transaction=True)
        # Stamped with the run_id of the server that has it: see load_queue.
        pipe.hset(
            queue_key(queue.queue_id),
            mapping={"v": queue.version, "d": queue.to_json(), "r": sync.run_id},
        )
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

    async def load_queue(self, queue_id: str, *, realm_id: int | None = None) -> EventQueue | None:
        client = self._async()

        async def load(pipe: redis.asyncio.client.Pipeline) -> None:
            pipe.hmget(queue_key(queue_id), ["v", "d", "r"])
            if realm_id is not None:
                # The log's newest entry with it: a poll with nothing new reads no log.
                pipe.xrevrange(log_key(realm_id), count=1)

        answers = await client.batches.run(load, 1 if realm_id is None else 2)
        version, raw, run_id = answers[0]
        head: str | None = None
        if realm_id is not None:
            head = answers[1][0][0] if answers[1] else "0-0"
        if version is None or raw is None:
            return None
        if run_id != client.run_id:
            # Saved before Redis last restarted: the log entries written after Redis' last save
            # to disk are gone, and the queue would miss them without a word.
            return None
        queue = EventQueue.from_json(raw, version=int(version))
        queue.log_head = head
        return queue

    async def save_queue(self, queue: EventQueue) -> bool:
        client = self._async()

        async def save(pipe: redis.asyncio.client.Pipeline) -> None:
            await client.save(pipe, queue)

        (saved,) = await client.batches.run(save, 1)
        if saved != 1:
            return False
        queue.version += 1
        return True

    async def save_queues(self, queues: list[EventQueue]) -> list[bool]:
        """Every compare-and-set in one pipeline: one round trip for a whole delivery."""
        if not queues:
            return []
        client = self._async()
        pipe = client.client.pipeline(transaction=False)
        for queue in queues:
            # Queued on the pipeline, which loads the script first if Redis lacks it.
            await client.save(pipe, queue)
        saved = []
        for queue, answer in zip(queues, await pipe.execute(), strict=True):
            if answer == 1:
                queue.version += 1
            saved.append(answer == 1)
        return saved

    async def unchanged(self, queue: EventQueue) -> bool:
        async def peek(pipe: redis.asyncio.client.Pipeline) -> None:
            pipe.hget(queue_key(queue.queue_id), "v")
            pipe.xrevrange(log_key(queue.realm_id), count=1)

        version, newest = await self._async().batches.run(peek, 2)
        return version == str(queue.version) and (not newest or newest[0][0] == queue.read_pos)

    async def delete_queue(self, queue: EventQueue) -> None:
        pipe = self._async().client.pipeline(transaction=False)
        pipe.delete(queue_key(queue.queue_id))
        pipe.publish(wake_channel(queue.realm_id), queue.queue_id)
        await pipe.execute()

    async def wake_queue(self, queue: EventQueue) -> None:
        await self._async().client.publish(wake_channel(queue.realm_id), queue.queue_id)

    async def read_log(self, realm_id: int, after: str) -> list[tuple[str, LogEntry]]:
        async def read(pipe: redis.asyncio.client.Pipeline) -> None:
            pipe.xrange(log_key(realm_id), min=f"({after}", max="+", count=MAX_ENTRIES_PER_READ)

        (answer,) = await self._async().batches.run(read, 1)
        entries = cast(StreamEntries, answer)
        return [(entry_id, json.loads(fields["e"])) for entry_id, fields in entries]

    async def start_listening(self) -> None:
        url = presence_settings.EVENT_REDIS_URL
        pattern = wake_channel("*")
        with self._lock:
            listener = self._listeners.get((url, pattern))
            # One that died of an unexpected error is replaced rather than trusted.
            if listener is None or not listener.is_alive():
                listener = _Listener(url, pattern, self._retire_if_idle)
                self._listeners[(url, pattern)] = listener
                listener.start()
        if not listener.subscribed.is_set():
            # Until it subscribes: a poll that starts waiting before then would miss wake-ups.
            # Should Redis be down, the poll's own commands fail soon anyway.
            await asyncio.to_thread(listener.subscribed.wait, LISTENER_START_TIMEOUT_SECS)

    def _retire_if_idle(self, listener: _Listener) -> bool:
        """Whether ``listener``, which has lost its subscription, should end: yes when no poll
        waits. Decided under the lock, and polls count themselves as waiting before they look
        for a listener (EventBackend.waiting), so a poll never waits with nobody listening."""
        with self._lock:
            if registry.waiting():
                return False
            del self._listeners[(listener.url, listener.pattern)]
            return True
