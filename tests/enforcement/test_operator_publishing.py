"""The operator publishes new terms and new token prices through its own API, with the notice each needs."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from tests.enforcement.test_operator_api import operator_token
from tests.support.api_client import Api


def test_the_operator_announces_prices_with_notice_and_only_with_its_own_token(api: Api) -> None:
    admin = api.signup("acme")["api_key"]["secret"]
    op = operator_token(api)
    early = {"model": "echo", "input_per_million": 50_000_000, "output_per_million": 150_000_000,
             "effective_at": (api.clock.now + timedelta(days=29)).isoformat()}  # fmt: skip
    refused = api.call("POST", "/api/v1/operator/prices", op, json=early)
    assert refused.status_code in (409, 422) and "notice" in refused.text.lower(), refused.text
    on_time = {**early, "effective_at": (api.clock.now + timedelta(days=31)).isoformat()}
    assert api.call("POST", "/api/v1/operator/prices", admin, json=on_time).status_code == 401  # a tenant key
    scheduled = api.call("POST", "/api/v1/operator/prices", op, json=on_time)
    assert scheduled.status_code == 201 and scheduled.json()["model"] == "echo", scheduled.text
    bad = api.call("POST", "/api/v1/operator/prices", op, json={**on_time, "input_per_million": 0.5})
    assert bad.status_code == 422  # integers only: money is never a float


def test_the_operator_publishes_a_document_once(api: Api) -> None:
    op = operator_token(api)
    first = api.call("POST", "/api/v1/operator/publications", op, json={"ref": "privacy-1"})
    assert first.status_code == 201 and first.json()["ref"] == "privacy-1", first.text
    assert api.call("POST", "/api/v1/operator/publications", op, json={"ref": "privacy-1"}).status_code == 409
    assert api.call("POST", "/api/v1/operator/publications", op, json={"ref": "terms-9"}).status_code == 404
    listed = {d["ref"]: d for d in api.call("GET", "/api/v1/legal").json()}
    assert listed["privacy-1"]["published_at"] is not None


def test_the_operator_puts_a_tenant_on_prepaid_credits(api: Api) -> None:
    tenant = api.signup("acme")["tenant"]["id"]
    op = operator_token(api)
    path = f"/api/v1/operator/tenants/{tenant}/billing-mode"
    assert api.call("PUT", path, op, json={"mode": "credits"}).status_code == 200
    assert api.call("PUT", path, op, json={"mode": "barter"}).status_code == 422
    ledger = api.services.app.credit_ledger(UUID(tenant))
    assert ledger is not None and ledger.mode == "credits"
