"""The HTTP contract Zulip clients rely on: the envelope, strict parameter typing and its exact
messages, unknown parameters, authentication and its 401s, sessions and CSRF, rate limiting,
405/404, and odd values that must never cause a 500."""

from __future__ import annotations

import base64
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from django_presence import __version__, actions
from django_presence.authentication import ZulipApiKeyAuthentication
from django_presence.models import UserPresence
from django_presence.views import UpdatePresenceView
from loopback.auth import basic_auth

from .api_utils import (
    FORM,
    PRESENCE_URL,
    REALM_PRESENCE_URL,
    SETTINGS_URL,
    assert_error,
    form,
    frozen_now,
    legacy_entry,
    now_seconds,
    post_presence,
    success,
    ts,
    user_presence_url,
    without_server_timestamp,
)

pytestmark = pytest.mark.django_db

SERVER_SETTINGS_URL = "/api/v1/server_settings"
NOT_LOGGED_IN = "Not logged in: API authentication or user session required"
WWW_AUTHENTICATE = 'Basic realm="zulip"'


@pytest.fixture
def client(api_client_for, hamlet):
    return api_client_for(hamlet)


# The envelope --------------------------------------------------------------------------------


def test_post_modern_response(client, hamlet):
    now = now_seconds()
    with frozen_now(now):
        response = post_presence(client, status="active", last_update_id=-1)
    assert response["Content-Type"] == "application/json"
    body = success(response)
    assert list(body) == [
        "result",
        "msg",
        "presences",
        "server_timestamp",
        "presence_last_update_id",
    ]
    assert without_server_timestamp(body) == {
        "result": "success",
        "msg": "",
        "presences": {
            str(hamlet.user_id): {"active_timestamp": ts(now), "idle_timestamp": ts(now)}
        },
        "presence_last_update_id": 1,
    }


def test_post_legacy_response_keeps_the_update_id(client, hamlet):
    now = now_seconds()
    with frozen_now(now):
        body = success(post_presence(client, status="active"))
    assert without_server_timestamp(body) == {
        "result": "success",
        "msg": "",
        "presences": {hamlet.email: legacy_entry("active", ts(now))},
        "presence_last_update_id": 1,
    }


def test_realm_presence_has_no_update_id(client, hamlet):
    now = now_seconds()
    with frozen_now(now):
        success(post_presence(client, status="active"))
        body = success(client.get(REALM_PRESENCE_URL))
    assert without_server_timestamp(body) == {
        "result": "success",
        "msg": "",
        "presences": {hamlet.email: legacy_entry("active", ts(now))},
    }


def test_ping_only_body(client):
    response = post_presence(client, status="idle", ping_only=True)
    assert response.status_code == 200
    assert response.json() == {"result": "success", "msg": ""}


def test_parameters_from_the_query_string(client, hamlet):
    response = client.post(f"{PRESENCE_URL}?status=active&slim_presence=true")
    assert list(success(response)["presences"]) == [str(hamlet.user_id)]


def test_multipart_body(client, hamlet):
    body = success(client.post(PRESENCE_URL, {"status": "active", "slim_presence": "true"}))
    assert list(body["presences"]) == [str(hamlet.user_id)]


def test_multipart_files_are_not_parameters(client):
    response = client.post(
        PRESENCE_URL,
        {"status": SimpleUploadedFile("status", b"active"), "x": SimpleUploadedFile("x", b"1")},
    )
    assert_error(
        response, "Missing 'status' argument", code="REQUEST_VARIABLE_MISSING", var_name="status"
    )
    body = success(
        client.post(PRESENCE_URL, {"status": "active", "ping_only": "true", "x": io.BytesIO()})
    )
    assert "ignored_parameters_unsupported" not in body


def test_json_body_is_refused(client):
    response = client.post(PRESENCE_URL, '{"status": "active"}', content_type="application/json")
    assert_error(response, 'Unsupported media type "application/json" in request.', status=415)


# Parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw_value", "message"),
    [
        ("ping_only", "yes", "ping_only is not valid JSON"),
        ("ping_only", "1", "ping_only is not a boolean"),
        ("ping_only", "null", "ping_only is not a boolean"),
        ("slim_presence", '"true"', "slim_presence is not a boolean"),
        ("slim_presence", "True", "slim_presence is not valid JSON"),
        ("new_user_input", "", "new_user_input is not valid JSON"),
        ("new_user_input", "0", "new_user_input is not a boolean"),
        ("last_update_id", "1.5", "last_update_id is not an integer"),
        ("last_update_id", "true", "last_update_id is not an integer"),
        ("last_update_id", '"5"', "last_update_id is not an integer"),
        ("last_update_id", "1e400", "last_update_id is not an integer"),
        ("last_update_id", "five", "last_update_id is not valid JSON"),
        ("history_limit_days", "[14]", "history_limit_days is not an integer"),
        ("history_limit_days", "NaN", "history_limit_days is not an integer"),
    ],
)
def test_parameter_typing(client, name, raw_value, message):
    response = client.post(PRESENCE_URL, f"status=active&{name}={raw_value}", content_type=FORM)
    assert_error(response, message)
    assert not UserPresence.objects.exists()


def test_type_errors_come_before_the_status_check(client):
    assert_error(post_presence(client, status="foo", ping_only="1"), "ping_only is not a boolean")


def test_missing_status(client):
    assert_error(
        post_presence(client, slim_presence=True),
        "Missing 'status' argument",
        code="REQUEST_VARIABLE_MISSING",
        var_name="status",
    )


@pytest.mark.parametrize("status", ["foo", "", "Active", "IDLE", '"active"', " active"])
def test_invalid_status(client, status):
    assert_error(post_presence(client, status=status), f"Invalid status: {status}")


def test_ignored_parameters_are_sorted_and_client_is_never_listed(client):
    body = success(
        post_presence(
            client, status="active", zeta="1", alpha="x", client="ZulipMobile", dont_block=True
        )
    )
    assert list(body)[-1] == "ignored_parameters_unsupported"
    assert body["ignored_parameters_unsupported"] == ["alpha", "dont_block", "zeta"]

    body = success(client.get(f"{REALM_PRESENCE_URL}?b=1&a=2&client=website"))
    assert body["ignored_parameters_unsupported"] == ["a", "b"]
    assert "ignored_parameters_unsupported" not in success(client.get(REALM_PRESENCE_URL))


def test_ignored_parameters_on_ping_only(client):
    response = post_presence(client, status="active", ping_only=True, foo="bar")
    assert response.json() == {
        "result": "success",
        "msg": "",
        "ignored_parameters_unsupported": ["foo"],
    }


def test_new_user_input_is_accepted_and_has_no_effect(client, api_client_for, othello):
    now = now_seconds()
    with frozen_now(now):
        with_input = success(post_presence(client, status="active", new_user_input=True))
        success(post_presence(api_client_for(othello), status="active"))
    assert "ignored_parameters_unsupported" not in with_input
    rows = UserPresence.objects.values_list("last_active_time", "last_connected_time")
    assert list(rows) == [(now, now), (now, now)]


def test_bots_cannot_post(make_member, api_client_for):
    bot_client = api_client_for(make_member(is_bot=True))
    bot_error = "This endpoint does not accept bot requests."
    assert_error(post_presence(bot_client, status="active"), bot_error)
    # The bot check comes before parameter parsing.
    assert_error(post_presence(bot_client, ping_only="1"), bot_error)
    assert not UserPresence.objects.exists()


