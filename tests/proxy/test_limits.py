"""Property tests of the in-memory limits (sliding windows, concurrency) with an injected clock."""

from __future__ import annotations

import copy
import itertools
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from api.proxy.limits import Grant, Limiter, Refused, SlidingWindow
from policies.limits import PLAN_LIMITS, PlanLimits, RateLimits, limits_for

steps = st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.integers(1, 5)), max_size=200)


@given(limit=st.integers(1, 20), steps=steps)
def test_admitted_requests_never_exceed_the_limit_in_any_window(limit: int, steps: list[tuple[float, int]]) -> None:
    window = SlidingWindow(limit, 60.0)
    now, admitted = 0.0, []
    for dt, _ in steps:
        now += dt
        wait = window.retry_after(now)
        if wait == 0.0:
            window.add(now, 1)
            admitted.append(now)
        else:
            assert wait > 0
            probe = copy.deepcopy(window)  # looking ahead must not move the real window
            assert probe.retry_after(now + wait + 1e-9) == 0.0  # waiting as told is enough (float slack)
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + 60.0) <= limit


@given(limit=st.integers(1, 100), steps=steps)
def test_used_is_the_sum_of_the_last_window(limit: int, steps: list[tuple[float, int]]) -> None:
    window = SlidingWindow(limit, 60.0)
    now, added = 0.0, []
    for dt, amount in steps:
        now += dt
        window.add(now, amount)
        added.append((now, amount))
        assert window.used(now) == sum(a for t, a in added if t > now - 60.0)


def tiny(requests: int = 1000, tokens: int = 10**9, concurrent: int = 1000) -> PlanLimits:
    """A plan with chosen limits for both key and tenant."""
    limits = RateLimits(requests, tokens, concurrent)
    return PlanLimits(per_key=limits, per_tenant=limits)


@given(concurrent=st.integers(1, 5), ops=st.lists(st.booleans(), max_size=100))
def test_concurrency_never_exceeds_and_release_frees(concurrent: int, ops: list[bool]) -> None:
    limiter = Limiter(clock=lambda: 0.0, plans=lambda _: tiny(concurrent=concurrent))
    tenant, key, held = uuid4(), uuid4(), []
    for start in ops:
        if start:
            grant = limiter.admit("p", tenant, key)
            if len(held) < concurrent:
                assert isinstance(grant, Grant)
                held.append(grant)
            else:
                assert isinstance(grant, Refused) and grant.retry_after_header == "1"
        elif held:
            grant = held.pop()
            grant.release(0)
            grant.release(0)  # releasing twice frees one slot only
    assert len(held) <= concurrent


def test_tokens_per_minute_refuses_until_the_window_moves() -> None:
    now = [0.0]
    limiter = Limiter(clock=lambda: now[0], plans=lambda _: tiny(tokens=100))
    tenant, key = uuid4(), uuid4()
    grant = limiter.admit("p", tenant, key)
    assert isinstance(grant, Grant)
    now[0] = 10.0
    grant.release(150)
    refused = limiter.admit("p", tenant, key)
    assert isinstance(refused, Refused) and "tokens" in refused.limit
    assert refused.retry_after_s == 60.0 and refused.retry_after_header == "60"
    now[0] = 70.0
    assert isinstance(limiter.admit("p", tenant, key), Grant)


def test_tenant_limit_binds_across_keys() -> None:
    plan = PlanLimits(per_key=RateLimits(10, 10**6, 10), per_tenant=RateLimits(3, 10**6, 10))
    limiter = Limiter(clock=lambda: 0.0, plans=lambda _: plan)
    tenant = uuid4()
    results = [limiter.admit("p", tenant, uuid4()) for _ in range(4)]
    assert [isinstance(r, Grant) for r in results] == [True, True, True, False]
    assert isinstance(results[3], Refused) and results[3].scope == "organization"


def test_unknown_plan_gets_the_free_tier_and_tiers_grow() -> None:
    assert limits_for("no-such-plan") is PLAN_LIMITS["free"]
    tiers = [PLAN_LIMITS[name] for name in ("free", "team", "enterprise")]
    for lower, higher in itertools.pairwise(tiers):
        assert lower.per_key.requests_per_minute < higher.per_key.requests_per_minute
        assert lower.per_tenant.concurrent_streams < higher.per_tenant.concurrent_streams
