"""The example project's URLs plus the bench-only no-op endpoint (never in the app's urls)."""

from __future__ import annotations

from django.urls import path

from example_project.urls import urlpatterns as example_urlpatterns

from .views import NoopView

NOOP_PATH = "bench/noop"

urlpatterns = [path(NOOP_PATH, NoopView.as_view(), name="bench-noop"), *example_urlpatterns]