# Methods and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", PRESENCE_URL, ["POST"]),
        ("delete", PRESENCE_URL, ["POST"]),
        ("post", REALM_PRESENCE_URL, ["GET"]),
        ("put", SETTINGS_URL, ["PATCH"]),
    ],
)
def test_method_not_allowed(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert_error(response, "Method Not Allowed", status=405, allowed_methods=allowed)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", PRESENCE_URL, ["POST"]),
        ("post", REALM_PRESENCE_URL, ["GET"]),
        ("put", SETTINGS_URL, ["PATCH"]),
        ("post", "/api/v1/directory/members", ["GET"]),
        ("post", "/api/v1/events", ["GET", "DELETE"]),
        ("get", "/api/v1/register", ["POST"]),
    ],
)
def test_a_wrong_method_is_405_before_authentication(method, path, allowed):
    # Zulip routes by method first: no credentials still get the 405, not a 401.
    response = getattr(APIClient(), method)(path)
    assert_error(response, "Method Not Allowed", status=405, allowed_methods=allowed)


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing", "/api/v1/users/me/presences", "/api/v1/users/me/presence/"]
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_paths_get_a_json_404(method, path):
    # No credentials and CSRF enforced, as for any API client: still Zulip's JSON 404.
    response = getattr(APIClient(enforce_csrf_checks=True), method)(path)
    assert_error(response, "Not Found", status=404)


# API-key authentication ----------------------------------------------------------------------


PRESENCE_ENDPOINTS = [
    ("post", PRESENCE_URL),
    ("get", REALM_PRESENCE_URL),
    ("get", "/api/v1/users/1/presence"),
    ("patch", SETTINGS_URL),
]


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def request(client: APIClient, method: str, path: str) -> Any:
    if method == "get":
        return client.get(path)
    return getattr(client, method)(path, form(status="active"), content_type=FORM)


def assert_unauthorized(response: Any, msg: str, code: str = "UNAUTHORIZED") -> None:
    assert_error(response, msg, status=401, code=code)
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.parametrize(("method", "path"), PRESENCE_ENDPOINTS)
def test_missing_authorization(method, path):
    assert_unauthorized(request(APIClient(), method, path), NOT_LOGGED_IN)


@pytest.mark.parametrize(("method", "path"), PRESENCE_ENDPOINTS)
@pytest.mark.parametrize(
    ("authorization", "msg"),
    [
        ("Basic !!!", "Invalid authorization header for basic auth"),
        (f"Basic {encoded('hamlet@zulip.com')}", "Invalid authorization header for basic auth"),
        (f"Basic {encoded('hamlet@zulip.com:')}", "Malformed API key"),
        (f"Basic {encoded('hamlet@zulip.com:short')}", "Malformed API key"),
        (f"Basic {encoded('hamlet@zulip.com:' + 'A' * 32)}", "Invalid API key"),
    ],
    ids=["not-base64", "no-colon", "empty-key", "malformed-key", "unknown-key"],
)
def test_bad_credentials(hamlet, method, path, authorization, msg):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    assert_unauthorized(request(client, method, path), msg)


def test_key_of_another_member(client, othello):
    client.credentials(HTTP_AUTHORIZATION=basic_auth(othello.email, client.api_key))
    assert_unauthorized(client.get(REALM_PRESENCE_URL), "Invalid API key")


def test_email_matches_case_insensitively(client, hamlet):
    client.credentials(HTTP_AUTHORIZATION=basic_auth(" HAMLET@Zulip.com", client.api_key))
    success(client.get(REALM_PRESENCE_URL))


def test_revoked_key(client, hamlet):
    actions.do_revoke_api_keys(hamlet)
    assert_unauthorized(client.get(REALM_PRESENCE_URL), "Invalid API key")
    _key, new_key = actions.do_create_api_key(hamlet)
    client.credentials(HTTP_AUTHORIZATION=basic_auth(hamlet.email, new_key))
    success(client.get(REALM_PRESENCE_URL))


@pytest.mark.parametrize(("method", "path"), PRESENCE_ENDPOINTS)
def test_deactivated_member(client, hamlet, method, path):
    actions.do_deactivate_member(hamlet)
    assert_unauthorized(request(client, method, path), "Account is deactivated", "USER_DEACTIVATED")


