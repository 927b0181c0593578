from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PresenceConfig(AppConfig):
    name = "django_presence"
    verbose_name = _("Presence")
    # Explicit, so the host's DEFAULT_AUTO_FIELD never produces migrations for this app.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import actions, checks, recent_keys, timers
        from .events import receivers

        checks.register()
        # Keys remembered for the event endpoints are forgotten when their rows change.
        recent_keys.connect()
        # Presence events for the event queues (docs/events.md).
        receivers.connect()
        # Status transitions by time alone (docs/signals.md), swept in each server process.
        timers.register(
            timers.FunctionWork(
                "presence status transitions", actions.do_announce_due_status_transitions
            )
        )
        # Statuses that end at their scheduled end time (docs/status.md), by the same sweeper.
        timers.register(timers.FunctionWork("user status ends", actions.do_clear_due_user_statuses))
        timers.connect()
