from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from demo.views import index

urlpatterns = [
    path("", index, name="index"),
    path("admin/", admin.site.urls),
    # Session login, so the presence API can be tried from a browser as well as with API keys.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("django_presence.urls")),
]
