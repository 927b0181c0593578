"""The cheap delivery path (docs/events.md, "Delivery"): one pass answers every waiting poll of
a realm, API-key long polls served by the ASGI application through the events pipeline, their
synchronous steps on the events worker, the compiled API key lookup and the quick parameter
path, each checked against the slower path it replaces."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_presence import authentication
from django_presence.events import service
from django_presence.events.asgi import PresenceASGIHandler
from django_presence.events.backends import get_event_backend
from django_presence.events.queues import EventQueue
from django_presence.events.serializers import GetEventsParams, RegisterParams
from django_presence.events.service import get_events, register_event_queue
from django_presence.events.worker import SyncWorker, release_connections, worker
from django_presence.models import RealmMember
from django_presence.serializers import (
    UpdatePresenceParams,
    UpdateStatusParams,
    ZulipParamsSerializer,
)

from .events_utils import log_entry, register_queue, use_fresh_backends

POLLS = 20
ANSWER_TIMEOUT_SECS = 20


def register(member: RealmMember, **flags: bool) -> str:
    queue_id, _state = register_event_queue(
        member,
        event_types=["presence"],
        fetch_event_types=[],
        slim_presence=flags.get("slim", False),
        simplified_presence_events=flags.get("simplified", False),
        history_limit_days=None,
    )
    return queue_id


@pytest.mark.django_db
def test_one_pass_answers_every_waiting_poll_with_one_log_read(make_member, settings, monkeypatch):
    """Twenty polls of three shapes wait; one entry is published: every poll gets it with its
    queue's next id, in its shape, and the realm's log is read once for all of them."""
    settings.PRESENCE_EVENT_LONG_POLL_SECS = 30
    use_fresh_backends(monkeypatch)
    members = [make_member() for _ in range(POLLS)]
    flags = [{}, {"slim": True}, {"simplified": True}]
    queues = [register(m, **flags[i % 3]) for i, m in enumerate(members)]
    backend = get_event_backend()
    reads = mock.Mock(wraps=backend.read_log)
    subject = make_member()

    async def scenario() -> list[dict[str, Any]]:
        polls = [
            asyncio.create_task(
                get_events(m, queue_id=q, last_event_id=-1, dont_block=False, limited=False)
            )
            for m, q in zip(members, queues, strict=True)
        ]
        while service.registry.waiting() < POLLS:
            await asyncio.sleep(0.01)
        monkeypatch.setattr(backend, "read_log", reads)
        await asyncio.to_thread(backend.publish, subject.realm_id, log_entry(subject.user_id))
        return await asyncio.wait_for(asyncio.gather(*polls), ANSWER_TIMEOUT_SECS)

    answers = asyncio.run(scenario())
    assert reads.call_count == 1
    for index, answer in enumerate(answers):
        (event,) = answer["events"]
        assert event["id"] == 0 and answer["queue_id"] == queues[index]
        shape = flags[index % 3]
        if shape.get("simplified"):
            assert set(event) == {"type", "presences", "id"}
        else:
            assert ("email" in event) is not shape.get("slim", False)


@pytest.mark.django_db
def test_several_pending_entries_come_in_one_answer(make_member, settings, monkeypatch):
    use_fresh_backends(monkeypatch)
    watcher, first, second = make_member(), make_member(), make_member()
    queue_id = register(watcher)
    backend = get_event_backend()
    backend.publish(watcher.realm_id, log_entry(first.user_id))
    backend.publish(watcher.realm_id, log_entry(second.user_id))
    answer = async_to_sync(get_events)(
        watcher, queue_id=queue_id, last_event_id=-1, dont_block=False, limited=False
    )
    assert [(e["user_id"], e["id"]) for e in answer["events"]] == [
        (first.user_id, 0),
        (second.user_id, 1),
    ]


@pytest.mark.django_db
def test_a_delivery_to_a_changed_queue_lets_the_poll_look_for_itself(
    make_member, settings, monkeypatch
):
    """The snapshot is stale (its version moved): the save loses, and the poll reads the queue
    itself and still gets the event."""
    settings.PRESENCE_EVENT_LONG_POLL_SECS = 30
    use_fresh_backends(monkeypatch)
    watcher, subject = make_member(), make_member()
    queue_id = register(watcher)
    backend = get_event_backend()

    async def scenario() -> dict[str, Any]:
        poll = asyncio.create_task(
            get_events(watcher, queue_id=queue_id, last_event_id=-1, dont_block=False)
        )
        while service.registry.waiting() < 1:
            await asyncio.sleep(0.01)
        (waiter,) = service.registry._by_queue[queue_id]
        assert waiter.snapshot is not None
        stale = waiter.snapshot.copy()
        stale.version -= 1
        waiter.snapshot = stale
        await asyncio.to_thread(backend.publish, watcher.realm_id, log_entry(subject.user_id))
        return await asyncio.wait_for(poll, ANSWER_TIMEOUT_SECS)

    answer = asyncio.run(scenario())
    assert [(e["user_id"], e["id"]) for e in answer["events"]] == [(subject.user_id, 0)]


# The ASGI application's own path --------------------------------------------------------------


async def _asgi_get(path: str, query: str, authorization: str) -> tuple[int, dict[str, Any]]:
    communicator = ApplicationCommunicator(
        PresenceASGIHandler(),
        {
            "type": "http",
            "method": "GET",
            "path": path,
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"authorization", authorization.encode())],
            "server": ("127.0.0.1", 80),
            "scheme": "http",
        },
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(ANSWER_TIMEOUT_SECS)
    body = await communicator.receive_output(ANSWER_TIMEOUT_SECS)
    headers = dict(start["headers"])
    assert headers[b"Content-Type"] == b"application/json"
    return start["status"], json.loads(body["body"])


@pytest.mark.django_db(transaction=True)
def test_an_api_key_long_poll_is_answered_by_the_application(
    hamlet, othello, api_client_for, monkeypatch
):
    use_fresh_backends(monkeypatch)
    client = api_client_for(hamlet)
    queue_id = register_queue(client)
    get_event_backend().publish(hamlet.realm_id, log_entry(othello.user_id))
    authorization = client._credentials["HTTP_AUTHORIZATION"]
    query = f"queue_id={queue_id}&last_event_id=-1&dont_block=true&extra=1"
    status, body = async_to_sync(_asgi_get)("/api/v1/events", query, authorization)
    assert status == 200
    assert body["ignored_parameters_unsupported"] == ["extra"]
    assert [e["user_id"] for e in body["events"]] == [othello.user_id]
    status, body = async_to_sync(_asgi_get)(
        "/api/v1/events", "queue_id=nope&last_event_id=-1", authorization
    )
    assert (status, body["code"]) == (400, "BAD_EVENT_QUEUE_ID")
    status, body = async_to_sync(_asgi_get)("/api/v1/events", "queue_id=x", "Basic eDp5")
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    # The worker's connection, closed while this test may still touch the database.
    async_to_sync(worker.run)(release_connections)


def test_the_worker_runs_in_order_and_hands_errors_back():
    worker = SyncWorker()

    def fail() -> None:
        raise ValueError("no")

    async def scenario() -> tuple[list[int], BaseException | None]:
        results = await asyncio.gather(*(worker.run(lambda i=i: i) for i in range(100)))
        try:
            await worker.run(fail)
        except ValueError as error:
            return results, error
        return results, None

    results, error = asyncio.run(scenario())
    assert results == list(range(100))
    assert isinstance(error, ValueError)


# Authentication and parameters -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_compiled_key_lookup_gives_what_the_orm_gives(hamlet, api_client_for):
    client = api_client_for(hamlet)
    digest = authentication.api_key_digest(client.api_key)
    compiled = authentication._find_api_key(digest)
    orm = authentication._keys_with_members(digest).first()
    assert compiled is not None and orm is not None
    assert compiled.pk == orm.pk and compiled.member.pk == orm.member.pk
    with CaptureQueriesContext(connection) as queries:
        # Loaded with the key: the user, the realm, its sequence and the presence row.
        assert compiled.member.user.pk == hamlet.user_id
        assert compiled.member.realm.pk == hamlet.realm_id
        compiled.member.realm.presence_sequence  # noqa: B018
    assert len(queries) == 0
    assert authentication._find_api_key("0" * 64) is None


@pytest.mark.parametrize(
    ("params_class", "params"),
    [
        (GetEventsParams, {"queue_id": "abc", "last_event_id": "-1"}),
        (GetEventsParams, {"queue_id": "abc", "last_event_id": "12", "dont_block": "true"}),
        (GetEventsParams, {"queue_id": "", "last_event_id": "0", "x": "1", "client": "a"}),
        (GetEventsParams, {"queue_id": "abc", "last_event_id": " 5"}),
        (GetEventsParams, {"queue_id": "abc", "last_event_id": "true"}),
        (GetEventsParams, {"queue_id": "\ud800", "last_event_id": "1"}),
        (GetEventsParams, {"dont_block": "1"}),
        (UpdatePresenceParams, {"status": "active", "last_update_id": "7"}),
        (UpdatePresenceParams, {"status": "away"}),
        (UpdatePresenceParams, {"ping_only": "false"}),
        (RegisterParams, {"event_types": '["presence"]'}),
        # A RawStringField subclass that strips: never the quick path.
        (UpdateStatusParams, {"status_text": "  lunch  ", "emoji_name": "car"}),
    ],
)
def test_the_quick_parameter_path_agrees_with_drf(
    params_class: type[ZulipParamsSerializer], params: dict[str, str]
):
    quick = params_class._parse_quickly(params)
    serializer = params_class(data=params)
    if params_class is UpdateStatusParams:
        assert quick is None
    if quick is None:
        return  # DRF decides (and words the error)
    assert serializer.is_valid()
    assert quick.values == dict(serializer.validated_data)


def test_queue_snapshots_copy_without_the_log_head():
    queue = EventQueue.new(
        user_id=1,
        realm_id=1,
        wants_presence=True,
        slim_presence=False,
        simplified_presence_events=False,
    )
    queue.log_head = "5"
    assert queue.copy().log_head is None
    assert "log_head" not in queue.to_json()
