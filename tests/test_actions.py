"""The write path at the action level: when signals fire, the sequence, and its guard rails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_presence import actions
from django_presence.models import PresenceSequence, Realm, RealmMember, UserPresence
from django_presence.signals import presence_changed, presence_enabled_changed

from .factories import RealmFactory, UserFactory

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def received():
    """Every presence_changed and presence_enabled_changed send, as (signal name, kwargs)."""
    log: list[tuple[str, dict]] = []

    def on_changed(sender, **kwargs):
        assert sender is UserPresence
        log.append(("presence_changed", kwargs))

    def on_enabled(sender, **kwargs):
        log.append(("presence_enabled_changed", kwargs))

    presence_changed.connect(on_changed)
    presence_enabled_changed.connect(on_enabled)
    yield log
    presence_changed.disconnect(on_changed)
    presence_enabled_changed.disconnect(on_enabled)


def report(member, seconds, status="active", **kwargs):
    actions.do_update_user_presence(
        member, log_time=T0 + timedelta(seconds=seconds), status=status, **kwargs
    )


def row(member):
    return UserPresence.objects.get(user_id=member.user_id)


@pytest.mark.django_db
def test_signal_on_creation_with_documented_arguments(
    make_member, received, django_capture_on_commit_callbacks
):
    hamlet = make_member()
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, 0, "idle")
    assert len(received) == 1
    name, kwargs = received[0]
    assert name == "presence_changed"
    ts = int(T0.timestamp())
    # An idle first report has no active time: the join date stands in for it.
    assert kwargs == {
        "signal": presence_changed,
        "user": hamlet.user,
        "member": hamlet,
        "realm": hamlet.realm,
        "presence": {
            "active_timestamp": int(hamlet.date_joined.timestamp()),
            "idle_timestamp": ts,
        },
        "last_update_id": 1,
        "server_timestamp": T0.timestamp(),
        "forced": False,
    }


@pytest.mark.django_db
def test_signal_only_when_coming_online(make_member, received, django_capture_on_commit_callbacks):
    hamlet = make_member()
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, 0)  # created: signal
        report(hamlet, 60)  # ordinary refresh: a write, no signal
        report(hamlet, 60 + 130)  # 130 s since last active is not more than 130: no signal
        report(hamlet, 60 + 130 + 131, "idle")  # idle never comes online
        report(hamlet, 60 + 130 + 131 + 131)  # 131 s after the last active report: online
    assert [kwargs["last_update_id"] for _, kwargs in received] == [1, 5]
    assert row(hamlet).last_update_id == 5


@pytest.mark.django_db
def test_write_throttle_is_strictly_more_than_55_seconds(make_member):
    hamlet = make_member()
    report(hamlet, 0)
    report(hamlet, 55)  # exactly 55 s newer: not a write
    assert (row(hamlet).last_update_id, row(hamlet).last_active_time) == (1, T0)
    report(hamlet, 56, "idle")  # an idle report moves only last_connected_time
    presence = row(hamlet)
    assert presence.last_update_id == 2
    assert presence.last_active_time == T0
    assert presence.last_connected_time == T0 + timedelta(seconds=56)
    report(hamlet, 10)  # older than what is stored: nothing moves backwards
    assert row(hamlet).last_update_id == 2
    report(hamlet, 56 + 55)  # active 111 s after the last active report; connected only 55 s
    presence = row(hamlet)
    assert presence.last_update_id == 3
    assert presence.last_active_time == presence.last_connected_time
    assert presence.last_active_time == T0 + timedelta(seconds=111)


@pytest.mark.django_db
def test_no_signal_in_presence_disabled_realm_unless_forced(
    make_member, received, django_capture_on_commit_callbacks
):
    hamlet = make_member()
    actions.do_set_realm_presence_disabled(hamlet.realm, True)
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, 0)
        report(hamlet, 500, force_send_update=True)
    assert [kwargs["forced"] for _, kwargs in received] == [True]


@pytest.mark.django_db
def test_signals_reach_receivers_whatever_the_realms_size(
    make_member, received, django_capture_on_commit_callbacks
):
    """A host receiver in a 150-member realm, with the default settings: it hears of every
    change. PRESENCE_USER_LIMIT_FOR_EVENTS cuts event queues off (tests/test_events_api.py),
    never the host's receivers."""
    members = [make_member() for _ in range(150)]
    with django_capture_on_commit_callbacks(execute=True):
        report(members[0], 0)
        report(members[1], 0, force_send_update=True)
    assert [kwargs["member"] for _, kwargs in received] == members[:2]


