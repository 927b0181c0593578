"""django_presence.status: every status rule, and presence-dot.js's copy of the status at a
moment, run on one table of cases (the badge's title included)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from django_presence import status
from django_presence.models import Realm, UserPresence
from django_presence.templatetags.presence import dot_status, status_words
from django_presence.user_status import Emoji, StoredStatus

from .test_presence_dot_js import SCRIPT

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
THRESHOLD = 140  # PRESENCE_OFFLINE_THRESHOLD_SECS in this module's tests


@pytest.fixture(autouse=True)
def threshold(settings):
    settings.PRESENCE_OFFLINE_THRESHOLD_SECS = THRESHOLD


# (seconds since the last active report, since the last connection; None: never) ->
# (status, the badge's title)
CASES: list[tuple[int | None, int | None, str, str]] = [
    (0, 0, "active", "active now"),
    (THRESHOLD - 1, 0, "active", "active now"),
    (THRESHOLD, 0, "idle", "idle"),  # exactly a threshold old: no longer recent
    (None, 5, "idle", "idle"),
    (THRESHOLD + 5, THRESHOLD - 1, "idle", "idle"),
    (THRESHOLD, THRESHOLD, "offline", "last seen 2 minutes ago"),
    (None, 30, "idle", "idle"),
    (5 * 60, 3 * 60, "offline", "last seen 3 minutes ago"),
    (3 * 60, 5 * 60, "offline", "last seen 3 minutes ago"),  # the later of the two
    (59 * 60 + 59, 59 * 60 + 59, "offline", "last seen 59 minutes ago"),
    (60 * 60, 60 * 60, "offline", "last seen 1 hour ago"),
    (None, 2 * 3600, "offline", "last seen 2 hours ago"),
    (3 * 3600 - 1, 5 * 3600, "offline", "last seen 2 hours ago"),
    (23 * 3600 + 59 * 60 + 59, None, "offline", "last seen 23 hours ago"),
    (24 * 3600, None, "offline", "last seen 1 day ago"),
    (3 * 86400, None, "offline", "last seen 3 days ago"),
    (None, 400 * 86400 + 5, "offline", "last seen 400 days ago"),
    (None, None, "offline", "offline"),
    (-30, -30, "active", "active now"),  # a clock ahead of the server's
]


def _moment(seconds_ago: int | None) -> datetime | None:
    return None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)


@pytest.mark.parametrize(("active_ago", "connected_ago", "expected", "title"), CASES)
def test_the_status_at_a_moment(active_ago, connected_ago, expected, title):
    last_active, last_connected = _moment(active_ago), _moment(connected_ago)
    assert status.presence_status(last_active, last_connected, NOW) == expected
    row = UserPresence(
        realm=Realm(presence_disabled=False),
        last_active_time=last_active,
        last_connected_time=last_connected,
    )
    assert dot_status(row, NOW) == (expected, title)


@pytest.mark.django_db
@pytest.mark.parametrize(("active_ago", "connected_ago", "expected", "_title"), CASES)
def test_the_filter_selects_what_the_rule_says(hamlet, active_ago, connected_ago, expected, _title):
    UserPresence.objects.create(
        user=hamlet.user,
        realm=hamlet.realm,
        last_active_time=_moment(active_ago),
        last_connected_time=_moment(connected_ago),
    )
    selected = [
        name
        for name in status.STATUSES
        if UserPresence.objects.filter(status.presence_status_q(name, NOW)).exists()
    ]
    assert selected == [expected]


NODE = shutil.which("node")

# Runs PresenceDot.statusOf and dotFor on each case, in UNIX seconds as the listing sends them.
JS_RUNNER = r"""
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(process.argv[1]);
const context = {document: {currentScript: null, readyState: "loading",
                            addEventListener: () => {}},
                 Date, Math, Object, Array, Set, Number, JSON, String, Promise};
