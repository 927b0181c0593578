"""django_presence.queries: the realm read's one declaration gives exact timestamps on every
database the suite runs on (SQLite here, PostgreSQL in the PostgreSQL run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import NotSupportedError, connection
from django.db.models.functions import Coalesce

from django_presence.models import UserPresence
from django_presence.queries import EpochMicroseconds, _RealmRows, get_presence_dict_by_realm

pytestmark = pytest.mark.django_db

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MOMENTS = [
    datetime(2026, 11, 30, 10, 31, 45, 123456, tzinfo=UTC),
    datetime(2026, 11, 30, 10, 31, 45, tzinfo=UTC),  # stored without a fraction on SQLite
    datetime(2026, 11, 30, 10, 31, 45, 999999, tzinfo=UTC),
    datetime(2026, 11, 30, 10, 31, 45, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
]


def exact_microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_the_database_computes_exact_microseconds(hamlet, moment):
    UserPresence.objects.create(
        user=hamlet.user, realm=hamlet.realm, last_active_time=moment, last_connected_time=None
    )
    value = UserPresence.objects.values_list(
        EpochMicroseconds(Coalesce("last_active_time", "last_connected_time")), flat=True
    ).get()
    assert value == exact_microseconds(moment)
    # The float the read divides it into is the one datetime.timestamp() gives.
    assert value / 1_000_000 == moment.timestamp()


def test_a_missing_timestamp_is_the_join_date(hamlet):
    joined = hamlet.date_joined
    UserPresence.objects.create(
        user=hamlet.user,
        realm=hamlet.realm,
        last_active_time=None,
        last_connected_time=joined + timedelta(days=1),
    )
    presences, _update_id = get_presence_dict_by_realm(
        hamlet.realm,
        hamlet,
        slim_presence=True,
        history_limit_days=10**6,
    )
    assert presences[str(hamlet.user_id)] == {
        "active_timestamp": int(joined.timestamp()),
        "idle_timestamp": int((joined + timedelta(days=1)).timestamp()),
    }


def test_other_databases_are_refused_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(connection, "vendor", "oracle")
    query = UserPresence.objects.values_list(EpochMicroseconds("last_active_time"))
    with pytest.raises(NotSupportedError, match="need PostgreSQL or SQLite"):
        str(query.query)


@pytest.mark.parametrize("by_email", [False, True])
@pytest.mark.parametrize("after", [None, 0, 7, 2**63 - 1])
@pytest.mark.parametrize("up_to", [None, 9])
@pytest.mark.parametrize("since", [None, datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)])
def test_the_kept_sql_is_the_freshly_compiled_sql(by_email, after, up_to, since):
    """_RealmRows.sql keeps one compiled statement per shape and fills in the values: the same
    statement and parameters as compiling the declaration for these values."""
    rows = _RealmRows(
        database="default",
        realm_id=42,
        after_update_id=after,
        up_to_update_id=up_to,
        connected_since=since,
        accessible_user_ids=None,
    )
    kept_sql, kept_params = rows.sql(by_email=by_email)
    fresh_sql, fresh_params = _RealmRows._compiled(rows, by_email)
    assert kept_sql == fresh_sql
    assert kept_params == fresh_params
