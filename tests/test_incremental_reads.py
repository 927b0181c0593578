"""read_realm_presence's ``newest_update_id``: what the request already knows of the realm's
newest write. At or below the client's cursor, nothing is read; above it, the read stops there
and what was written since comes with the next poll."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_presence import actions
from django_presence.queries import read_realm_presence

pytestmark = pytest.mark.django_db


def entries(read) -> tuple[list[str], int]:
    """The keys the read returns, and its presence_last_update_id."""
    return read.consume(lambda chunks: [key for chunk in chunks for key in chunk])


@pytest.fixture
def three_writes(make_member):
    """Three members who reported in turn: update ids 1, 2 and 3."""
    members = [make_member() for _ in range(3)]
    moment = timezone.now() - timedelta(seconds=30)
    for member in members:
        actions.do_update_user_presence(member, log_time=moment, status="active")
    return members


def test_nothing_newer_than_the_cursor_reads_nothing(three_writes, django_assert_num_queries):
    viewer = three_writes[0]
    for cursor in (3, 4):
        with django_assert_num_queries(0):
            read = read_realm_presence(
                viewer.realm, viewer, slim_presence=True, last_update_id=cursor, newest_update_id=3
            )
            assert entries(read) == ([], cursor)


def test_the_read_stops_at_the_newest_id_known(three_writes, django_assert_num_queries):
    viewer, second, third = three_writes
    with django_assert_num_queries(1):
        read = read_realm_presence(
            viewer.realm, viewer, slim_presence=True, last_update_id=1, newest_update_id=2
        )
        assert entries(read) == ([str(second.user_id)], 2)
    # The next poll, from the cursor it got, brings the write the first one left out.
    read = read_realm_presence(viewer.realm, viewer, slim_presence=True, last_update_id=2)
    assert entries(read) == ([str(third.user_id)], 3)


def test_full_reads_ignore_the_bound(three_writes):
    viewer = three_writes[0]
    read = read_realm_presence(
        viewer.realm, viewer, slim_presence=True, last_update_id=-1, newest_update_id=1
    )
    keys, last_update_id = entries(read)
    assert (sorted(keys), last_update_id) == (
        sorted(str(member.user_id) for member in three_writes),
        3,
    )


def test_the_update_id_is_right_even_if_the_consumer_stops_early(three_writes):
    viewer = three_writes[0]
    read = read_realm_presence(viewer.realm, viewer, slim_presence=True, last_update_id=0)
    assert read.consume(lambda chunks: None) == (None, 3)
