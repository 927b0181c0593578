"""Fixtures for the custom user model tests. They need tests.settings_custom_user: under other
settings every test module here is reported as skipped, without being imported (their models
belong to no installed app)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from django_presence.models import RealmMember

SKIP_REASON = (
    "needs the custom user model: pytest --ds=tests.settings_custom_user tests/custom_user"
)


def custom_user_model_installed() -> bool:
    return bool(settings.AUTH_USER_MODEL == "custom_user.EmailUser")


class SkippedModule(pytest.Module):
    def collect(self) -> list[Any]:
        pytest.skip(SKIP_REASON)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    if not custom_user_model_installed():
        return SkippedModule.from_parent(parent, path=module_path)
    return None


@pytest.fixture
def make_email_member(db, realm) -> Callable[..., RealmMember]:
    # Imported here: the factories import the custom model, which is only installed under
    # tests.settings_custom_user.
    from .factories import EmailMemberFactory

    def make(**kwargs: Any) -> RealmMember:
        kwargs.setdefault("realm", realm)
        return EmailMemberFactory(**kwargs)

    return make
