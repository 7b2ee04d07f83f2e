"""A tenant's story with model licences (terms §9): nothing is served until an admin accepts its licence.

Through the real app (both APIs, a real nats-server, the real directory and authenticator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.embedded_nats import EmbeddedNats
from api.services import Services, build_services
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from domain.errors import InvalidState, InvalidValue
from domain.model_licence import ModelLicence
from tests.support.terms import TERMS

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def whole_app(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient[Any], Services]]:
    nats = EmbeddedNats(make_settings(inference=True)).start()
    services = build_services(nats.settings_for_proxy())
    try:
        with TestClient(create_app(services.settings, services)) as client:
            yield client, services
    finally:
        services.close()
        nats.stop()


def signup(client: TestClient[Any], slug: str) -> tuple[UUID, dict[str, str]]:
    body = {
        "slug": slug,
        "name": slug.title(),
        "admin_name": "Admin",
        "admin_email": "admin@example.com",
        "accept_terms": TERMS,
    }
    created = client.post("/api/v1/tenants", json=body)
    assert created.status_code == 201, created.text
    auth = {"Authorization": f"Bearer {created.json()['api_key']['secret']}"}
    return UUID(created.json()["tenant"]["id"]), auth


def chat(client: TestClient[Any], auth: dict[str, str], model: str) -> Any:
    return client.post(
        "/v1/chat/completions", headers=auth, json={"model": model, "messages": [{"role": "user", "content": "x"}]}
    )


@pytest.mark.parametrize("persistence", ["sqlite", "postgres"])
def test_a_model_is_served_only_after_an_admin_accepts_its_licence(whole_app: tuple[TestClient[Any], Services]):
    client, _ = whole_app
    _, admin = signup(client, "acme")
    _, other = signup(client, "globex")

    refused = chat(client, admin, LLAMA)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "model_licence_not_accepted" and error["type"] == "permission_error"
    assert "Llama 3 Community License" in error["message"] and '"key": "llama-3"' in error["message"]

    listing = {row["key"]: row for row in client.get("/api/v1/licences", headers=admin).json()}
    assert listing["llama-3"]["accepted"] is False and listing["llama-3"]["commercial_mau_limit"] == 700_000_000

    accepted = client.post("/api/v1/licences", headers=admin, json={"model": LLAMA})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["key"] == "llama-3"
    passed = chat(client, admin, LLAMA)  # past the gate: no agent serves it here, so 503, not 403
    assert passed.status_code == 503 and passed.json()["error"]["code"] != "model_licence_not_accepted"
    assert chat(client, admin, "Llama-3.3-70B-Instruct").status_code == 503  # the whole family is accepted
    assert chat(client, other, LLAMA).status_code == 403  # another tenant's acceptance is not this one's

    again = client.post("/api/v1/licences", headers=admin, json={"key": "llama-3"})
    assert again.status_code == 409
    assert client.delete("/api/v1/licences/llama-3", headers=admin).status_code == 204
    assert chat(client, admin, LLAMA).status_code == 403  # withdrawn: refused from the next request on
    assert client.post("/api/v1/licences", headers=admin, json={"key": "llama-3"}).status_code == 201
    assert chat(client, admin, LLAMA).status_code == 503


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_a_model_nobody_knows_is_404_and_an_unlisted_one_needs_an_acknowledgement(
    whole_app: tuple[TestClient[Any], Services],
):
    client, _ = whole_app
    _, admin = signup(client, "acme")
    unknown = chat(client, admin, "my-own-finetune")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"

    refused = client.post("/api/v1/licences", headers=admin, json={"model": "my-own-finetune"})
    assert refused.status_code == 422 and "acknowledge_unlisted" in refused.text
    ack = client.post(
        "/api/v1/licences", headers=admin, json={"model": "my-own-finetune", "acknowledge_unlisted": True}
    )
    assert ack.status_code == 201 and ack.json()["key"] == "unlisted:my-own-finetune"
    assert chat(client, admin, "my-own-finetune").status_code == 503  # acknowledged: it waits for an agent
    keys = [row["key"] for row in client.get("/api/v1/licences", headers=admin).json()]
    assert keys[-1] == "unlisted:my-own-finetune"


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_only_admins_accept_and_bad_requests_are_clear(whole_app: tuple[TestClient[Any], Services]):
    client, _ = whole_app
    _, admin = signup(client, "acme")
    member_key = client.post("/api/v1/keys", headers=admin, json={"name": "inference only", "scopes": ["inference"]})
    member = {"Authorization": f"Bearer {member_key.json()['secret']}"}
    assert client.post("/api/v1/licences", headers=member, json={"key": "llama-3"}).status_code == 403
    for body in ({}, {"key": "llama-3", "model": LLAMA}, {"key": "nope"}, {"model": "x" * 300}, {"kee": "llama-3"}):
        answer = client.post("/api/v1/licences", headers=admin, json=body)
        assert answer.status_code in (400, 404, 422), (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert client.delete("/api/v1/licences/llama-3", headers=admin).status_code in (404, 409)


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_the_acceptance_is_an_event_with_who_and_which_licence(whole_app: tuple[TestClient[Any], Services]):
    client, services = whole_app
    tenant, admin = signup(client, "acme")
    client.post("/api/v1/licences", headers=admin, json={"model": "Qwen2.5-72B-Instruct"})
    licence_id = ModelLicence.create_id(tenant, "qwen-licence")
    (accepted,) = services.app.events.get(licence_id)
    assert isinstance(accepted, ModelLicence.Accepted)
    assert accepted.licence == "Qwen License Agreement" and accepted.tenant_id == tenant
    assert accepted.actor.startswith("key:") and accepted.request_id
    ctx = Ctx(SYSTEM, tenant, "test")
    services.app.withdraw_model_licence(ctx, "qwen-licence")
    with pytest.raises(InvalidState):
        services.app.withdraw_model_licence(ctx, "qwen-licence")
    with pytest.raises(InvalidValue):
        services.app.accept_model_licence(ctx, model="")


def test_an_agent_cannot_relabel_a_models_licence_and_made_up_ids_do_not_grow_memory():
    from uuid import uuid4

    from api.proxy.licences import LicenceGate
    from legal import catalogue

    tenant = uuid4()
    gate = LicenceGate(catalogue.bundled(), lambda _t: frozenset({"llama-3"}))
    honest = gate.describe(tenant, LLAMA, {"llama3.1"})
    relabelled = gate.describe(tenant, LLAMA, {"llama3.1", "apache-2.0"})
    assert honest.accepted and honest.announced_agrees
    assert relabelled.name.startswith("Llama 3") and not relabelled.announced_agrees
    for i in range(5000):
        gate.key_of(f"made-up-{i}")
    assert len(gate._keys) <= 4096
