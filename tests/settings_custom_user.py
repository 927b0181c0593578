"""tests.settings with AUTH_USER_MODEL swapped for tests.custom_user's EmailUser, a user model
with email as its username, no groups and no is_active field. Used by
``pytest --ds=tests.settings_custom_user tests/custom_user``."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.custom_user"]
AUTH_USER_MODEL = "custom_user.EmailUser"