@pytest.mark.django_db
def test_forced_update_without_changes_still_signals(
    make_member, received, django_capture_on_commit_callbacks
):
    hamlet = make_member()
    report(hamlet, 0)
    with django_capture_on_commit_callbacks(execute=True):
        report(hamlet, 10, force_send_update=True)
    assert [(k["forced"], k["last_update_id"]) for _, k in received] == [(True, None)]
    assert row(hamlet).last_update_id == 1


@pytest.mark.django_db
def test_invisible_mode_signals(make_member, received, django_capture_on_commit_callbacks):
    hamlet = make_member()
    now = timezone.now()
    actions.do_update_user_presence(hamlet, log_time=now, status="active")
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_set_presence_enabled(hamlet, False, log_time=now)
    assert [name for name, _ in received] == ["presence_changed", "presence_enabled_changed"]
    changed, enabled = received[0][1], received[1][1]
    backdated = int((now - timedelta(seconds=265)).timestamp())
    assert changed["forced"] is True
    assert changed["presence"] == {"active_timestamp": backdated, "idle_timestamp": backdated}
    assert enabled["presence_enabled"] is False
    assert enabled["member"].presence_enabled is False

    received.clear()
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_set_presence_enabled(hamlet, False, log_time=now)  # no change: nothing
    assert received == []
    later = now + timedelta(seconds=5)
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_set_presence_enabled(hamlet, True, log_time=later)
    assert [name for name, _ in received] == ["presence_enabled_changed", "presence_changed"]
    assert received[1][1]["presence"]["active_timestamp"] == int(later.timestamp())


@pytest.mark.django_db
def test_invisible_member_reports_are_ignored(make_member):
    hamlet = make_member(presence_enabled=False)
    actions.update_user_presence(hamlet, log_time=T0, status="active", new_user_input=True)
    assert not UserPresence.objects.filter(user_id=hamlet.user_id).exists()


@pytest.mark.django_db
def test_invalid_status_is_refused(make_member):
    with pytest.raises(ValueError, match="invalid presence status 'Active'"):
        report(make_member(), 0, "Active")


@pytest.mark.django_db
def test_missing_sequence_row_is_recreated_above_existing_ids(make_member):
    hamlet, othello = make_member(), make_member()
    report(hamlet, 0)
    report(othello, 0)
    PresenceSequence.objects.filter(realm=hamlet.realm).delete()
    report(hamlet, 100)
    assert row(hamlet).last_update_id == 3
    assert PresenceSequence.objects.get(realm=hamlet.realm).last_update_id == 3


@pytest.mark.django_db
def test_realm_created_without_action_gets_a_sequence(make_member):
    bare_realm = Realm.objects.create(string_id="bare", name="Bare")
    member = make_member(realm=bare_realm)
    report(member, 0, "idle")
    assert row(member).last_update_id == 1


@pytest.mark.django_db(transaction=True)
def test_refuses_to_run_inside_an_outer_transaction(make_member):
    hamlet = make_member()
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        report(hamlet, 0)
    assert not UserPresence.objects.exists()


@pytest.mark.django_db
def test_sequence_is_per_realm(make_member):
    other_realm = actions.do_create_realm("other", "Other")
    hamlet, stranger = make_member(), make_member(realm=other_realm)
    report(hamlet, 0)
    report(hamlet, 100)
    report(stranger, 0)
    assert row(hamlet).last_update_id == 2
    assert row(stranger).last_update_id == 1


