"""A tenant's first day, told through the HTTP API: signup, invite, accept, keys, revoke, pairing."""

from __future__ import annotations

from tests.support.api_client import Api
from tests.support.terms import TERMS


def test_a_tenants_first_day(api: Api) -> None:
    # Ada signs up Acme and receives the admin key, once.
    signup = api.signup("acme", email="ada@acme.example", name="Ada")
    admin_key = signup["api_key"]["secret"]
    assert signup["admin"]["role"] == "admin"
    assert signup["api_key"]["prefix"] == admin_key[:12]

    # She invites Bob as a member; the token is shown once and expires in 7 days.
    invite = api.call("POST", "/api/v1/invites", admin_key, json={"email": "Bob@Acme.example", "role": "member"})
    assert invite.status_code == 201, invite.text
    token = invite.json()["token"]
    listed = api.call("GET", "/api/v1/invites", admin_key).json()
    assert [(i["email"], i["status"]) for i in listed] == [("bob@acme.example", "open")]
    assert "token" not in listed[0]

    # Bob accepts with the token and gets his first key; the same token cannot be used twice.
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Bob"})
    assert joined.status_code == 201, joined.text
    bob_key = joined.json()["api_key"]["secret"]
    again = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Bob"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")

    # Bob sees himself, may not list users, and issues a key for his laptop.
    me = api.call("GET", "/api/v1/me", bob_key).json()
    assert (me["user"]["email"], me["user"]["role"]) == ("bob@acme.example", "member")
    assert api.call("GET", "/api/v1/users", bob_key).status_code == 403
    laptop = api.call("POST", "/api/v1/keys", bob_key, json={"name": "laptop", "scopes": ["inference"]})
    assert laptop.status_code == 201, laptop.text
    laptop_key, laptop_id = laptop.json()["secret"], laptop.json()["id"]
    assert api.services.authenticator.authenticate(laptop_key).key_id.hex == laptop_id.replace("-", "")

    # A member may not hold admin-only scopes.
    audit = api.call("POST", "/api/v1/keys", bob_key, json={"name": "x", "scopes": ["audit:read"]})
    assert audit.status_code == 422 and audit.json()["field"] == "scopes"

    # Bob revokes the laptop key; the very next request with it is refused.
    assert api.call("DELETE", f"/api/v1/keys/{laptop_id}", bob_key).status_code == 204
    refused = api.call("GET", "/api/v1/usage", laptop_key)
    assert refused.status_code == 401 and refused.json()["type"].endswith("key-revoked")

    # Ada promotes Bob to billing, suspends and reinstates him, and lists everyone.
    bob_id = me["user"]["id"]
    role = api.call("POST", f"/api/v1/users/{bob_id}/role", admin_key, json={"role": "billing", "reason": "finance"})
    assert role.status_code == 201 and role.json()["role"] == "billing"
    assert api.call("POST", f"/api/v1/users/{bob_id}/suspend", admin_key, json={"reason": "audit"}).status_code == 201
    assert api.call("GET", "/api/v1/me", bob_key).status_code == 403
    assert api.call("POST", f"/api/v1/users/{bob_id}/reinstate", admin_key, json={}).status_code == 201
    assert api.call("GET", "/api/v1/me", bob_key).status_code == 200
    users = api.call("GET", "/api/v1/users", admin_key).json()
    assert {u["email"] for u in users} == {"ada@acme.example", "bob@acme.example"}

    # Ada cannot remove herself: the tenant keeps an admin.
    ada_id = signup["admin"]["id"]
    assert api.call("DELETE", f"/api/v1/users/{ada_id}", admin_key).status_code == 409

    # Ada pairs a GPU box: the pairing key works once.
    pairing = api.call("POST", "/api/v1/pairing-keys", admin_key)
    assert pairing.status_code == 201
    secret = pairing.json()["secret"]
    paired = api.call("POST", "/api/v1/agents/pair", json={"pairing_key": secret, "name": "gpu-1"})
    assert paired.status_code == 201, paired.text
    assert paired.json()["nats_user"].startswith("agent-")
    assert api.call("POST", "/api/v1/agents/pair", json={"pairing_key": secret, "name": "gpu-2"}).status_code == 409
    agents = api.call("GET", "/api/v1/agents", admin_key).json()
    assert [(a["name"], a["status"]) for a in agents] == [("gpu-1", "active")]
    agent_id = agents[0]["id"]
    assert api.call("DELETE", f"/api/v1/agents/{agent_id}", admin_key).status_code == 204
    assert api.call("GET", "/api/v1/agents", admin_key).json()[0]["status"] == "revoked"

    # At the end of the day Ada removes Bob: all his keys stop at once.
    assert api.call("DELETE", f"/api/v1/users/{bob_id}?reason=left", admin_key).status_code == 204
    assert api.call("GET", "/api/v1/me", bob_key).status_code == 401


