"""django_presence.conf: each setting read once, read afresh when Django says a setting changed."""

from __future__ import annotations

from django.conf import settings
from django.core.signals import setting_changed
from django.test import override_settings

from django_presence.conf import DEFAULTS, presence_settings


def test_a_setting_unset_by_the_host_has_its_default():
    assert DEFAULTS["PRESENCE_EVENT_LONG_POLL_SECS"] == presence_settings.EVENT_LONG_POLL_SECS


def test_override_settings_is_seen_and_undone():
    before = presence_settings.SERVER_NAME
    with override_settings(PRESENCE_SERVER_NAME="Overridden"):
        assert presence_settings.SERVER_NAME == "Overridden"
    assert before == presence_settings.SERVER_NAME


def test_values_are_kept_until_a_setting_changes():
    with override_settings(PRESENCE_SERVER_NAME="Kept"):
        assert presence_settings.SERVER_NAME == "Kept"
        # Assigned without override_settings: no signal, so the kept value stands ...
        settings.PRESENCE_SERVER_NAME = "Assigned"
        assert presence_settings.SERVER_NAME == "Kept"
        # ... until Django says a setting changed.
        setting_changed.send(
            sender=type(settings), setting="PRESENCE_SERVER_NAME", value="Assigned", enter=True
        )
        assert presence_settings.SERVER_NAME == "Assigned"