@pytest.mark.django_db
@pytest.mark.parametrize("had_a_row", [False, True], ids=["no row", "an old row"])
def test_a_bot_toggling_invisible_mode_gets_no_presence(
    make_member, received, django_capture_on_commit_callbacks, had_a_row
):
    """Bots have no presence: switching invisible mode off and on keeps the setting but writes
    no row and sends no presence_changed (so no presence event), whatever row a bot has."""
    bot = make_member(is_bot=True)
    if had_a_row:  # written before bots were refused, or by a host calling the action itself
        report(bot, 0)
        received.clear()
    rows_before = list(UserPresence.objects.values_list("id", "last_update_id"))
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_set_presence_enabled(bot, False)
        actions.do_set_presence_enabled(bot, True)
        actions.update_user_presence(
            bot, log_time=timezone.now(), status="active", new_user_input=True
        )
    assert list(UserPresence.objects.values_list("id", "last_update_id")) == rows_before
    assert [name for name, _kwargs in received] == ["presence_enabled_changed"] * 2
    bot.refresh_from_db()
    assert bot.presence_enabled is True


@pytest.mark.django_db
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="both write forms run only where CTEs can write"
)
def test_the_one_and_two_statement_writes_agree(make_member, monkeypatch):
    """The same reports through the PostgreSQL one-statement form and the two-statement form of
    other databases leave the same rows, update ids and sequences."""

    def outcome(one_statement: bool) -> list[tuple]:
        monkeypatch.setattr(actions, "_one_statement_writes", lambda: one_statement)
        realm = actions.do_create_realm(f"forms-{one_statement}", "Forms")
        members = [make_member(realm=realm) for _ in range(3)]
        for seconds, member, status in [
            (0, members[0], "active"),
            (0, members[1], "idle"),
            (100, members[0], "idle"),
            (200, members[0], "active"),
            (300, members[2], "active"),
            (400, members[1], "active"),
        ]:
            report(member, seconds, status)
        # A realm with no sequence row: the write makes one and retries.
        PresenceSequence.objects.filter(realm=realm).delete()
        report(members[2], 500)
        rows = UserPresence.objects.filter(realm=realm).order_by("last_update_id")
        return [
            (
                members.index(next(m for m in members if m.user_id == row.user_id)),
                row.last_active_time,
                row.last_connected_time,
                row.last_update_id,
            )
            for row in rows
        ] + [PresenceSequence.objects.get(realm=realm).last_update_id]

    assert outcome(True) == outcome(False)


@pytest.mark.django_db
def test_check_add_realm_member_validates_then_adds(realm):
    user = UserFactory(email="Ada@Example.com")
    member = actions.check_add_realm_member(user, realm, role=RealmMember.Role.GUEST)
    assert (member.realm, member.role, member.is_bot) == (realm, RealmMember.Role.GUEST, False)
    with pytest.raises(actions.MembershipError, match="already belongs to realm 'zulip'"):
        actions.check_add_realm_member(user, RealmFactory())
    namesake = UserFactory(email="ada@example.com")
    with pytest.raises(actions.MembershipError, match="already has the email"):
        actions.check_add_realm_member(namesake, realm)
    # do_add_realm_member writes without these checks: the caller validated.
    other_realm = RealmFactory()
    assert actions.do_add_realm_member(namesake, other_realm).realm == other_realm


@pytest.mark.django_db
def test_lost_presence_events_are_counted_per_realm(make_member):
    hamlet = make_member()
    other_realm = actions.do_create_realm("other", "Other")
    actions.do_record_lost_presence_event(hamlet.realm)
    actions.do_record_lost_presence_event(hamlet.realm)
    assert PresenceSequence.objects.get(realm=hamlet.realm).events_lost == 2
    assert PresenceSequence.objects.get(realm=other_realm).events_lost == 0


@pytest.mark.django_db
def test_a_lost_presence_event_creates_a_missing_sequence_row(make_member):
    hamlet = make_member()
    report(hamlet, 0)
    bare_realm = Realm.objects.create(string_id="bare", name="Bare")
    actions.do_record_lost_presence_event(bare_realm)
    PresenceSequence.objects.filter(realm=hamlet.realm).delete()
    actions.do_record_lost_presence_event(hamlet.realm)
    sequences = PresenceSequence.objects.filter(realm__in=[bare_realm, hamlet.realm])
    assert sorted(sequences.values_list("realm__string_id", "last_update_id", "events_lost")) == [
        ("bare", 0, 1),
        (hamlet.realm.string_id, 1, 1),
    ]
