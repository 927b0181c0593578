"""django-filter FilterSets of the app's listing endpoints (an extension outside Zulip's API):
the one declaration of each filter, from which the endpoint's validation, its known parameters
and its OpenAPI parameters come.

Every filter becomes part of the one SQL query of the listing: the presence status is compared
on the timestamps in the database (status.presence_status_q), never computed in Python."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import django_filters
from django.db.models import QuerySet

from .exceptions import ZulipError
from .models import RealmMember
from .queries import search_members
from .status import STATUSES, presence_status_q

# A member with no presence row: they never reported (or their row was deleted).
STATUS_NEVER = "never"
DIRECTORY_STATUSES = (*STATUSES, STATUS_NEVER)
# Longer than any name or email: SQLite refuses LIKE patterns over 50,000 bytes, and a search
# that long could match no one anyway.
MAX_SEARCH_LENGTH = 1000

# RealmMember -> the member's UserPresence row (at most one).
_PRESENCE_PATH = "user__presence"


def _choice_error(choices: tuple[str, ...]) -> dict[str, str]:
    return {"invalid_choice": f"%(value)s is not one of {', '.join(choices)}"}


class DirectoryFilterSet(django_filters.FilterSet):  # type: ignore[misc]  # untyped package
    """Filters a realm's members: ``status`` (active, idle, offline, never), ``search`` (part of
    the name, email or status text, any case) and ``role`` (Zulip's integer role, e.g. 400).

    ``now`` is the moment statuses are computed at; ``presence_hidden`` (the realm has presence
    disabled) makes every member "never", as the listing shows them."""

    status = django_filters.ChoiceFilter(
        choices=[(status, status) for status in DIRECTORY_STATUSES],
        method="filter_status",
        error_messages=_choice_error(DIRECTORY_STATUSES),
        help_text="Only members with this status now (never: no presence data).",
    )
    search = django_filters.CharFilter(
        method="filter_search",
        max_length=MAX_SEARCH_LENGTH,
        error_messages={"max_length": "at most %(limit_value)d characters are allowed"},
        help_text="Only members whose email, name or status text contains this text, in any case.",
    )
    role = django_filters.ChoiceFilter(
        choices=RealmMember.Role.choices,
        error_messages=_choice_error(tuple(str(value) for value in RealmMember.Role.values)),
        help_text="Only members with this Zulip role.",
    )

    class Meta:
        model = RealmMember
        fields = ("status", "search", "role")

    def __init__(self, *args: Any, now: datetime, presence_hidden: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now
        self.presence_hidden = presence_hidden

    def filter_status(
        self, queryset: QuerySet[RealmMember], name: str, value: str
    ) -> QuerySet[RealmMember]:
        if self.presence_hidden:
            return queryset if value == STATUS_NEVER else queryset.none()
        if value == STATUS_NEVER:
            return queryset.filter(**{f"{_PRESENCE_PATH}__isnull": True})
        return queryset.filter(presence_status_q(value, self.now, path=_PRESENCE_PATH))

    @classmethod
    def apply(
        cls,
        data: Mapping[str, Any],
        members: QuerySet[RealmMember],
        *,
        now: datetime,
        presence_hidden: bool,
    ) -> QuerySet[RealmMember]:
        """``members`` filtered by the filters in ``data``; Zulip's 400 for the first invalid
        one, in declaration order (``Invalid <name>: <why>``)."""
        filterset = cls(data, queryset=members, now=now, presence_hidden=presence_hidden)
        if not filterset.is_valid():
            errors = filterset.errors
            name = next(name for name in filterset.filters if name in errors)
            raise ZulipError(f"Invalid {name}: {errors[name][0]}")
        filtered: QuerySet[RealmMember] = filterset.qs
        return filtered

    def filter_search(
        self, queryset: QuerySet[RealmMember], name: str, value: str
    ) -> QuerySet[RealmMember]:
        return search_members(queryset, value, now=self.now)
