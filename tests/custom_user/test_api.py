"""The presence API with a custom user model: email as USERNAME_FIELD and EMAIL_FIELD, no groups
and no is_active field. Emails in the API are the custom model's email field."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.utils import timezone

from django_presence import actions
from django_presence.models import RealmMember, UserPresence
from django_presence.signals import presence_changed
from loopback.auth import basic_auth

from .models import EmailUser

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
TWO_MINUTES_AGO = NOW - timedelta(minutes=2)


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def legacy_active(moment: datetime) -> dict[str, dict[str, object]]:
    """A realm-wide legacy entry for a user whose last report was active at ``moment``."""
    return {
        "aggregated": {"client": "website", "status": "active", "timestamp": ts(moment)},
        "website": {
            "client": "website",
            "status": "active",
            "timestamp": ts(moment),
            "pushable": False,
        },
    }


def stored_time(member: RealmMember) -> datetime:
    """The one timestamp of a member whose only report was active (both columns equal)."""
    row = UserPresence.objects.get(user_id=member.user_id)
    assert row.last_active_time == row.last_connected_time
    return row.last_active_time


def test_the_user_model_is_the_custom_one() -> None:
    assert get_user_model() is EmailUser
    for field in ("groups", "is_active", "username"):
        with pytest.raises(FieldDoesNotExist):
            EmailUser._meta.get_field(field)
    # Only AbstractBaseUser's class attribute.
    assert EmailUser.is_active is True


def test_api_key_authentication_uses_the_custom_email(make_email_member, api_client_for) -> None:
    ophelia = make_email_member(user__email="ophelia@example.org")
    client = api_client_for(ophelia)

    response = client.get("/api/v1/realm/presence")
    assert response.status_code == 200
    assert response.json()["result"] == "success"

    # Zulip compares emails case-insensitively.
    client.credentials(HTTP_AUTHORIZATION=basic_auth("Ophelia@Example.ORG", client.api_key))
    assert client.get("/api/v1/realm/presence").status_code == 200

    client.credentials(HTTP_AUTHORIZATION=basic_auth("laertes@example.org", client.api_key))
    response = client.get("/api/v1/realm/presence")
    assert response.status_code == 401
    assert response.json() == {"result": "error", "msg": "Invalid API key", "code": "UNAUTHORIZED"}


def test_deactivated_member_is_refused_and_hidden(make_email_member, api_client_for) -> None:
    """With no is_active field on the user, the membership alone decides."""
    ophelia = make_email_member()
    laertes = make_email_member()
    client = api_client_for(ophelia)
    laertes_client = api_client_for(laertes)
    actions.do_update_user_presence(laertes, log_time=TWO_MINUTES_AGO, status="active")

    actions.do_deactivate_member(laertes)
    response = laertes_client.get("/api/v1/realm/presence")
    assert response.status_code == 401
    assert response.json() == {
        "result": "error",
        "msg": "Account is deactivated",
        "code": "USER_DEACTIVATED",
    }
    assert client.get("/api/v1/realm/presence").json()["presences"] == {}
    response = client.get(f"/api/v1/users/{laertes.email}/presence")
    assert response.json() == {"result": "error", "msg": "No such user", "code": "BAD_REQUEST"}


def test_post_own_presence(
    make_email_member, api_client_for, django_capture_on_commit_callbacks
) -> None:
    ophelia = make_email_member(user__email="ophelia@example.org")
    client = api_client_for(ophelia)
    received = []

    def on_presence_changed(sender, **kwargs):
        received.append(kwargs)

    presence_changed.connect(on_presence_changed)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/api/v1/users/me/presence", {"status": "active"})
    finally:
        presence_changed.disconnect(on_presence_changed)

    assert response.status_code == 200
    body = response.json()
    assert isinstance(body.pop("server_timestamp"), float)
    moment = stored_time(ophelia)
    assert body == {
        "result": "success",
        "msg": "",
        "presences": {"ophelia@example.org": legacy_active(moment)},
        "presence_last_update_id": 1,
    }
    # The signal carries the host's own user instance.
    assert len(received) == 1
    assert isinstance(received[0]["user"], EmailUser)
    assert received[0]["user"].pk == ophelia.user_id

    # The modern format is keyed by user id.
    response = client.post("/api/v1/users/me/presence", {"status": "idle", "slim_presence": "true"})
    body = response.json()
    del body["server_timestamp"]
    assert body == {
        "result": "success",
        "msg": "",
        "presences": {
            str(ophelia.user_id): {"active_timestamp": ts(moment), "idle_timestamp": ts(moment)}
        },
        "presence_last_update_id": 1,
    }


def test_realm_presence_is_keyed_by_the_custom_email(make_email_member, api_client_for) -> None:
    ophelia = make_email_member(user__email="ophelia@example.org")
    laertes = make_email_member(user__email="laertes@example.org")
    actions.do_update_user_presence(laertes, log_time=TWO_MINUTES_AGO, status="active")
    client = api_client_for(ophelia)
    client.post("/api/v1/users/me/presence", {"status": "active"})

    response = client.get("/api/v1/realm/presence")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body.pop("server_timestamp"), float)
    assert body == {
        "result": "success",
        "msg": "",
        "presences": {
            "laertes@example.org": legacy_active(TWO_MINUTES_AGO),
            "ophelia@example.org": legacy_active(stored_time(ophelia)),
        },
    }


def test_single_user_presence_by_custom_email_and_id(make_email_member, api_client_for) -> None:
    ophelia = make_email_member(user__email="ophelia@example.org")
    laertes = make_email_member(user__email="laertes@example.org")
    actions.do_update_user_presence(laertes, log_time=TWO_MINUTES_AGO, status="active")
    client = api_client_for(ophelia)
    expected = {
        "result": "success",
        "msg": "",
        "presence": {
            "active_timestamp": ts(TWO_MINUTES_AGO),
            "idle_timestamp": ts(TWO_MINUTES_AGO),
            "aggregated": {"status": "active", "timestamp": ts(TWO_MINUTES_AGO)},
            "website": {"status": "active", "timestamp": ts(TWO_MINUTES_AGO)},
        },
    }

    for name in ("laertes@example.org", "LAERTES@example.org", str(laertes.user_id)):
        response = client.get(f"/api/v1/users/{name}/presence")
        assert response.status_code == 200, name
        body = response.json()
        assert isinstance(body.pop("server_timestamp"), float)
        assert body == expected, name

    response = client.get("/api/v1/users/nobody@example.org/presence")
    assert response.status_code == 400
    assert response.json() == {"result": "error", "msg": "No such user", "code": "BAD_REQUEST"}
    response = client.get("/api/v1/users/ophelia@example.org/presence")
    assert response.status_code == 400
    assert response.json() == {
        "result": "error",
        "msg": "No presence data for ophelia@example.org",
        "code": "BAD_REQUEST",
    }


def test_access_limits_without_groups(make_email_member, api_client_for, settings) -> None:
    """With no groups on the user model, a guest can access only themself."""
    settings.PRESENCE_LIMIT_TO_ACCESSIBLE_USERS = True
    guest = make_email_member(user__email="guest@example.org", role=RealmMember.Role.GUEST)
    laertes = make_email_member(user__email="laertes@example.org")
    actions.do_update_user_presence(laertes, log_time=TWO_MINUTES_AGO, status="active")
    actions.do_update_user_presence(guest, log_time=TWO_MINUTES_AGO, status="active")
    guest_client = api_client_for(guest)
    member_client = api_client_for(laertes)

    own_only = {"guest@example.org": legacy_active(TWO_MINUTES_AGO)}
    assert guest_client.get("/api/v1/realm/presence").json()["presences"] == own_only
    body = guest_client.post(
        "/api/v1/users/me/presence", {"status": "active", "slim_presence": "true"}
    ).json()
    assert list(body["presences"]) == [str(guest.user_id)]

    response = guest_client.get("/api/v1/users/laertes@example.org/presence")
    assert response.status_code == 400
    assert response.json() == {
        "result": "error",
        "msg": "Insufficient permission",
        "code": "BAD_REQUEST",
    }
    assert guest_client.get("/api/v1/users/guest@example.org/presence").status_code == 200

    # Members access everyone.
    assert member_client.get("/api/v1/realm/presence").json()["presences"] == {
        "guest@example.org": legacy_active(stored_time(guest)),
        "laertes@example.org": legacy_active(TWO_MINUTES_AGO),
    }
    response = member_client.get("/api/v1/users/guest@example.org/presence")
    assert response.status_code == 200


def test_user_status_with_a_custom_user_model(make_email_member, api_client_for) -> None:
    ophelia = make_email_member(user__email="ophelia@example.org")
    laertes = make_email_member(user__email="laertes@example.org")
    response = api_client_for(laertes).post(
        "/api/v1/users/me/status", {"status_text": "fencing", "emoji_name": "car"}
    )
    assert response.json() == {"result": "success", "msg": ""}
    response = api_client_for(ophelia).get(f"/api/v1/users/{laertes.user_id}/status")
    assert response.json()["status"] == {
        "status_text": "fencing",
        "emoji_name": "car",
        "emoji_code": "1f697",
        "reaction_type": "unicode_emoji",
    }
