"""Every read of django-presence. Each function takes the realm first and filters by it first,
so the indexes that lead with the realm serve it. Nothing here writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import NotSupportedError, connections, router
from django.db.models import (
    BigIntegerField,
    Count,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Concat, Lower, NullIf, Trim
from django.utils import timezone

from .access import (
    accessible_user_ids,
    count_members_who_can_access,
    more_members_can_access_than,
)
from .conf import presence_settings
from .formatting import legacy_entry, modern_entry_at
from .models import (
    PresenceSequence,
    Realm,
    RealmEmoji,
    RealmMember,
    UserPresence,
    UserStatus,
    user_model_has_field,
)
from .status import STATUSES, legacy_status_at, presence_status_q
from .user_status import (
    UNICODE_EMOJI,
    Emoji,
    StoredStatus,
    UserStatusDict,
    format_user_status,
    shows_in_register,
)

T = TypeVar("T")

# presence_last_update_id when there is neither data nor a client baseline.
NO_UPDATE_ID = -1

MAX_HISTORY_LIMIT_DAYS = 365_000


def _user_email_field() -> str:
    return get_user_model().get_email_field_name()


# RFC 5321's limit, and EmailField's default max_length.
EMAIL_MAX_LENGTH = 254


def _max_email_length() -> int:
    """The longest email the user model's email column holds (EMAIL_MAX_LENGTH if unbounded)."""
    email_field = get_user_model()._meta.get_field(_user_email_field())
    return getattr(email_field, "max_length", None) or EMAIL_MAX_LENGTH


def active_members(realm: Realm) -> QuerySet[RealmMember]:
    """Active members of the realm: active membership, and an active user where the user
    model has an is_active field (custom user models need not)."""
    members = RealmMember.objects.filter(realm_id=realm.pk, is_active=True)
    if user_model_has_field("is_active"):
        members = members.filter(user__is_active=True)
    return members


def get_presence_dict_by_realm(
    realm: Realm,
    viewer: RealmMember,
    *,
    slim_presence: bool,
    last_update_id: int | None = None,
    history_limit_days: int | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], int]:
    """The realm's presence as ``viewer`` may see it, and the presence_last_update_id to return.

    Modern entries are keyed by str(user_id), legacy ones by email. With a positive
    ``last_update_id`` only rows written after it are returned, with no time window; otherwise
    only rows connected within ``history_limit_days`` (default 14; 0 means nothing)."""
    read = read_realm_presence(
        realm,
        viewer,
        slim_presence=slim_presence,
        last_update_id=last_update_id,
        history_limit_days=history_limit_days,
        now=now,
    )
    return read.consume(_merged)


