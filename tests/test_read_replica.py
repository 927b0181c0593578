"""PRESENCE_READ_DATABASE: realm-wide reads go to that alias, and the incremental protocol
loses nothing when the replica lags (docs/scaling.md). "replica" is a mirror of "default" in
tests/settings.py; a lagging replica is a REPEATABLE READ snapshot held open on it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_presence import actions

from .api_utils import REALM_PRESENCE_URL, post_presence, success

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])

PRESENCE_TABLE = '"django_presence_userpresence"'


def realm_reads(queries: CaptureQueriesContext) -> list[str]:
    """Realm-wide reads: SELECTs of presence rows by realm (not authentication, which loads
    the caller's row with the API key, nor the write path's read of the caller's row)."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT")
        and PRESENCE_TABLE in q["sql"]
        and '"realm_id" = ' in q["sql"]
        and "django_presence_apikey" not in q["sql"]
    ]


@pytest.fixture
def hamlet_and_othello(make_member, api_client_for):
    hamlet, othello = make_member(), make_member()
    reported = timezone.now() - timedelta(minutes=2)
    for member in (hamlet, othello):
        actions.do_update_user_presence(member, log_time=reported, status="active")
    return api_client_for(hamlet), othello


@pytest.mark.parametrize("read_database", ["replica", None])
def test_realm_reads_use_the_read_database(settings, hamlet_and_othello, read_database):
    settings.PRESENCE_READ_DATABASE = read_database
    client, othello = hamlet_and_othello
    with (
        CaptureQueriesContext(connections["default"]) as on_default,
        CaptureQueriesContext(connections["replica"]) as on_replica,
    ):
        modern = success(post_presence(client, status="active", last_update_id=-1))
        legacy = success(client.get(REALM_PRESENCE_URL))
    assert sorted(modern["presences"]) == sorted([str(client.member.user_id), str(othello.user_id)])
    assert sorted(legacy["presences"]) == sorted([client.member.email, othello.email])
    expected_on, expected_off = (
        (on_replica, on_default) if read_database else (on_default, on_replica)
    )
    assert len(realm_reads(expected_on)) == 2
    assert realm_reads(expected_off) == []


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a lagging snapshot needs PostgreSQL's MVCC"
)
def test_a_lagging_replica_loses_nothing(settings, hamlet_and_othello):
    settings.PRESENCE_READ_DATABASE = "replica"
    client, othello = hamlet_and_othello
    first = success(post_presence(client, status="active", last_update_id=-1))
    cursor = first["presence_last_update_id"]
    replica = connections["replica"]
    with transaction.atomic(using="replica"):
        # The replica stops here: it keeps serving this snapshot while the primary moves on.
        with replica.cursor() as snapshot:
            snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            snapshot.execute("SELECT 1")
        actions.do_update_user_presence(othello, log_time=timezone.now(), status="active")
        behind = success(post_presence(client, status="active", last_update_id=cursor))
        # Nothing yet, and the cursor stays where it was: the client will ask again from it.
        assert (behind["presences"], behind["presence_last_update_id"]) == ({}, cursor)
    # The replica has caught up: the write it missed comes now.
    caught_up = success(post_presence(client, status="active", last_update_id=cursor))
    assert list(caught_up["presences"]) == [str(othello.user_id)]
    assert caught_up["presence_last_update_id"] == cursor + 1