def test_an_invite_accepted_too_late_is_refused(api: Api) -> None:
    admin_key = api.signup("latecomers")["api_key"]["secret"]
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": "c@x.example"}).json()["token"]
    api.clock.advance(days=7, seconds=1)
    late = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": "Carol"})
    assert late.status_code == 410
    assert "expired" in late.json()["detail"]


def test_a_pairing_key_expires_after_an_hour(api: Api) -> None:
    admin_key = api.signup("pairers")["api_key"]["secret"]
    secret = api.call("POST", "/api/v1/pairing-keys", admin_key).json()["secret"]
    api.clock.advance(hours=1)
    assert api.call("POST", "/api/v1/agents/pair", json={"pairing_key": secret}).status_code == 410


def test_an_expired_key_stops_authenticating(api: Api) -> None:
    admin_key = api.signup("expiring")["api_key"]["secret"]
    expires = (api.clock.now.replace(microsecond=0)).isoformat().replace("+00:00", "Z")
    past = api.call(
        "POST", "/api/v1/keys", admin_key, json={"name": "k", "scopes": ["inference"], "expires_at": expires}
    )
    assert past.status_code == 422 and past.json()["field"] == "expires_at"
    api.clock.advance(minutes=1)
    later = (api.clock.now).isoformat().replace("+00:00", "Z")
    api.clock.advance(minutes=-1)
    issued = api.call(
        "POST", "/api/v1/keys", admin_key, json={"name": "k", "scopes": ["admin:read"], "expires_at": later}
    )
    assert issued.status_code == 201, issued.text
    key = issued.json()["secret"]
    assert api.call("GET", "/api/v1/me", key).status_code == 200
    api.clock.advance(minutes=1)
    expired = api.call("GET", "/api/v1/me", key)
    assert expired.status_code == 401 and expired.json()["type"].endswith("key-expired")


def test_another_tenants_objects_look_like_missing_ones(api: Api) -> None:
    a_key = api.signup("tenant-a")["api_key"]["secret"]
    b = api.signup("tenant-b")
    b_user, b_key_id = b["admin"]["id"], b["api_key"]["id"]
    for method, path in [
        ("GET", f"/api/v1/users/{b_user}"),
        ("POST", f"/api/v1/users/{b_user}/suspend"),
        ("DELETE", f"/api/v1/keys/{b_key_id}"),
        ("DELETE", f"/api/v1/agents/{b_key_id}"),
    ]:
        response = api.call(method, path, a_key, json={} if method == "POST" else None)
        assert response.status_code == 404, (method, path, response.text)
    assert api.call("GET", "/api/v1/me", b["api_key"]["secret"]).status_code == 200


def test_signup_refuses_taken_reserved_and_malformed_slugs(api: Api) -> None:
    api.signup("taken")
    body = {"name": "X", "admin_name": "Y", "admin_email": "y@x.example", "accept_terms": TERMS}
    assert api.call("POST", "/api/v1/tenants", json={"slug": "taken", **body}).status_code == 409
    assert (
        api.call("POST", "/api/v1/tenants", json={"slug": "api", **body}).json()["detail"] == "slug 'api' is reserved"
    )
    for bad in ["Up", "ab", "-abc", "abc-", "a_b_c", "a" * 41]:
        response = api.call("POST", "/api/v1/tenants", json={"slug": bad, **body})
        assert response.status_code == 422, bad
        assert response.json()["field"] == "slug"


def test_a_role_change_narrows_the_scopes_of_existing_keys(api: Api) -> None:
    admin_key = api.signup("narrowing")["api_key"]["secret"]
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": "m@x.example", "role": "member"}).json()
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token["token"], "name": "M"}).json()
    member_key = joined["api_key"]["secret"]
    assert "inference" in api.services.authenticator.authenticate(member_key).scopes
    body = {"role": "auditor", "reason": "moved to audit"}
    assert api.call("POST", f"/api/v1/users/{joined['user_id']}/role", admin_key, json=body).status_code == 201
    scopes = api.services.authenticator.authenticate(member_key).scopes
    assert "inference" not in scopes and "admin:read" in scopes
