"""Host policy: which users a viewer may access when access limiting is on.

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

    def can_access_all_users(self, viewer: RealmMember) -> bool:
        return not viewer.is_guest

    def accessible_user_ids(self, viewer: RealmMember) -> QuerySet[RealmMember, int]:
        """A lazy query of the user ids ``viewer`` may access (used as a subquery, so reads
        keep a constant query count). Only consulted when can_access_all_users is False."""
        members = RealmMember.objects.filter(realm_id=viewer.realm_id)
        visible = Q(user_id=viewer.user_id)
        if user_model_has_field("groups"):
            visible |= Q(user__groups__user=viewer.user_id)
        return members.filter(visible).values_list("user_id", flat=True).distinct()

    def can_access(self, viewer: RealmMember, target: RealmMember) -> bool:
        if viewer.realm_id != target.realm_id:
            return False
        if self.can_access_all_users(viewer) or viewer.user_id == target.user_id:
            return True
        return self.accessible_user_ids(viewer).filter(user_id=target.user_id).exists()

    def members_who_can_access(self, target: RealmMember) -> QuerySet[RealmMember]:
        """Active members of the target's realm allowed to see the target: everyone but the
        guests who share no group with them."""
        members = RealmMember.objects.filter(realm_id=target.realm_id, is_active=True)
        allowed = ~Q(role=RealmMember.Role.GUEST) | Q(user_id=target.user_id)
        if user_model_has_field("groups"):
            allowed |= Q(user__groups__user=target.user_id)
        return members.filter(allowed).distinct()


def get_access_adapter() -> DefaultAccessAdapter:
    adapter_class = import_string(presence_settings.ACCESS_ADAPTER)
    adapter: DefaultAccessAdapter = adapter_class()
    return adapter
