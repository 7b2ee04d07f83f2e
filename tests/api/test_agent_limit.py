"""A tenant may hold only as many active agents as its plan allows; pairing beyond that is a 409."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings
from policies.limits import FALLBACK_PLAN, MAX_AGENTS, PLAN_LIMITS, max_agents_for
from tests.support.api_client import Api
from tests.support.clock import ManualClock


@pytest.fixture
def free_api(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Api]:
    """The API of a platform whose tenants default to the free plan (2 agents)."""
    services: Services = build_services(make_settings(default_plan="free"), clock=clock)
    app: Litestar = create_app(services.settings, services)
    with TestClient(app) as client:
        yield Api(client, services, clock)
    services.close()


def pair(api: Api, admin: str, name: str) -> tuple[int, dict[str, Any], str]:
    """Issue a pairing key and redeem it: the answer's status and body, and the key's id."""
    issued = api.call("POST", "/api/v1/pairing-keys", admin).json()
    answer = api.call("POST", "/api/v1/agents/pair", json={"pairing_key": issued["secret"], "name": name})
    return answer.status_code, answer.json(), issued["id"]


def test_pairing_beyond_the_plan_is_refused_until_an_agent_is_revoked(free_api: Api) -> None:
    admin = free_api.signup("capped")["api_key"]["secret"]
    first = [pair(free_api, admin, f"gpu-{i}") for i in range(MAX_AGENTS["free"])]
    assert [status for status, _, _ in first] == [201, 201]

    status, body, key_id = pair(free_api, admin, "gpu-extra")
    assert status == 409
    assert body["type"].endswith("/agent-limit-reached") and "free" in body["detail"]
    keys = {k["id"]: k["status"] for k in free_api.call("GET", "/api/v1/pairing-keys", admin).json()}
    assert keys[key_id] == "open", "a refused pairing must not use up the key"

    agent_id = first[0][1]["agent_id"]
    assert free_api.call("DELETE", f"/api/v1/agents/{agent_id}", admin).status_code == 204
    assert pair(free_api, admin, "gpu-replacement")[0] == 201


def test_the_cap_is_per_tenant(free_api: Api) -> None:
    crowded = free_api.signup("crowded")["api_key"]["secret"]
    for i in range(MAX_AGENTS["free"]):
        assert pair(free_api, crowded, f"gpu-{i}")[0] == 201
    other = free_api.signup("roomy")["api_key"]["secret"]
    assert pair(free_api, other, "gpu-0")[0] == 201


@given(st.text(max_size=20))
def test_every_plan_name_gets_a_cap_and_unknown_ones_the_smallest(plan: str) -> None:
    expected = MAX_AGENTS[plan] if plan in MAX_AGENTS else MAX_AGENTS[FALLBACK_PLAN]
    assert max_agents_for(plan) == expected >= 1
    assert max_agents_for(plan) <= max(MAX_AGENTS.values())


def test_every_rate_plan_has_an_agent_cap_growing_with_the_tier() -> None:
    assert set(MAX_AGENTS) == set(PLAN_LIMITS)
    assert MAX_AGENTS["free"] < MAX_AGENTS["team"] < MAX_AGENTS["enterprise"]