def test_deactivated_django_user(client, hamlet):
    hamlet.user.is_active = False
    hamlet.user.save(update_fields=["is_active"])
    assert_unauthorized(
        client.get(REALM_PRESENCE_URL), "Account is deactivated", "USER_DEACTIVATED"
    )


@pytest.mark.parametrize(("method", "path"), PRESENCE_ENDPOINTS)
def test_deactivated_realm(client, hamlet, method, path):
    actions.do_set_realm_deactivated(hamlet.realm, True)
    assert_unauthorized(
        request(client, method, path),
        "This organization has been deactivated",
        "REALM_DEACTIVATED",
    )


@pytest.mark.parametrize("authorization", ["Bearer abc", "Token abc", "Digest username=x"])
def test_other_authorization_schemes(hamlet, authorization):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get(REALM_PRESENCE_URL)
    assert_error(response, "This endpoint requires HTTP basic authentication.")
    assert "WWW-Authenticate" not in response


# Sessions (browser use) ----------------------------------------------------------------------


def test_session_login(hamlet):
    browser = APIClient()
    assert browser.login(username="hamlet", password="password")
    success(post_presence(browser, status="active"))
    assert list(success(browser.get(REALM_PRESENCE_URL))["presences"]) == [hamlet.email]


def test_session_post_needs_the_csrf_token(hamlet):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(hamlet.user)
    success(browser.get(REALM_PRESENCE_URL))  # safe methods need no token

    assert_error(
        post_presence(browser, status="active"),
        "CSRF error: CSRF cookie not set.",
        status=403,
        code="CSRF_FAILED",
        reason="CSRF cookie not set.",
    )
    assert not UserPresence.objects.exists()

    token = "a" * 32
    browser.cookies["csrftoken"] = token
    response = browser.post(
        PRESENCE_URL, form(status="active"), content_type=FORM, HTTP_X_CSRFTOKEN=token
    )
    success(response)
    assert UserPresence.objects.filter(user_id=hamlet.user_id).exists()


def test_session_of_a_deactivated_member(hamlet):
    browser = APIClient()
    browser.force_login(hamlet.user)
    actions.do_deactivate_member(hamlet)
    response = browser.get(REALM_PRESENCE_URL)
    assert_error(response, "Account is deactivated", status=401, code="USER_DEACTIVATED")


def test_user_without_membership(django_user_model):
    outsider = django_user_model.objects.create_user(username="outsider", password="password")
    browser = APIClient()
    browser.force_login(outsider)
    for response in (browser.get(REALM_PRESENCE_URL), post_presence(browser, status="active")):
        assert_error(
            response,
            "This user is not a member of any organization",
            status=403,
            code="UNAUTHORIZED",
        )
    assert not UserPresence.objects.exists()


# Rate limiting -------------------------------------------------------------------------------


@pytest.mark.usefixtures("rate_limited")
def test_rate_limit(client, api_client_for, othello):
    success(post_presence(client, status="active"))
    success(client.get(REALM_PRESENCE_URL))
    response = client.get(REALM_PRESENCE_URL)
    assert_error(
        response,
        "API usage exceeded rate limit",
        status=429,
        code="RATE_LIMIT_HIT",
        **{"retry-after": 60.0},
    )
    assert response["Retry-After"] == "60"
    # The limit is per user, and server_settings is not limited at all.
    success(api_client_for(othello).get(REALM_PRESENCE_URL))
    for _ in range(3):
        success(client.get(SERVER_SETTINGS_URL))


# Huge and odd values -------------------------------------------------------------------------


@pytest.fixture
def two_rows(client, hamlet, othello):
    """hamlet reports now; othello's only report is three years old."""
    actions.do_update_user_presence(
        othello, log_time=timezone.now() - timedelta(days=3 * 365), status="active"
    )
    success(post_presence(client, status="active"))  # update id 2


