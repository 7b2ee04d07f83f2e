"""A suspended tenant's keys stop at once on /api/v1 and /v1, through the real authenticator and directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.embedded_nats import EmbeddedNats
from api.services import Services, build_services
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from tests.support.terms import TERMS

CHAT = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
def whole_app(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient[Any], Services]]:
    """The real app with both /api/v1 and the /v1 proxy (a real nats-server, no agent needed)."""
    nats = EmbeddedNats(make_settings(inference=True)).start()
    services = build_services(nats.settings_for_proxy())
    try:
        with TestClient(create_app(services.settings, services)) as client:
            yield client, services
    finally:
        services.close()
        nats.stop()


def signup(client: TestClient[Any], slug: str) -> tuple[UUID, str]:
    body = {
        "slug": slug,
        "name": slug.title(),
        "admin_name": "Admin",
        "admin_email": "admin@example.com",
        "accept_terms": TERMS,
    }
    created = client.post("/api/v1/tenants", json=body)
    assert created.status_code == 201, created.text
    return UUID(created.json()["tenant"]["id"]), created.json()["api_key"]["secret"]


def calls(client: TestClient[Any], secret: str) -> dict[str, httpx.Response]:
    auth = {"Authorization": f"Bearer {secret}"}
    return {
        "/api/v1/me": client.get("/api/v1/me", headers=auth),
        "/api/v1/keys": client.post("/api/v1/keys", headers=auth, json={"name": "more", "scopes": ["inference"]}),
        "/v1/models": client.get("/v1/models", headers=auth),
        "/v1/chat/completions": client.post("/v1/chat/completions", headers=auth, json=CHAT),
    }


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_a_suspended_tenants_keys_are_refused_on_both_apis(whole_app: tuple[TestClient[Any], Services]) -> None:
    client, services = whole_app
    tenant, secret = signup(client, "lapsed")
    _, bystander = signup(client, "paying")
    before = calls(client, secret)
    assert before["/api/v1/me"].status_code == 200 and before["/v1/models"].status_code == 200

    services.command(services.app.suspend_tenant, Ctx(SYSTEM, tenant, "test"), "invoice unpaid")
    refused = calls(client, secret)
    for path in ("/api/v1/me", "/api/v1/keys"):
        assert refused[path].status_code == 403, (path, refused[path].text)
        assert refused[path].headers["content-type"].startswith("application/problem+json")
        assert refused[path].json()["status"] == 403
    for path in ("/v1/models", "/v1/chat/completions"):
        assert refused[path].status_code == 403, (path, refused[path].text)
        assert refused[path].json()["error"]["code"] == "tenant_suspended"
    others = calls(client, bystander)  # another tenant goes on (nothing knows "echo": the chat is 404, not 403)
    assert [r.status_code for r in others.values()] == [200, 201, 200, 404]

    services.command(services.app.reinstate_tenant, Ctx(SYSTEM, tenant, "test"), "paid")
    again = calls(client, secret)
    assert again["/api/v1/me"].status_code == 200 and again["/v1/models"].status_code == 200
