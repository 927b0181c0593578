import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_post_and_get(make_member, api_client_for):
    hamlet = make_member(user__username="hamlet")
    client = api_client_for(hamlet)
    r = client.post("/api/v1/users/me/presence", {"status": "active", "last_update_id": "-1"})
    print(r.json())
    assert r.status_code == 200
    r = client.get("/api/v1/realm/presence")
    print(r.json())
    r = client.get(f"/api/v1/users/{hamlet.user_id}/presence")
    print(r.json())
    r = client.get("/api/v1/users/me/presence")
    print(r.status_code, r.json())
    r = client.get("/api/v1/nothing")
    print(r.status_code, r.json())
    r = client.get("/api/v1/server_settings")
    print(r.status_code, r.json())
    r = client.patch("/api/v1/settings", {"presence_enabled": "false", "x": "1"})
    print(r.status_code, r.json())