@pytest.mark.usefixtures("two_rows")
@pytest.mark.parametrize(
    ("params", "who", "update_id"),
    [
        ({"last_update_id": 99999999999999999999}, [], 99999999999999999999),
        ({"last_update_id": -99999999999999999999}, ["hamlet"], 2),
        ({"last_update_id": -5}, ["hamlet"], 2),
        ({"last_update_id": -5, "history_limit_days": -1}, [], -5),
        ({"last_update_id": 0, "history_limit_days": 10**9}, ["othello", "hamlet"], 2),
        ({"last_update_id": 1, "history_limit_days": -3}, ["hamlet"], 2),
        # 0 days means nothing, whatever the baseline.
        ({"last_update_id": 1, "history_limit_days": 0}, [], 1),
        ({"history_limit_days": 10**9, "slim_presence": True}, ["othello", "hamlet"], 2),
        (
            {"history_limit_days": 99999999999999999999, "slim_presence": True},
            ["othello", "hamlet"],
            2,
        ),
        ({"history_limit_days": -(10**9), "slim_presence": True}, [], -1),
        ({"history_limit_days": -1, "slim_presence": True}, [], -1),
    ],
)
def test_huge_and_negative_numbers(client, hamlet, othello, params, who, update_id):
    body = success(post_presence(client, status="active", **params))
    members = {"hamlet": hamlet, "othello": othello}
    assert sorted(body["presences"]) == sorted(str(members[name].user_id) for name in who)
    assert body["presence_last_update_id"] == update_id


@pytest.mark.parametrize(
    "user_id_or_email",
    [
        "99999999999999999999",
        "-99999999999999999999",
        "-1",
        "0",
        "a%00b",
        "%20",
        "+",
        "1e5",
        "9" * 5000,  # past the digits Python converts: an email then
        "a" * 255 + "@zulip.com",
        # Past SQLite's 50,000-byte LIKE patterns (the lookup ignores case).
        "x" * 60_000,
    ],
)
def test_odd_user_paths(client, user_id_or_email):
    assert_error(client.get(user_presence_url(user_id_or_email)), "No such user")


def test_a_longest_email_is_found(client, make_member, hamlet):
    longest = make_member(user__username="longest", user__email="a" * 244 + "@zulip.com")
    actions.do_update_user_presence(longest, log_time=timezone.now(), status="active")
    success(client.get(user_presence_url(" " + longest.email.upper() + " ")))


def test_null_character_in_status(client):
    assert_error(post_presence(client, status="act\x00ive"), "Invalid status: act\x00ive")


# Who is listed, and the id that comes back --------------------------------------------------


def test_deactivated_members_are_not_listed(client, hamlet, othello, api_client_for):
    success(post_presence(client, status="active"))  # update id 1
    success(post_presence(api_client_for(othello), status="active"))  # update id 2
    actions.do_deactivate_member(othello)
    assert list(success(client.get(REALM_PRESENCE_URL))["presences"]) == [hamlet.email]
    # Nor does othello's row count towards the id returned.
    body = success(post_presence(client, status="active", last_update_id=-1))
    assert (list(body["presences"]), body["presence_last_update_id"]) == ([str(hamlet.user_id)], 1)
    actions.do_reactivate_member(othello)
    body = success(client.get(REALM_PRESENCE_URL))
    assert set(body["presences"]) == {hamlet.email, othello.email}


def test_update_id_is_the_maximum_of_the_returned_rows(
    make_member, api_client_for, hamlet, othello
):
    """The newest write need not be the most recent timestamp: going invisible backdates a row
    under a new, highest id. The poller is invisible too, so their polls write nothing."""
    poller = api_client_for(make_member(presence_enabled=False))
    now = now_seconds()
    for member in (hamlet, othello):
        actions.do_update_user_presence(member, log_time=now, status="active")
    actions.do_set_presence_enabled(hamlet, False, log_time=now)
    with frozen_now(now):
        body = success(post_presence(poller, status="idle", last_update_id=-1))
    assert set(body["presences"]) == {str(hamlet.user_id), str(othello.user_id)}
    assert body["presence_last_update_id"] == 3


