from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import django_presence.schema  # noqa: F401 - registers the API's OpenAPI description
from demo.views import directory, index

urlpatterns = [
    path("", index, name="index"),
    path("directory/", directory, name="directory"),
    path("admin/", admin.site.urls),
    # Session login, so the presence API can be tried from a browser as well as with API keys.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("django_presence.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/schema/swagger-ui/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="swagger-ui",
    ),
]
# runserver serves static files itself when DEBUG is on; this does it under an ASGI server
# (uvicorn) too, and adds nothing when DEBUG is off.
urlpatterns += staticfiles_urlpatterns()
