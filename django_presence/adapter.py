"""Host policy: which users a viewer may access when access limiting is on (access.py applies
it).

Zulip limits guests to the users they share a channel or a direct message with. A Django site
has neither, so the default adapter uses ``django.contrib.auth`` groups. A host replaces it by
naming a subclass in ``PRESENCE_ACCESS_ADAPTER``. Adapters hold no state and never write.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils.module_loading import import_string

from .conf import presence_settings
from .models import RealmMember, user_model_has_field


class DefaultAccessAdapter:
    """Members (and higher roles) access everyone in their realm; a guest accesses themself and
    the members of their realm who share at least one auth Group with them."""

    def accessible_user_ids(self, viewer: RealmMember) -> QuerySet[RealmMember, int] | None:
        """The host's whole policy: None when ``viewer`` may access everyone in their realm,
        else a lazy query of the user ids they may access (used as a subquery, so reads keep a
        constant query count). access.py derives every other question from it."""
        if not viewer.is_guest:
            return None
        members = RealmMember.objects.filter(realm_id=viewer.realm_id)
        visible = Q(user_id=viewer.user_id)
        if user_model_has_field("groups"):
            visible |= Q(user__groups__user=viewer.user_id)
        return members.filter(visible).values_list("user_id", flat=True).distinct()


def get_access_adapter() -> DefaultAccessAdapter:
    adapter_class = import_string(presence_settings.ACCESS_ADAPTER)
    adapter: DefaultAccessAdapter = adapter_class()
    return adapter
