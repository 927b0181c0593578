"""Who may see whose presence: the one access rule. Realm reads, the single-user endpoint, the
directory, event delivery and the event recipients count all ask it.

With PRESENCE_LIMIT_TO_ACCESSIBLE_USERS off, every member sees everyone in their realm. With it
on, the host's policy decides: the adapter named by PRESENCE_ACCESS_ADAPTER states it once, as
``accessible_user_ids(viewer)`` (adapter.py), and everything here is derived from that.
"""

from __future__ import annotations

from django.db.models import QuerySet

from .adapter import get_access_adapter
from .conf import presence_settings
from .models import RealmMember


def accessible_user_ids(viewer: RealmMember) -> QuerySet[RealmMember, int] | None:
    """The user ids ``viewer`` may see, as a lazy query to use as a subquery; None when the
    viewer may see everyone in their realm (then no filter is needed at all)."""
    if not presence_settings.LIMIT_TO_ACCESSIBLE_USERS:
        return None
    return get_access_adapter().accessible_user_ids(viewer)


def can_access(viewer: RealmMember, target: RealmMember) -> bool:
    """Whether ``viewer`` may see ``target``: never across realms, always themself."""
    if viewer.realm_id != target.realm_id:
        return False
    if viewer.user_id == target.user_id:
        return True
    allowed = accessible_user_ids(viewer)
    return allowed is None or allowed.filter(user_id=target.user_id).exists()


def visible_subjects(viewer: RealmMember, user_ids: set[int]) -> set[int]:
    """Which of ``user_ids`` (of the viewer's realm) ``viewer`` may see; one query at most."""
    allowed = accessible_user_ids(viewer)
    if allowed is None:
        return user_ids
    return set(allowed.filter(realm_id=viewer.realm_id, user_id__in=user_ids))


def count_members_who_can_access(
    subject: RealmMember, members: QuerySet[RealmMember], *, stop_after: int
) -> int:
    """How many of ``members`` may see ``subject``, counting no further than ``stop_after``.
    Derived from the viewers' side of the rule: with access limiting on, one query per viewer
    whose sight is limited and none for the others, and none once the count is reached."""
    if not presence_settings.LIMIT_TO_ACCESSIBLE_USERS:
        return members[:stop_after].count()
    count, start = 0, 0
    # In slices of stop_after members: one query when most members may see everyone (the usual
    # case), and no server-side cursor.
    ordered = members.order_by("pk")
    while count < stop_after:
        viewers = list(ordered[start : start + stop_after])
        if not viewers:
            break
        count += sum(1 for viewer in viewers if can_access(viewer, subject))
        start += stop_after
    return min(count, stop_after)


def more_members_can_access_than(
    subject: RealmMember, members: QuerySet[RealmMember], limit: int
) -> bool:
    """Whether more than ``limit`` of ``members`` may see ``subject``. No more of them can than
    there are: one capped count decides it whenever there are at most ``limit`` members (or
    everyone sees everyone), before any viewer's access is looked at, which costs a model
    instance per viewer (a presence write would otherwise load a whole large realm's members)."""
    present = members[: limit + 1].count()
    if present <= limit or not presence_settings.LIMIT_TO_ACCESSIBLE_USERS:
        return present > limit
    return count_members_who_can_access(subject, members, stop_after=limit + 1) > limit
