"""Own versus everyone's: keys and usage of another user, as each role sees them over HTTP."""

from __future__ import annotations

from typing import Any

from tests.support.api_client import Api


def _join(api: Api, admin_key: str, email: str, role: str) -> dict[str, Any]:
    """Invite ``email`` with ``role`` and accept: the new user's id and first key."""
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": email, "role": role}).json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": role.title()})
    assert joined.status_code == 201, joined.text
    return {"id": joined.json()["user_id"], "key": joined.json()["api_key"]["secret"]}


def _events(api: Api) -> int:
    return api.services.app.recorder.max_notification_id() or 0


def test_only_admins_issue_and_revoke_another_users_keys(api: Api) -> None:
    signup = api.signup("owners", email="ada@owners.example")
    admin_key, admin_key_id, admin_id = signup["api_key"]["secret"], signup["api_key"]["id"], signup["admin"]["id"]
    bob = _join(api, admin_key, "bob@owners.example", "member")

    # Bob may issue for himself, named or not, but not for Ada: 403, and nothing is recorded.
    own = api.call("POST", "/api/v1/keys", bob["key"], json={"name": "mine", "scopes": ["inference"],
                                                              "user_id": bob["id"]})  # fmt: skip
    assert own.status_code == 201 and own.json()["user_id"] == bob["id"], own.text
    before = _events(api)
    other = api.call("POST", "/api/v1/keys", bob["key"], json={"name": "x", "scopes": ["admin:read"],
                                                                "user_id": admin_id})  # fmt: skip
    assert other.status_code == 403, other.text
    assert other.json()["detail"] == "only admins may issue keys for another user"
    assert _events(api) == before

    # Bob cannot revoke Ada's key: to him it does not exist, and it keeps working.
    revoke = api.call("DELETE", f"/api/v1/keys/{admin_key_id}", bob["key"])
    assert revoke.status_code == 404 and revoke.json()["detail"] == "apikey not found", revoke.text
    assert _events(api) == before
    assert api.call("GET", "/api/v1/me", admin_key).status_code == 200

    # Ada issues a key for Bob and revokes Bob's own key.
    for_bob = api.call("POST", "/api/v1/keys", admin_key, json={"name": "ops", "scopes": ["inference"],
                                                                 "user_id": bob["id"]})  # fmt: skip
    assert for_bob.status_code == 201 and for_bob.json()["user_id"] == bob["id"], for_bob.text
    assert api.call("DELETE", f"/api/v1/keys/{own.json()['id']}", admin_key).status_code == 204
    again = api.call("DELETE", f"/api/v1/keys/{own.json()['id']}", admin_key)
    assert again.status_code == 409, again.text


def test_listing_everyones_keys_needs_an_oversight_role(api: Api) -> None:
    admin_key = api.signup("listers", email="ada@listers.example")["api_key"]["secret"]
    bob = _join(api, admin_key, "bob@listers.example", "member")
    carol = _join(api, admin_key, "carol@listers.example", "auditor")

    mine = api.call("GET", "/api/v1/keys", bob["key"])
    assert mine.status_code == 200 and {k["user_id"] for k in mine.json()} == {bob["id"]}
    refused = api.call("GET", "/api/v1/keys?all_users=true", bob["key"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == "listing every user's keys needs an admin, compliance or auditor role"
    everyone = api.call("GET", "/api/v1/keys?all_users=true", carol["key"])
    assert everyone.status_code == 200 and len(everyone.json()) == 3, everyone.text


def test_tenant_wide_usage_needs_the_admin_or_billing_role(api: Api) -> None:
    admin_key = api.signup("counters", email="ada@counters.example")["api_key"]["secret"]
    bob = _join(api, admin_key, "bob@counters.example", "member")
    dora = _join(api, admin_key, "dora@counters.example", "billing")

    assert api.call("GET", "/api/v1/usage", bob["key"]).status_code == 200
    refused = api.call("GET", "/api/v1/usage?all_users=true", bob["key"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == "tenant-wide usage needs the admin or billing role"
    for key in (admin_key, dora["key"]):
        assert api.call("GET", "/api/v1/usage?all_users=true", key).status_code == 200
