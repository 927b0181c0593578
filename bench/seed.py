"""Bulk seeding of benchmark realms: one INSERT ... SELECT generate_series per table and batch.

Member ``g`` (1..size) of realm ``bench<size>`` is the user ``b<size>_<g>`` with the email
``b<size>_<g>@bench.test``. Every member has a presence row connected within the last 13 days
(so inside the default 14-day window), and ``last_update_id = g``. Every 50th member is
deactivated, so the reads' filters have something to filter. API keys are derived from the
user id (``api_key_for``), so load generators need no key list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection

from django_presence.actions import do_create_realm
from django_presence.models import ApiKey, PresenceSequence, Realm, RealmMember, UserPresence

from .progress import Progress

BATCH = 25_000
DEACTIVATED_EVERY = 50
HISTORY_SPREAD_SECS = 13 * 86_400


@dataclass(frozen=True)
class SeededRealm:
    realm_id: int
    string_id: str
    size: int
    first_user_id: int  # user ids of a realm are consecutive

    def user_id(self, g: int) -> int:
        return self.first_user_id + g - 1

    def email(self, g: int) -> str:
        return f"b{self.size}_{g}@bench.test"

    def is_active(self, g: int) -> bool:
        return g % DEACTIVATED_EVERY != 0

    @property
    def visible_members(self) -> int:
        """How many members a full fetch returns."""
        return self.size - self.size // DEACTIVATED_EVERY


def api_key_for(user_id: int) -> str:
    """The seeded raw API key of a user: 32 alphanumerics, as the app requires."""
    return f"bench{user_id:027d}"


def _table(model: type) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def seed_realm(size: int) -> SeededRealm:
    """Create realm ``bench<size>`` with ``size`` members, rows and keys; shows a progress bar."""
    string_id = f"bench{size}"
    realm: Realm = do_create_realm(string_id, f"Bench realm of {size:,}")
    users = _table(get_user_model())
    progress = Progress(f"seeding {string_id:<10}", size)
    first_user_id = 0
    with connection.cursor() as cursor:
        for low in range(1, size + 1, BATCH):
            high = min(low + BATCH - 1, size)
            # Users: nothing but what auth needs; no usable password.
            cursor.execute(
                f"INSERT INTO {users} (password, is_superuser, username, first_name, last_name,"
                " email, is_staff, is_active, date_joined)"
                " SELECT '!', false, %(prefix)s || g, '', '', %(prefix)s || g || '@bench.test',"
                " false, true, now() - interval '30 days'"
                " FROM generate_series(%(low)s, %(high)s) AS g ORDER BY g",
                {"prefix": f"b{size}_", "low": low, "high": high},
            )
            joined = (
                f" FROM generate_series(%(low)s, %(high)s) AS g"
                f" JOIN {users} u ON u.username = %(prefix)s || g"
            )
            params = {"prefix": f"b{size}_", "low": low, "high": high, "realm": realm.pk}
            cursor.execute(
                f"INSERT INTO {_table(RealmMember)} (user_id, realm_id, role, is_bot, is_active,"
                " presence_enabled, date_joined)"
                " SELECT u.id, %(realm)s, 400, false, g %% 50 <> 0, true, u.date_joined" + joined,
                params,
            )
            # Connected between 2 minutes and 13 days ago, with microseconds; a quarter
            # active at that moment, a quarter active 60 s before (still "active" in the
            # legacy format), half idle for 2-3 minutes, and every 40th never active.
            cursor.execute(
                f"INSERT INTO {_table(UserPresence)} (user_id, realm_id, last_active_time,"
                " last_connected_time, last_update_id)"
                " SELECT u.id, %(realm)s,"
                " CASE WHEN g %% 40 = 0 THEN NULL"
                "  ELSE c.connected - (g %% 4) * interval '60 seconds' END,"
                " c.connected, g" + joined + " CROSS JOIN LATERAL (SELECT now()"
                " - (120 + (g::bigint * 7919) %% %(spread)s) * interval '1 second'"
                " - (g %% 1000) * interval '1 millisecond' AS connected) c",
                {**params, "spread": HISTORY_SPREAD_SECS},
            )
            cursor.execute(
                f"INSERT INTO {_table(ApiKey)} (member_id, key_digest, prefix, created_at)"
                " SELECT m.id, encode(sha256(convert_to(k.raw, 'UTF8')), 'hex'),"
                " left(k.raw, 6), now()" + joined + f" JOIN {_table(RealmMember)} m"
                " ON m.user_id = u.id CROSS JOIN LATERAL"
                " (SELECT 'bench' || lpad(u.id::text, 27, '0') AS raw) k",
                params,
            )
            if low == 1:
                cursor.execute(f"SELECT id FROM {users} WHERE username = %s", [f"b{size}_1"])
                first_user_id = cursor.fetchone()[0]
            progress.advance(high - low + 1)
        cursor.execute(
            f"UPDATE {_table(PresenceSequence)} SET last_update_id = %s WHERE realm_id = %s",
            [size, realm.pk],
        )
    seeded = SeededRealm(realm.pk, string_id, size, first_user_id)
    _check_seeded(seeded)
    return seeded


def _check_seeded(seeded: SeededRealm) -> None:
    """The derivations the load generators rely on hold for the first and last member."""
    for g in (1, seeded.size):
        member = RealmMember.objects.select_related("user").get(user_id=seeded.user_id(g))
        assert member.email == seeded.email(g), (member.email, seeded.email(g))
        digest = hashlib.sha256(api_key_for(member.user_id).encode()).hexdigest()
        assert ApiKey.objects.filter(member=member, key_digest=digest).exists()


def analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def load_realm(size: int) -> SeededRealm:
    """A realm seeded earlier by seed_realm (in this database)."""
    realm = Realm.objects.get(string_id=f"bench{size}")
    first_user_id = get_user_model().objects.get(username=f"b{size}_1").pk
    return SeededRealm(realm.pk, realm.string_id, size, first_user_id)