context.window = context;
vm.runInNewContext(fs.readFileSync(input.script, "utf8"), context);
const dot = context.window.PresenceDot;
console.log(JSON.stringify(input.members.map((member) => [
  dot.statusOf(member, input.now, input.threshold), dot.dotFor(member, input.now, input.threshold),
])));
"""


@pytest.mark.skipif(NODE is None, reason="needs Node.js")
def test_presence_dot_js_gives_the_same_answers():
    now = NOW.timestamp()

    def timestamp(seconds_ago: int | None) -> int | None:
        return None if seconds_ago is None else int(now - seconds_ago)

    members: list[dict[str, Any]] = [
        {"active_timestamp": timestamp(active), "idle_timestamp": timestamp(connected)}
        for active, connected, _expected, _title in CASES
    ]
    assert NODE is not None
    done = subprocess.run(
        [
            NODE,
            "-e",
            JS_RUNNER,
            json.dumps(
                {"script": str(SCRIPT), "members": members, "now": now, "threshold": THRESHOLD}
            ),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answers = json.loads(done.stdout)
    expected = [
        # The script calls a user with no report "never"; its dot is offline, as the tag's.
        (
            "never" if active is None and connected is None else status_,
            {"status": status_, "title": title},
        )
        for active, connected, status_, title in CASES
    ]
    assert [tuple(answer) for answer in answers] == expected


def test_legacy_status_is_active_within_the_offset_of_the_last_connection():
    connected = NOW.timestamp()
    assert status.legacy_status_at(connected - 70, connected, 70) == ("active", int(connected - 70))
    assert status.legacy_status_at(connected - 71, connected, 70) == ("idle", int(connected))
    assert status.legacy_status(NOW, NOW, 70) == ("active", int(connected))


def test_the_aggregated_status_turns_offline_past_the_threshold():
    timestamp = int(NOW.timestamp())
    assert status.aggregated_status("idle", timestamp - THRESHOLD, NOW) == "idle"
    assert status.aggregated_status("idle", timestamp - THRESHOLD - 1, NOW) == "offline"
    assert status.aggregated_status("active", timestamp, NOW) == "active"


def test_an_unknown_status_has_no_filter():
    with pytest.raises(ValueError, match="unknown presence status 'away'"):
        status.presence_status_q("away", NOW)


# A user status in words: the template tag's status_words and presence-dot.js's statusWords on
# one table (the end time is left out: each formats it for its own reader).
STATUS_WORDS_CASES: list[tuple[dict[str, Any], str]] = [
    ({}, ""),
    ({"away": True}, ""),
    ({"status_text": "on vacation"}, "on vacation"),
    (
        {"emoji_name": "car", "emoji_code": "1f697", "reaction_type": "unicode_emoji"},
        "\N{AUTOMOBILE}",
    ),
    (
        {
            "status_text": "busy",
            "emoji_name": "flag_andorra",
            "emoji_code": "1f1e6-1f1e9",
            "reaction_type": "unicode_emoji",
        },
        "\N{REGIONAL INDICATOR SYMBOL LETTER A}\N{REGIONAL INDICATOR SYMBOL LETTER D} busy",
    ),
    (
        {
            "status_text": "x",
            "emoji_name": "green_tick",
            "emoji_code": "7",
            "reaction_type": "realm_emoji",
        },
        ":green_tick: x",
    ),
    (
        {"emoji_name": "zulip", "emoji_code": "zulip", "reaction_type": "zulip_extra_emoji"},
        ":zulip:",
    ),
]


def _stored(user_status: dict[str, Any]) -> StoredStatus:
    return StoredStatus(
        user_status.get("status_text", ""),
        Emoji(
            user_status.get("emoji_name", ""),
            user_status.get("emoji_code", ""),
            user_status.get("reaction_type", "unicode_emoji"),
        ),
        None,
    )


@pytest.mark.parametrize(("user_status", "words"), STATUS_WORDS_CASES)
def test_status_words(user_status, words):
    assert status_words(_stored(user_status), show_end_time=True) == words


STATUS_WORDS_RUNNER = r"""
const fs = require("fs");
const vm = require("vm");
const input = JSON.parse(process.argv[1]);
const context = {document: {currentScript: null, readyState: "loading",
                            addEventListener: () => {}},
                 Date, Math, Object, Array, Set, Number, JSON, String, Promise};
context.window = context;
vm.runInNewContext(fs.readFileSync(input.script, "utf8"), context);
console.log(JSON.stringify(input.statuses.map(context.window.PresenceDot.statusWords)));
"""


@pytest.mark.skipif(NODE is None, reason="needs Node.js")
def test_presence_dot_js_says_statuses_in_the_same_words():
    assert NODE is not None
    statuses = [user_status for user_status, _words in STATUS_WORDS_CASES]
    done = subprocess.run(
        [
            NODE,
            "-e",
            STATUS_WORDS_RUNNER,
            json.dumps({"script": str(SCRIPT), "statuses": statuses}),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(done.stdout) == [words for _status, words in STATUS_WORDS_CASES]