def _merged(chunks: Iterator[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for chunk in chunks:
        merged.update(chunk)
    return merged


def read_realm_presence(
    realm: Realm,
    viewer: RealmMember,
    *,
    slim_presence: bool,
    last_update_id: int | None = None,
    history_limit_days: int | None = None,
    now: datetime | None = None,
    newest_update_id: int | None = None,
) -> RealmPresenceRead:
    """get_presence_dict_by_realm in steps of READ_CHUNK_SIZE entries, so that a caller can
    render each step as it comes (the views do) instead of holding every entry of a large
    realm at once. Reads the PRESENCE_READ_DATABASE alias when that is set.

    ``newest_update_id`` is the newest update id known earlier in the same request (the realm's
    sequence as authentication loaded it, see loaded_update_id, or the request's own write),
    if any. When it is not above ``last_update_id`` no row can be newer than the client's
    cursor, and the answer (nothing, and the cursor back) needs no query. Otherwise an
    incremental read stops at it: rows written since then come with the next poll, as if the
    read had run at that moment. The bound also keeps the planner's row estimate (made from
    the update ids of every realm) close to the truth, so that it joins the few rows found
    through the (realm, last_update_id) index instead of hashing the realm's memberships."""
    if realm.presence_disabled:
        return RealmPresenceRead(None, slim_presence=slim_presence, baseline=NO_UPDATE_ID)
    baseline = NO_UPDATE_ID if last_update_id is None else last_update_id
    if history_limit_days == 0:
        return RealmPresenceRead(None, slim_presence=slim_presence, baseline=baseline)
    nothing_newer = (
        last_update_id is not None
        and newest_update_id is not None
        and newest_update_id <= last_update_id
    )
    if nothing_newer:
        return RealmPresenceRead(None, slim_presence=slim_presence, baseline=baseline)

    connected_since = None
    if last_update_id is None or last_update_id <= 0:
        days = presence_settings.DEFAULT_HISTORY_LIMIT_DAYS
        if history_limit_days is not None:
            # Clamped so any client value gives a representable date: a thousand years back
            # already means "everything", and a negative value (a window in the future)
            # "nothing".
            days = max(-MAX_HISTORY_LIMIT_DAYS, min(history_limit_days, MAX_HISTORY_LIMIT_DAYS))
        connected_since = (now or timezone.now()) - timedelta(days=days)
    rows = _RealmRows(
        database=presence_settings.READ_DATABASE or router.db_for_read(UserPresence),
        realm_id=realm.pk,
        after_update_id=_update_id_bound(last_update_id),
        # Incremental reads only: a full read takes the whole realm either way.
        up_to_update_id=_update_id_bound(newest_update_id) if connected_since is None else None,
        connected_since=connected_since,
        accessible_user_ids=accessible_user_ids(viewer),
    )
    return RealmPresenceRead(rows, slim_presence=slim_presence, baseline=baseline)


class EpochMicroseconds(Func):
    """A timestamp as exact integer UNIX microseconds, computed by the database: integers spare
    the Python datetime that Django's loaders build for every value, the largest cost of a large
    read. PostgreSQL and SQLite, the databases the app supports."""

    arity = 1
    output_field = BigIntegerField()

    def as_sql(self, *args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError("django-presence reads need PostgreSQL or SQLite")

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # EXTRACT is exact (numeric) since PostgreSQL 14.
        template = "(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint"
        return super().as_sql(compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC. SQLite's date functions round
        # to milliseconds (.9999995 s is the next second), so the whole seconds are taken from
        # the text without its fraction, and the fraction from the text. ('%%%%' ends as '%'.)
        sql, params = compiler.compile(self.source_expressions[0])
        assert not params, "a column or a COALESCE of columns, never a parameter"
        template = (
            f"(CAST(strftime('%%%%s', substr({sql}, 1, 19)) AS INTEGER) * 1000000"
            f" + CAST(substr({sql} || '.000000', 21, 6) AS INTEGER))"
        )
        return super().as_sql(compiler, connection, template=template, **extra)


# The update ids a read compares with: those of the column (a positive 64-bit integer).
_LARGEST_UPDATE_ID = 2**63 - 1


def _update_id_bound(update_id: int | None) -> int | None:
    """A client's cursor as a bound the column can be compared with: below 0 it bounds nothing
    (update ids are never negative), above the largest id it is the largest id."""
    if update_id is None or update_id < 0:
        return None
    return min(update_id, _LARGEST_UPDATE_ID)


@dataclass(frozen=True)
class _RealmRows:
    """Which presence rows a realm read returns: those of active, non-bot members (and active
    users, where the user model says) of the realm, written after ``after_update_id`` and up
    to ``up_to_update_id``, connected since ``connected_since``, of the users in
    ``accessible_user_ids`` (a subquery); each condition only when given. One declaration,
    compiled by Django for whichever database reads it."""

    database: str
    realm_id: int
    after_update_id: int | None
    up_to_update_id: int | None
    connected_since: datetime | None
    accessible_user_ids: QuerySet[RealmMember, int] | None

    def queryset(self, *, by_email: bool) -> QuerySet[UserPresence, tuple[Any, int, int, int]]:
        """(key, last active, last connected, update id): the key is the user id, or with
        ``by_email`` the email; the timestamps in UNIX microseconds, a missing one replaced by
        the join date (the API always sends integers)."""
        rows = UserPresence.objects.using(self.database).filter(
            realm_id=self.realm_id,
            # Redundant with realm_id (a row's realm is its member's), but it lets the planner
            # read only this realm's memberships through their index, not all of them.
            user__presence_membership__realm_id=self.realm_id,
            user__presence_membership__is_active=True,
            user__presence_membership__is_bot=False,
        )
        if user_model_has_field("is_active"):
            rows = rows.filter(user__is_active=True)
        if self.after_update_id is not None:
            rows = rows.filter(last_update_id__gt=self.after_update_id)
        if self.up_to_update_id is not None:
            rows = rows.filter(last_update_id__lte=self.up_to_update_id)
        if self.connected_since is not None:
            # A NULL last_connected_time never matches, so rows with no timestamps stay out.
            rows = rows.filter(last_connected_time__gte=self.connected_since)
        if self.accessible_user_ids is not None:
            rows = rows.filter(user_id__in=self.accessible_user_ids)
        joined = "user__presence_membership__date_joined"
        return rows.values_list(
            f"user__{_user_email_field()}" if by_email else "user_id",
            EpochMicroseconds(Coalesce("last_active_time", joined)),
            EpochMicroseconds(Coalesce("last_connected_time", joined)),
            "last_update_id",
        )

    def sql(self, *, by_email: bool) -> tuple[str, tuple[Any, ...]]:
        """queryset() as SQL for this database, to run on a plain cursor. Compiled once per
        shape (which conditions are given) and kept: building and compiling the QuerySet
        costs more than running it on a small incremental poll."""
        if self.accessible_user_ids is not None:  # its subquery's SQL depends on the viewer
            return self._compiled(self, by_email)
        shape = (
            self.database,
            by_email,
            self.after_update_id is not None,
            self.up_to_update_id is not None,
            self.connected_since is not None,
        )
        compiled = _COMPILED_READS.get(shape)
        if compiled is None:
            compiled = _COMPILED_READS[shape] = self._placeholders().compiled_template(by_email)
        sql, slots = compiled
        values = {
            _REALM: self.realm_id,
            _AFTER: self.after_update_id,
            _UP_TO: self.up_to_update_id,
            _SINCE: connections[self.database].ops.adapt_datetimefield_value(self.connected_since),
        }
        return sql, tuple(values[slot] if isinstance(slot, _Slot) else slot for slot in slots)

    def _placeholders(self) -> _RealmRows:
        """The same shape with a recognisable value in place of each variable."""
        return replace(
            self,
            realm_id=_REALM.sentinel,
            after_update_id=None if self.after_update_id is None else _AFTER.sentinel,
            up_to_update_id=None if self.up_to_update_id is None else _UP_TO.sentinel,
            connected_since=None if self.connected_since is None else _SINCE_SENTINEL,
        )

    def compiled_template(self, by_email: bool) -> tuple[str, tuple[Any, ...]]:
        """The SQL, and for each parameter either the _Slot it comes from or its constant."""
        sql, params = self._compiled(self, by_email)
        since = connections[self.database].ops.adapt_datetimefield_value(_SINCE_SENTINEL)
        slots: list[Any] = []
        for param in params:
            if isinstance(param, int) and not isinstance(param, bool):
                slot = _SLOTS_BY_SENTINEL.get(int(param))
                slots.append(slot if slot is not None else param)
            elif param in (since, _SINCE_SENTINEL):
                slots.append(_SINCE)
            else:
                slots.append(param)
        return sql, tuple(slots)

    @staticmethod
    def _compiled(rows: _RealmRows, by_email: bool) -> tuple[str, tuple[Any, ...]]:
        query = rows.queryset(by_email=by_email).query
        sql, params = query.get_compiler(using=rows.database).as_sql()
        return sql, tuple(params)


@dataclass(frozen=True)
class _Slot:
    """A variable of a realm read, and the value that stands for it while compiling."""

    name: str
    sentinel: int


# Within every column's range, so that Django compiles the same conditions as for real values.
_REALM = _Slot("realm", 7_000_000_000_000_000_001)
_AFTER = _Slot("after update id", 7_000_000_000_000_000_002)
_UP_TO = _Slot("up to update id", 7_000_000_000_000_000_003)
_SINCE = _Slot("connected since", 0)
_SINCE_SENTINEL = datetime(1903, 3, 7, 11, 13, 17, 191923, tzinfo=UTC)
_SLOTS_BY_SENTINEL = {slot.sentinel: slot for slot in (_REALM, _AFTER, _UP_TO)}
# The realm reads' SQL by shape (database, key, which conditions are given): see _RealmRows.sql.
_COMPILED_READS: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}


def loaded_update_id(realm: Realm) -> int | None:
    """The realm's sequence value if it was loaded with the realm (authentication loads it:
    ``select_related("member__realm__presence_sequence")``), else None; never a query."""
    sequence_rel = PresenceSequence._meta.get_field("realm").remote_field
    sequence = sequence_rel.get_cached_value(realm, default=None)
    return sequence.last_update_id if isinstance(sequence, PresenceSequence) else None


def loaded_lost_event_count(realm: Realm) -> int | None:
    """The realm's count of presence events that could not be published
    (actions.do_record_lost_presence_event) if its sequence row was loaded with the realm (0
    for a realm without one), else None; never a query."""
    sequence_rel = PresenceSequence._meta.get_field("realm").remote_field
    if not sequence_rel.is_cached(realm):
        return None
    sequence = sequence_rel.get_cached_value(realm)
    return sequence.events_lost if isinstance(sequence, PresenceSequence) else 0


def lost_event_count(realm: Realm) -> int:
    """The same, with one query when the sequence row was not loaded."""
    loaded = loaded_lost_event_count(realm)
    if loaded is not None:
        return loaded
    sequences = PresenceSequence.objects.filter(realm=realm)
    return sequences.values_list("events_lost", flat=True).first() or 0


# Rows read from the cursor, and entries built, per step of a realm read.
READ_CHUNK_SIZE = 2000


class RealmPresenceRead:
    """One realm read, made by read_realm_presence. ``consume`` hands its entries to a consumer
    in dicts of up to READ_CHUNK_SIZE entries, then gives presence_last_update_id, which is known
    only once every row has been read: there is no way to ask for it earlier."""

    def __init__(self, rows: _RealmRows | None, *, slim_presence: bool, baseline: int) -> None:
        self._rows = rows
        self._slim_presence = slim_presence
        # With no row, the client's baseline goes back (or NO_UPDATE_ID).
        self._last_update_id = baseline

    def consume(self, consumer: Callable[[Iterator[dict[str, Any]]], T]) -> tuple[T, int]:
        """``consumer(chunks)``'s result, and the presence_last_update_id to send with it. Rows
        the consumer left unread are read all the same, so that the id is right."""
        chunks = self._chunks()
        result = consumer(chunks)
        for _chunk in chunks:
            pass
        return result, self._last_update_id

    def _chunks(self) -> Iterator[dict[str, Any]]:
        if self._rows is None:
            return
        slim = self._slim_presence
        offset = presence_settings.LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS
        newest = NO_UPDATE_ID  # update ids are never negative
        chunk: dict[str, Any] = {}
        for key, active_us, connected_us, update_id in self._microsecond_rows(self._rows):
            # Exactly the floats datetime.timestamp() gives: one correctly rounded division.
            active_at, connected_at = active_us / 1_000_000, connected_us / 1_000_000
            if slim:
                chunk[str(key)] = modern_entry_at(active_at, connected_at)
            else:
                chunk[key] = legacy_entry(*legacy_status_at(active_at, connected_at, offset))
            if update_id > newest:
                newest = update_id
            if len(chunk) == READ_CHUNK_SIZE:
                yield chunk
                chunk = {}
        if chunk:
            yield chunk
        if newest > NO_UPDATE_ID:
            self._last_update_id = newest

    def _microsecond_rows(self, rows: _RealmRows) -> Iterator[tuple[Any, int, int, int]]:
        sql, params = rows.sql(by_email=not self._slim_presence)
        with connections[rows.database].cursor() as cursor:
            cursor.execute(sql, params)
            # An ordinary cursor, read in steps: evaluating a QuerySet would list every row
            # first, and QuerySet.iterator() would use a server-side cursor (more round trips,
            # and a plan made for the first rows).
            while batch := cursor.fetchmany(READ_CHUNK_SIZE):
                yield from batch


def get_member_by_id_or_email(realm: Realm, user_id_or_email: str) -> RealmMember | None:
    """An active member of ``realm`` named by user id or, failing that, by API email
    (case-insensitive, surrounding white space ignored). Other realms' users are not found."""
    members = active_members(realm).select_related("user", "realm")
    try:
        user_id = int(user_id_or_email)
    except ValueError:
        email = user_id_or_email.strip()
        if "\x00" in email or len(email) > _max_email_length():
            # No email contains NUL, and PostgreSQL refuses it in a query; nor is one longer
            # than its column, and SQLite refuses LIKE patterns (iexact) over 50,000 bytes.
            return None
        lookup = {f"user__{_user_email_field()}__iexact": email}
        return members.filter(**lookup).order_by("pk").first()
    # Through the user's pk, whose integer lookups know the column's range: an id too large
    # for it finds nobody instead of overflowing the database driver.
    return members.filter(user__pk=user_id).first()


def get_presence_for_user(realm: Realm, member: RealmMember) -> tuple[datetime, datetime] | None:
    """The member's (last_active, last_connected), NULLs replaced by the join date, with no time
    window and whatever their invisible-mode setting; None when they have no row, or when the
    realm has presence disabled (it then reveals nothing, as the realm-wide reads)."""
    if realm.presence_disabled:
        return None
    row = (
        UserPresence.objects.filter(realm_id=realm.pk, user_id=member.user_id)
        .values_list("last_active_time", "last_connected_time")
        .first()
    )
    if row is None:
        return None
    last_active, last_connected = row
    return last_active or member.date_joined, last_connected or member.date_joined


def count_event_recipients(realm: Realm, subject: RealmMember, *, stop_after: int) -> int:
    """How many members would receive a presence event about ``subject``: the active members of
    the realm (bots included) who may see the subject, counted no further than
    ``stop_after``."""
    return count_members_who_can_access(subject, active_members(realm), stop_after=stop_after)


def has_more_event_recipients_than(realm: Realm, subject: RealmMember, limit: int) -> bool:
    """Whether a presence event about ``subject`` would reach more than ``limit`` members:
    ``count_event_recipients(...) > limit``, in one query unless the realm is larger than
    ``limit`` and access limiting is on."""
    return more_members_can_access_than(subject, active_members(realm), limit)


# The relation from a realm to its members' presence rows: at most one row per member.
_MEMBER_PRESENCE = "members__user__presence"


def with_presence_counts(realms: QuerySet[Realm], now: datetime) -> QuerySet[Realm]:
    """Annotate each realm with ``member_count``, ``active_count``, ``idle_count``,
    ``offline_count`` and ``never_reported_count`` (members with no presence row), counted
    over all its memberships (deactivated members and bots included) in the realms' own query.

    Every count follows the one join chain realm -> member -> user -> presence row, which has
    at most one row per member, so the counts cannot multiply each other."""
    status_counts = {
        f"{status}_count": Count(
            "members", filter=presence_status_q(status, now, path=_MEMBER_PRESENCE)
        )
        for status in STATUSES
    }
    return realms.annotate(
        member_count=Count("members"),
        never_reported_count=Count("members", filter=Q(**{f"{_MEMBER_PRESENCE}__isnull": True})),
        **status_counts,
    )


@dataclass(frozen=True)
class RealmPresenceStats:
    string_id: str
    members: int
    active: int
    idle: int
    offline: int
    never_reported: int
    # Presence rows of the realm; members minus never_reported unless rows were left behind.
    rows: int
    last_update_id: int


def get_realm_presence_stats(
    realm: Realm | None = None, *, now: datetime | None = None
) -> list[RealmPresenceStats]:
    """Member and presence-row counts of ``realm``, or of every realm ordered by string id,
    with the status rule of :func:`presence_status`. One query, however many realms and
    members. ``last_update_id`` is 0 for a realm that has no sequence row yet."""
    realms = Realm.objects.all() if realm is None else Realm.objects.filter(pk=realm.pk)
    row_count = (
        UserPresence.objects.filter(realm_id=OuterRef("pk"))
        .order_by()
        .values("realm_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    annotated = with_presence_counts(realms, now or timezone.now()).annotate(
        row_count=Coalesce(Subquery(row_count), 0),
        sequence_value=Coalesce(F("presence_sequence__last_update_id"), 0),
    )
    return [
        RealmPresenceStats(
            string_id=values["string_id"],
            members=values["member_count"],
            active=values["active_count"],
            idle=values["idle_count"],
            offline=values["offline_count"],
            never_reported=values["never_reported_count"],
            rows=values["row_count"],
            last_update_id=values["sequence_value"],
        )
        for values in annotated.order_by("string_id").values(
            "string_id",
            "member_count",
            "active_count",
            "idle_count",
            "offline_count",
            "never_reported_count",
            "row_count",
            "sequence_value",
        )
    ]


def stale_presence_rows(realm: Realm | None, older_than: datetime) -> QuerySet[UserPresence]:
    """Presence rows of ``realm`` (of every realm for None) with neither timestamp at or after
    ``older_than``. A NULL timestamp counts as never, so rows with none are included."""
    rows = (
        UserPresence.objects.all()
        if realm is None
        else UserPresence.objects.filter(realm_id=realm.pk)
    )
    return rows.filter(
        Q(last_connected_time__isnull=True) | Q(last_connected_time__lt=older_than),
        Q(last_active_time__isnull=True) | Q(last_active_time__lt=older_than),
    )


# The team directory (an extension outside Zulip's API) -------------------------------------


def directory_members(
    realm: Realm, viewer: RealmMember, *, user_ids: list[int] | None = None
) -> QuerySet[RealmMember]:
    """The realm's active, non-bot members that ``viewer`` may see (access limiting as in the
    realm read), only those of ``user_ids`` when given, each with its user and presence row
    joined in, ordered by the name the listing shows (where the user model has name fields),
    then email, so that pages are stable."""
    members = (
        active_members(realm)
        .filter(is_bot=False)
        .select_related("user__presence", "user__presence_user_status")
    )
    allowed = accessible_user_ids(viewer)
    if allowed is not None:
        members = members.filter(user_id__in=allowed)
    if user_ids is not None:
        members = members.filter(user_id__in=user_ids)
    email = Lower(f"user__{_user_email_field()}")
    if not (user_model_has_field("first_name") and user_model_has_field("last_name")):
        return members.order_by(email, "user_id")
    # The name the listing shows: "first last", or the email when both are blank.
    shown_name = Coalesce(NullIf(Trim(_full_name_expression()), Value("")), email)
    return members.order_by(Lower(shown_name), email, "user_id")


def page_of(members: QuerySet[RealmMember], page: int, page_size: int) -> Page:
    """Page ``page`` (from 1) of ``members``, and how many there are in all: two queries, and
    one only past the last page, however large the page number (SQL refuses an OFFSET beyond
    64 bits)."""
    count = members.count()
    start = (page - 1) * page_size
    return Page(count, list(members[start : start + page_size]) if start < count else [])


@dataclass(frozen=True)
class Page:
    count: int
    members: list[RealmMember]


def _full_name_expression() -> Concat:
    return Concat("user__first_name", Value(" "), "user__last_name")


def search_members(
    members: QuerySet[RealmMember], text: str, *, now: datetime
) -> QuerySet[RealmMember]:
    """The members whose email, "first last" name (where the user model has name fields) or
    status text at ``now`` contains ``text``, ignoring case."""
    match = Q(**{f"user__{_user_email_field()}__icontains": text}) | (
        Q(user__presence_user_status__status_text__icontains=text)
        & _status_not_ended(now, path="user__presence_user_status__")
    )
    if user_model_has_field("first_name") and user_model_has_field("last_name"):
        members = members.alias(directory_full_name=_full_name_expression())
        match |= Q(directory_full_name__icontains=text)
    return members.filter(match)


# User statuses -----------------------------------------------------------------------------


def _status_not_ended(now: datetime, *, path: str = "") -> Q:
    """Statuses whose end time (if any) has not come at ``now``."""
    return Q(**{f"{path}scheduled_end_time__isnull": True}) | Q(
        **{f"{path}scheduled_end_time__gt": now}
    )


def get_member_by_id(realm: Realm, user_id: int) -> RealmMember | None:
    """The member of ``realm`` with this user id, active or not (callers tell the two apart,
    as Zulip's access_user_by_id does); None for other realms' users and unknown ids."""
    members = RealmMember.objects.filter(realm_id=realm.pk).select_related("user", "realm")
    # Through the user's pk, as get_member_by_id_or_email: an id out of the column's range
    # finds nobody.
    return members.filter(user__pk=user_id).first()


def member_is_deactivated(member: RealmMember) -> bool:
    """A deactivated membership, or a user the user model says is inactive."""
    return not member.is_active or not getattr(member.user, "is_active", True)


def _stored_status(
    status_text: str,
    emoji_name: str,
    emoji_code: str,
    reaction_type: str,
    scheduled_end_time: datetime | None,
) -> StoredStatus:
    return StoredStatus(
        status_text, Emoji(emoji_name, emoji_code, reaction_type), scheduled_end_time
    )


_STATUS_COLUMNS = (
    "status_text",
    "emoji_name",
    "emoji_code",
    "reaction_type",
    "scheduled_end_time",
)


def stored_status_of(row: UserStatus) -> StoredStatus:
    return _stored_status(*(getattr(row, column) for column in _STATUS_COLUMNS))


def get_user_status(realm: Realm, member: RealmMember) -> StoredStatus | None:
    """The member's stored status (ended or not: see StoredStatus.current), None when they
    have never set one."""
    row = (
        UserStatus.objects.filter(realm_id=realm.pk, user_id=member.user_id)
        .values_list(*_STATUS_COLUMNS)
        .first()
    )
    return None if row is None else _stored_status(*row)


def get_user_status_dict(
    realm: Realm, viewer: RealmMember, *, now: datetime
) -> dict[str, UserStatusDict]:
    """register's ``user_status``: the status of every active member of ``realm`` that
    ``viewer`` may see and that has something to show (a current text or emoji, or invisible
    mode), keyed by str(user_id); the end time in the viewer's own entry only. One query."""
    rows = UserStatus.objects.filter(
        realm_id=realm.pk,
        user__presence_membership__realm_id=realm.pk,
        user__presence_membership__is_active=True,
    )
    if user_model_has_field("is_active"):
        rows = rows.filter(user__is_active=True)
    allowed = accessible_user_ids(viewer)
    if allowed is not None:
        rows = rows.filter(user_id__in=allowed)
    # Most rows of a realm are cleared statuses of visible members: left out in the database.
    has_something = ~Q(status_text="") | ~Q(emoji_name="") | ~Q(reaction_type=UNICODE_EMOJI)
    rows = rows.filter(
        Q(user__presence_membership__presence_enabled=False)
        | (has_something & _status_not_ended(now))
    )
    statuses: dict[str, UserStatusDict] = {}
    for user_id, presence_enabled, *columns in rows.order_by("user_id").values_list(
        "user_id", "user__presence_membership__presence_enabled", *_STATUS_COLUMNS
    ):
        status = _stored_status(*columns)
        if shows_in_register(status, presence_enabled=presence_enabled, now=now):
            statuses[str(user_id)] = format_user_status(
                status,
                presence_enabled=presence_enabled,
                now=now,
                for_owner=user_id == viewer.user_id,
            )
    return statuses


def get_active_realm_emoji(realm: Realm, name: str) -> RealmEmoji | None:
    """The realm's active custom emoji of that name."""
    if "\x00" in name:
        return None  # no name holds NUL, and PostgreSQL refuses it in a query
    return RealmEmoji.objects.filter(realm_id=realm.pk, name=name, deactivated=False).first()


def get_realm_emoji_by_code(realm: Realm, code: str) -> RealmEmoji | None:
    """The realm's custom emoji (deactivated or not) whose code (its id) is ``code``."""
    if not (code.isascii() and code.isdigit()) or len(code) > 18:
        return None  # no id is written otherwise, nor so large
    return RealmEmoji.objects.filter(realm_id=realm.pk, pk=int(code)).first()