# PATCH settings ------------------------------------------------------------------------------


def test_patch_presence_enabled(client, hamlet):
    response = client.patch(
        SETTINGS_URL,
        form(presence_enabled=False, enter_sends=True, color_scheme=1),
        content_type=FORM,
    )
    assert response.json() == {
        "result": "success",
        "msg": "",
        "ignored_parameters_unsupported": ["color_scheme", "enter_sends"],
    }
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is False

    success(client.patch(SETTINGS_URL, form(presence_enabled=True), content_type=FORM))
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is True
    # Coming back records an active report at once.
    assert UserPresence.objects.filter(user_id=hamlet.user_id).exists()


def test_patch_settings_typing(client, hamlet):
    response = client.patch(SETTINGS_URL, "presence_enabled=1", content_type=FORM)
    assert_error(response, "presence_enabled is not a boolean")
    response = client.patch(SETTINGS_URL, "presence_enabled=off", content_type=FORM)
    assert_error(response, "presence_enabled is not valid JSON")
    hamlet.refresh_from_db()
    assert hamlet.presence_enabled is True


def test_patch_settings_without_parameters(client):
    assert client.patch(SETTINGS_URL).json() == {"result": "success", "msg": ""}


# server_settings -----------------------------------------------------------------------------


EXPECTED_SERVER_SETTINGS = {
    "result": "success",
    "msg": "",
    "zulip_version": f"12.0-django-presence-{__version__}",
    "zulip_feature_level": 497,
    "zulip_merge_base": f"12.0-django-presence-{__version__}",
    "push_notifications_enabled": False,
    "is_incompatible": False,
    "email_auth_enabled": False,
    "require_email_format_usernames": True,
    "authentication_methods": {"password": False, "dev": False},
    "external_authentication_methods": [],
    "realm_uri": "http://testserver",
    "realm_url": "http://testserver",
    "realm_name": "Django presence",
    "realm_icon": "",
    "realm_description": "",
    "realm_web_public_access_enabled": False,
    "server_presence_ping_interval_seconds": 60,
    "server_presence_offline_threshold_seconds": 200,
}


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic !!!", f"Basic {encoded('x@y.z:' + 'A' * 32)}", "Bearer abc"],
    ids=["none", "undecodable", "unknown-key", "other-scheme"],
)
def test_server_settings_needs_no_valid_auth(authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get(SERVER_SETTINGS_URL)
    assert response.status_code == 200
    assert response.json() == EXPECTED_SERVER_SETTINGS


def test_server_settings_follows_settings(settings):
    settings.PRESENCE_PING_INTERVAL_SECS = 30
    settings.PRESENCE_OFFLINE_THRESHOLD_SECS = 140
    settings.PRESENCE_SERVER_NAME = "Elsinore"
    body = success(APIClient().get(SERVER_SETTINGS_URL))
    assert body["server_presence_ping_interval_seconds"] == 30
    assert body["server_presence_offline_threshold_seconds"] == 140
    assert body["realm_name"] == "Elsinore"


def test_views_share_their_stateless_components(monkeypatch):
    first, second = UpdatePresenceView(), UpdatePresenceView()
    assert first.get_parsers() is second.get_parsers()
    assert first.get_authenticators() is second.get_authenticators()
    assert first.get_permissions() is second.get_permissions()
    # Throttles keep each request's history: never shared.
    assert first.get_throttles()[0] is not second.get_throttles()[0]
    # Other classes, other instances.
    monkeypatch.setattr(UpdatePresenceView, "authentication_classes", [ZulipApiKeyAuthentication])
    (only,) = UpdatePresenceView().get_authenticators()
    assert type(only) is ZulipApiKeyAuthentication
