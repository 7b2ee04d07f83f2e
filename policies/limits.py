"""Rate limits per plan tier: how much one API key and one tenant may ask of the inference path.

Pure data and one lookup; the proxy enforces them in memory (``api/proxy/limits.py``).
Windows are sliding 60-second windows. A "generation" is one in-flight request to
``/v1/chat/completions`` or ``/v1/completions``, streaming or not: it holds a slot until it ends.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_S = 60.0  # requests/min and tokens/min are counted over the last 60 seconds


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Ceilings for one subject (an API key or a whole tenant)."""

    requests_per_minute: int
    tokens_per_minute: int  # prompt + completion tokens
    concurrent_streams: int  # in-flight generations, streaming or not


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """A tier: what each key may do, and what the tenant's keys may do together."""

    per_key: RateLimits
    per_tenant: RateLimits


PLAN_LIMITS: dict[str, PlanLimits] = {
    # Free: a single GPU box shared by a few people trying it out. 20 req/min per key is one
    # request every 3 s (interactive chat); 20k tokens/min is ~330 tok/s, above what one consumer
    # GPU decodes for a 7-8B model, so tokens only bind on long prompts. 2 concurrent per key
    # leaves room for one retry; 4 per tenant keeps a 4-slot box from queueing forever.
    "free": PlanLimits(
        per_key=RateLimits(requests_per_minute=20, tokens_per_minute=20_000, concurrent_streams=2),
        per_tenant=RateLimits(requests_per_minute=60, tokens_per_minute=60_000, concurrent_streams=4),
    ),
    # Team: a few GPU boxes for a department. 120 req/min per key fits agents and IDE plug-ins
    # (bursty, short); the tenant ceiling of 600 req/min and 16 concurrent matches ~2 boxes of
    # 8 batched slots each; 400k tokens/min ~ 6.6k tok/s, the batched throughput of those boxes.
    "team": PlanLimits(
        per_key=RateLimits(requests_per_minute=120, tokens_per_minute=100_000, concurrent_streams=8),
        per_tenant=RateLimits(requests_per_minute=600, tokens_per_minute=400_000, concurrent_streams=16),
    ),
    # Startup (billing issue 15, between Team and Enterprise in price): a growing product team with
    # several boxes. Per key as Team x2 (CI and agents fan out); the tenant ceiling of 2,000 req/min
    # and 64 concurrent matches ~4-8 boxes of 8-16 batched slots; 1.2M tokens/min ~ 20k tok/s.
    "startup": PlanLimits(
        per_key=RateLimits(requests_per_minute=300, tokens_per_minute=200_000, concurrent_streams=16),
        per_tenant=RateLimits(requests_per_minute=2_000, tokens_per_minute=1_200_000, concurrent_streams=64),
    ),
    # Enterprise: a fleet. Per-key ceilings only stop a runaway script (3,000 req/min = 50/s); the
    # tenant ceilings sit above what 8 H100-class boxes serve (64 concurrent, 64k tok/s at 64 streams
    # of ~1k tok/s in all per box), so the hardware, not the plan, is the limit.
    "enterprise": PlanLimits(
        per_key=RateLimits(requests_per_minute=3_000, tokens_per_minute=2_000_000, concurrent_streams=64),
        per_tenant=RateLimits(requests_per_minute=20_000, tokens_per_minute=4_000_000, concurrent_streams=512),
    ),
}

DEFAULT_PLAN = "team"  # the tier of a tenant without a plan of its own (until billing assigns plans)
FALLBACK_PLAN = "free"  # the tier an unknown plan name gets: the smallest (fail closed, not open)


# Paired agents (GPU boxes) a tenant may hold at once, per tier. Each agent is a NATS login with its
# own connection and subscriptions, so this caps what one tenant can ask of the shared NATS server
# (nats-server's config mode has no per-user connection limit; see deploy/nats/README.md).
# Free: one box and a spare while replacing it. Team: "a few GPU boxes for a department" with room
# to rotate credentials (pair the new one before revoking the old). Enterprise: a fleet, kept well
# under the few thousand users where one generated authorization file stops being practical.
MAX_AGENTS: dict[str, int] = {"free": 2, "team": 16, "startup": 64, "enterprise": 256}


def max_agents_for(plan: str) -> int:
    """Active agents a tenant on this plan may hold; an unknown plan gets the free tier's (fail closed)."""
    return MAX_AGENTS.get(plan, MAX_AGENTS[FALLBACK_PLAN])


def limits_for(plan: str) -> PlanLimits:
    """The limits of a plan; an unknown plan name gets the free tier (fail closed, not open)."""
    return PLAN_LIMITS.get(plan, PLAN_LIMITS[FALLBACK_PLAN])
