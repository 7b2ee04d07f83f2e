"""Refused requests are counted, not recorded one event each (issue 13): a flood writes nothing per request."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from api.proxy.limits import Limiter
from policies.limits import PlanLimits, RateLimits
from tests.proxy.conftest import TENANT_A, Stack

X = [{"role": "user", "content": "x"}]


def client(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0)


def test_a_flood_of_permission_refusals_is_counted_not_recorded(stack: Stack) -> None:
    secret, principal = stack.keys.issue(scopes=frozenset({"admin"}))  # no inference scope: 403
    before = stack.gateway.usage.rejections.counted(TENANT_A)
    for _ in range(50):
        with pytest.raises(openai.PermissionDeniedError):
            client(stack, secret).chat.completions.create(model="echo", messages=X)
    time.sleep(0.2)  # the writer drains every 20 ms: a per-request record would be there by now
    assert [r for r in stack.usage.records if r["key_id"] == principal.key_id] == []
    assert stack.gateway.usage.rejections.counted(TENANT_A) - before == 50  # the next tally records them


def test_unauthenticated_requests_are_counted_in_the_metrics_only(stack: Stack) -> None:
    totals = stack.gateway.usage.rejections.totals
    before, records = totals[(401, "invalid_api_key")], len(stack.usage.records)
    for _ in range(30):
        with pytest.raises(openai.AuthenticationError):
            client(stack, "sk-wrong").chat.completions.create(model="echo", messages=X)
    assert totals[(401, "invalid_api_key")] - before == 30
    time.sleep(0.2)
    assert len(stack.usage.records) == records


def test_a_flood_of_malformed_bodies_meets_the_rate_limit_before_the_parser(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = RateLimits(requests_per_minute=5, tokens_per_minute=10**9, concurrent_streams=100)
    monkeypatch.setattr(
        stack.gateway, "limiter", Limiter(plans=lambda _: PlanLimits(per_key=limits, per_tenant=limits))
    )
    secret, principal = stack.keys.issue()
    statuses = [
        httpx.post(stack.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                   json={"model": "echo", "messages": "not a list"}).status_code
        for _ in range(40)
    ]  # fmt: skip
    assert statuses == [400] * 5 + [429] * 35
    time.sleep(0.2)
    assert len([r for r in stack.usage.records if r["key_id"] == principal.key_id]) == 5  # not 40
