"""Time runs out: listings say so, and a lapsed invite no longer blocks inviting the same person again."""

from __future__ import annotations

from datetime import timedelta

from tests.support.api_client import Api


def test_lapsed_invites_keys_and_pairing_keys_read_expired_and_free_the_email(api: Api) -> None:
    admin = api.signup("clockwork")["api_key"]["secret"]
    first = api.call("POST", "/api/v1/invites", admin, json={"email": "bob@clockwork.example", "role": "member"})
    assert first.status_code == 201, first.text
    again = api.call("POST", "/api/v1/invites", admin, json={"email": "bob@clockwork.example", "role": "member"})
    assert again.status_code == 409  # an open invite holds the address...
    tomorrow = (api.clock.now + timedelta(days=1)).isoformat()
    key = api.call(
        "POST", "/api/v1/keys", admin, json={"name": "short", "scopes": ["inference"], "expires_at": tomorrow}
    )
    assert key.status_code == 201, key.text
    assert api.call("POST", "/api/v1/pairing-keys", admin).status_code == 201

    api.clock.advance(days=7, seconds=1)
    assert [i["status"] for i in api.call("GET", "/api/v1/invites", admin).json()] == ["expired"]
    assert [p["status"] for p in api.call("GET", "/api/v1/pairing-keys", admin).json()] == ["expired"]
    statuses = {k["name"]: k["status"] for k in api.call("GET", "/api/v1/keys", admin).json()}
    assert statuses == {"signup admin key": "active", "short": "expired"}
    assert api.call("GET", "/api/v1/me", key.json()["secret"]).status_code == 401  # what the listing says is so

    late = api.call("POST", "/api/v1/invites/accept", json={"token": first.json()["token"], "name": "Bob"})
    assert late.status_code == 410
    renewed = api.call("POST", "/api/v1/invites", admin, json={"email": "bob@clockwork.example", "role": "member"})
    assert renewed.status_code == 201, renewed.text  # ...until it lapses
    joined = api.call("POST", "/api/v1/invites/accept", json={"token": renewed.json()["token"], "name": "Bob"})
    assert joined.status_code == 201, joined.text
    assert sorted(i["status"] for i in api.call("GET", "/api/v1/invites", admin).json()) == ["accepted", "expired"]
