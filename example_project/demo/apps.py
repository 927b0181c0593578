from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The example project's own app: the index page and the seed_demo command."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"
