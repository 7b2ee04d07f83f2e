"""Keys minted for someone else: the issuer is recorded, shown, and reviewed when the issuer leaves."""

from __future__ import annotations

from typing import Any

import pytest

from api.auth import CredentialsRejected
from tests.support.api_client import Api


def join(api: Api, admin_key: str, email: str, name: str, role: str) -> dict[str, Any]:
    """Invite and accept: the new user's id and first key."""
    token = api.call("POST", "/api/v1/invites", admin_key, json={"email": email, "role": role}).json()["token"]
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": token, "name": name}).json()
    return {"id": joined["user_id"], "key": joined["api_key"]["secret"]}


def test_an_admin_who_leaves_cannot_hide_behind_keys_minted_for_others(api: Api) -> None:
    # Ada runs Acme; she makes Mallory a second admin and hires Bob as a member.
    ada = api.signup("acme", email="ada@acme.example", name="Ada")
    ada_key, ada_id = ada["api_key"]["secret"], ada["admin"]["id"]
    mallory = join(api, ada_key, "mallory@acme.example", "Mallory", "admin")
    bob = join(api, ada_key, "bob@acme.example", "Bob", "member")

    # Mallory tries to mint a management key in Ada's name: refused, and nothing is written.
    events = api.services.app.recorder.max_notification_id()
    for scopes in (["admin:write"], ["inference", "admin:read"], ["audit:read"]):
        body = {"name": "ada backup", "scopes": scopes, "user_id": ada_id}
        refused = api.call("POST", "/api/v1/keys", mallory["key"], json=body)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "only the 'inference' scope" in refused.json()["detail"]
    assert api.services.app.recorder.max_notification_id() == events

    # An inference key for Ada is allowed (an admin may provision keys), and it names Mallory as issuer.
    body = {"name": "ada inference", "scopes": ["inference"], "user_id": ada_id}
    minted = api.call("POST", "/api/v1/keys", mallory["key"], json=body)
    assert minted.status_code == 201, minted.text
    minted_id, minted_secret = minted.json()["id"], minted.json()["secret"]
    # Bob issues his own key: he is its issuer; Ada's signup key has no issuer (the platform minted it).
    own = api.call("POST", "/api/v1/keys", bob["key"], json={"name": "laptop", "scopes": ["inference"]})
    assert own.status_code == 201
    listed = {k["id"]: k for k in api.call("GET", "/api/v1/keys?all_users=true", ada_key).json()}
    assert listed[minted_id]["issued_by"] == mallory["id"] and listed[minted_id]["user_id"] == ada_id
    assert listed[own.json()["id"]]["issued_by"] == bob["id"]
    assert listed[ada["api_key"]["id"]]["issued_by"] is None
    # Ada, reading only her own keys, sees the one Mallory minted for her and who did it.
    mine = api.call("GET", "/api/v1/keys", ada_key).json()
    assert {(k["id"], k["issued_by"]) for k in mine} >= {(minted_id, mallory["id"])}

    # Ada removes Mallory: the answer points her at what Mallory minted for others.
    removed = api.call("DELETE", f"/api/v1/users/{mallory['id']}?reason=left", ada_key)
    assert removed.status_code == 204
    review = f"/api/v1/keys?all_users=true&issued_by={mallory['id']}"
    assert removed.headers["link"] == f'<{review}>; rel="review"'

    # The key still works (it is Ada's) until Ada reviews the list and revokes it.
    assert str(api.services.authenticator.authenticate(minted_secret).user_id) == ada_id
    to_review = api.call("GET", review, ada_key).json()
    assert [(k["id"], k["status"]) for k in to_review] == [(minted_id, "active")]
    assert api.call("DELETE", f"/api/v1/keys/{minted_id}?reason=minted by Mallory", ada_key).status_code == 204
    with pytest.raises(CredentialsRejected, match="revoked"):
        api.services.authenticator.authenticate(minted_secret)
    assert [k["status"] for k in api.call("GET", review, ada_key).json()] == ["revoked"]

    # Removing Bob, who minted nothing for anyone else, needs no review.
    removed = api.call("DELETE", f"/api/v1/users/{bob['id']}", ada_key)
    assert removed.status_code == 204 and "link" not in removed.headers

    # A member filtering by issuer still sees only their own keys.
    carol = join(api, ada_key, "carol@acme.example", "Carol", "member")
    assert api.call("GET", f"/api/v1/keys?issued_by={mallory['id']}", carol["key"]).json() == []
