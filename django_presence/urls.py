"""Mount with ``path("api/v1/", include("django_presence.urls"))``. The include point belongs to
the app: any path under it that matches no endpoint gets Zulip's JSON 404."""

from __future__ import annotations

from django.urls import path, re_path

from . import views
from .directory import DirectoryMembersView
from .events import views as event_views
from .exceptions import api_not_found

app_name = "django_presence"

urlpatterns = [
    # Before the single-user route, so "me" is never taken for a user id or email.
    path("users/me/presence", views.UpdatePresenceView.as_view(), name="update-presence"),
    path(
        "users/<str:user_id_or_email>/presence",
        views.UserPresenceView.as_view(),
        name="get-user-presence",
    ),
    path("users/me/status", views.UpdateOwnStatusView.as_view(), name="update-status"),
    path("users/<int:user_id>/status", views.UserStatusView.as_view(), name="user-status"),
    path("realm/presence", views.RealmPresenceView.as_view(), name="get-presence"),
    path("settings", views.SettingsView.as_view(), name="update-settings"),
    path("server_settings", views.ServerSettingsView.as_view(), name="get-server-settings"),
    path("register", event_views.RegisterQueueView.as_view(), name="register-queue"),
    path("events", event_views.events_view, name="events"),
    # An extension outside Zulip's API (docs/directory.md).
    path("directory/members", DirectoryMembersView.as_view(), name="directory-members"),
    # (?s): line breaks too (users/%0A/status matches no route and is still JSON).
    re_path(r"^(?P<unmatched_path>(?s:.*))$", api_not_found, name="not-found"),
]
