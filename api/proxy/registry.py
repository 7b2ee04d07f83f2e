"""Live agents, as heard in heartbeats: what each tenant's agents serve right now."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.protocol import Heartbeat, ModelInfo

# Token counts come from agents, which are untrusted (issue 13). The proxy bounds every count by the
# context length the agents announce for the model, itself capped here; when no live agent
# announces one (its heartbeats stopped mid-job) this cap is the bound. 2**21 (2,097,152) tokens
# is above the longest context any model offers today and far below the usage view's limits.
TOKEN_COUNT_CEILING = 2**21
MISSED_BEATS = 3  # an agent silent for this many of its intervals is gone
FORGET_AFTER_S = 3600.0  # how long a gone agent is remembered as gone (to fail its jobs)
# Heartbeats are untrusted too (issue 13). An announced interval is clamped to this range: a long one
# would keep a dead agent "live" for hours; a short one only shortens the agent's own grace.
INTERVAL_RANGE_S = (0.2, 60.0)
MAX_AGENTS_PER_TENANT = 256  # live agents tracked per tenant; beats of more new ones are refused
# How far behind its heartbeats the proxy may fall (a flood it reads through) before silence counts
# against agents anyway; see ``AgentRegistry.heard_until``.
MAX_LAG_S = 30.0


def clamp_interval(interval_s: float) -> float:
    """An announced heartbeat interval within ``INTERVAL_RANGE_S`` (NaN counts as the shortest)."""
    low, high = INTERVAL_RANGE_S
    if interval_s >= high:
        return high
    return interval_s if interval_s >= low else low


def announced_load(heartbeat: Heartbeat) -> float:
    """Jobs running and queued per slot, from what the agent announced (negative counts read as none)."""
    return (max(0, heartbeat.in_flight) + max(0, heartbeat.queued)) / max(1, heartbeat.capacity)


@dataclass(frozen=True, slots=True)
class LiveAgent:
    """The last heartbeat of one agent and when it stops counting."""

    agent_id: str
    tenant_id: str
    models: tuple[ModelInfo, ...]
    expires_at: float
    first_seen: float
    load: float = 0.0  # jobs running and queued per slot at its last beat (as it said: a hint, not a bound)


class AgentRegistry:
    """In-memory view of live agents, keyed by tenant; expiry is checked on read.

    Silence is judged against how far the proxy has read, not the wall clock: when one agent's flood
    puts the proxy seconds behind on its NATS connection, the others' heartbeats are late, not missing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.clock = clock
        self._wall = wall
        self._agents: dict[str, dict[str, LiveAgent]] = {}
        self._heard: float | None = None  # None: no tick heard yet, judge by the clock alone

    def heard_until(self, stamp: float) -> None:
        """Every heartbeat that reached NATS before ``stamp`` (on ``clock``) has been read.

        The transport learns this from a tick it published at ``stamp`` and has now received:
        NATS delivers to one connection in order, so whatever was published before it came first.
        """
        if self._heard is None or stamp > self._heard:
            self._heard = stamp

    def _now(self) -> float:
        """The time silence is judged at: the clock, held back to what was heard (at most ``MAX_LAG_S``)."""
        now = self.clock()
        heard = self._heard
        if heard is None or heard >= now:
            return now
        return max(heard, now - MAX_LAG_S)

    def beat(self, tenant_id: str, heartbeat: Heartbeat) -> bool:
        """Record a heartbeat; False when the tenant already has ``MAX_AGENTS_PER_TENANT`` live agents.

        ``tenant_id`` comes from the subject, which NATS permissions vouch for.
        """
        agents = self._agents.get(tenant_id)
        if agents is None:
            agents = self._agents[tenant_id] = {}
        previous = agents.get(heartbeat.agent_id)
        if previous is None and len(agents) >= MAX_AGENTS_PER_TENANT and not self._make_room(agents):
            return False
        agents[heartbeat.agent_id] = LiveAgent(
            agent_id=heartbeat.agent_id,
            tenant_id=tenant_id,
            models=heartbeat.models,
            expires_at=self.clock() + MISSED_BEATS * clamp_interval(heartbeat.interval_s),
            first_seen=previous.first_seen if previous else self._wall(),
            load=announced_load(heartbeat),
        )
        return True

    def _make_room(self, agents: dict[str, LiveAgent]) -> bool:
        """Forget a full tenant's gone agents (their jobs then wait for the timeout); True if room was made."""
        now = self._now()
        for agent_id in [a.agent_id for a in agents.values() if a.expires_at <= now]:
            del agents[agent_id]
        return len(agents) < MAX_AGENTS_PER_TENANT

    def forget(self, tenant_id: str, agent_id: str) -> None:
        """Drop an agent at once (it was revoked)."""
        self._agents.get(tenant_id, {}).pop(agent_id, None)

    def prune(self) -> None:
        """Forget agents gone for long, and tenants with none left (the watchdog calls this)."""
        now = self._now()
        for tenant_id, agents in list(self._agents.items()):
            for agent_id in [a.agent_id for a in agents.values() if a.expires_at + FORGET_AFTER_S <= now]:
                del agents[agent_id]
            if not agents:
                del self._agents[tenant_id]

    def live(self, tenant_id: str) -> list[LiveAgent]:
        """The tenant's agents heard from recently (long-gone ones are forgotten here)."""
        agents = self._agents.get(tenant_id)
        if not agents:
            return []
        now = self._now()
        for agent_id in [a.agent_id for a in agents.values() if a.expires_at + FORGET_AFTER_S <= now]:
            del agents[agent_id]
        return [a for a in agents.values() if a.expires_at > now]

    def gone(self, tenant_id: str, agent_id: str) -> bool:
        """True when the agent was heard from but has now missed its heartbeats."""
        agent = self._agents.get(tenant_id, {}).get(agent_id)
        return agent is not None and agent.expires_at <= self._now()

    def context_length(self, tenant_id: str, model: str) -> int | None:
        """The longest context the tenant's live agents announce for ``model`` (capped), or None."""
        lengths = [m.context_length for a in self.live(tenant_id) for m in a.models if m.id == model]
        return min(max(lengths), TOKEN_COUNT_CEILING) if lengths else None

    def announced_licences(self, tenant_id: str, model: str) -> set[str]:
        """The licence ids the tenant's live agents announce for ``model`` (a claim, checked by the gate)."""
        return {m.licence for a in self.live(tenant_id) for m in a.models if m.id == model and m.licence}

    def models(self, tenant_id: str) -> dict[str, float]:
        """Model id -> when the first live agent serving it was first seen (unix seconds)."""
        served: dict[str, float] = {}
        for agent in self.live(tenant_id):
            for model in agent.models:
                seen = served.get(model.id)
                served[model.id] = agent.first_seen if seen is None else min(seen, agent.first_seen)
        return served
