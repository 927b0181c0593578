"""The docs stay true: every setting, signal argument, endpoint and command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.dispatch import Signal
from django.urls import get_resolver
from django.utils import timezone

from django_presence import actions, checks, signals
from django_presence.conf import DEFAULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"
COMMANDS = Path(__file__).resolve().parent.parent / "django_presence" / "management" / "commands"


def doc(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize("setting", sorted(DEFAULTS))
def test_every_setting_is_documented_with_its_default(setting):
    rows = [line for line in doc("configuration.md").splitlines() if f"| `{setting}` |" in line]
    assert len(rows) == 1, f"{setting} needs exactly one row in docs/configuration.md"
    default = DEFAULTS[setting]
    shown = f'"{default}"' if isinstance(default, str) else repr(default)
    assert f"| `{shown}` |" in rows[0]


def test_every_check_id_is_documented():
    ids = {
        *checks.POSITIVE_INT_SETTINGS.values(),
        *(value for name, value in vars(checks).items() if name.startswith("E_")),
    }
    text = doc("configuration.md")
    missing = [check_id for check_id in sorted(ids) if check_id.split(".")[1] not in text]
    assert not missing, f"docs/configuration.md does not mention {missing}"


def test_configuration_lists_no_unknown_setting():
    documented = set(re.findall(r"^\| `(PRESENCE_[A-Z_]+)` \|", doc("configuration.md"), re.M))
    assert documented == set(DEFAULTS)


def _signal_section(name: str) -> str:
    text = doc("signals.md")
    start = text.index(f"## `django_presence.signals.{name}`")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


@pytest.mark.django_db
def test_every_signal_argument_is_documented(make_member, django_capture_on_commit_callbacks):
    sent: dict[str, set[str]] = {}

    def capture(name):
        def receiver(sender, **kwargs):
            sent[name] = {"sender", *kwargs} - {"signal"}

        return receiver

    declared = [name for name, value in vars(signals).items() if isinstance(value, Signal)]
    receivers = {name: capture(name) for name in declared}
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    try:
        member = make_member()
        with django_capture_on_commit_callbacks(execute=True):
            actions.do_update_user_presence(member, log_time=timezone.now(), status="active")
            actions.do_set_presence_enabled(member, False)
            actions.check_update_user_status(member, acting_user=None, status_text="docs")
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)

    assert set(sent) == set(receivers)
    for name, arguments in sent.items():
        section = _signal_section(name)
        documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
        assert documented == arguments, name


def test_every_endpoint_is_documented():
    api = doc("api.md")
    resolver = get_resolver("django_presence.urls")
    routes = [str(p.pattern) for p in resolver.url_patterns if not str(p.pattern).startswith("^")]
    assert routes
    for route in routes:
        # The docs write <user_id_or_email>, without Django's path converter.
        documented_as = re.sub(r"<\w+:(\w+)>", r"<\1>", route)
        assert f"`{documented_as}`" in api or f" {documented_as}`" in api, route


def test_every_command_is_documented():
    commands = doc("commands.md")
    names = sorted(p.stem for p in COMMANDS.glob("*.py") if not p.stem.startswith("_"))
    assert names
    for name in names:
        assert f"`{name}" in commands, name


def test_index_links_resolve():
    links = re.findall(r"\]\(([\w-]+\.md)", doc("index.md"))
    assert links
    for link in links:
        assert (DOCS / link).is_file(), link
