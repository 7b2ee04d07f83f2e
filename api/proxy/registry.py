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


@dataclass(frozen=True, slots=True)
class LiveAgent:
    """The last heartbeat of one agent and when it stops counting."""

    agent_id: str
    tenant_id: str
    models: tuple[ModelInfo, ...]
    expires_at: float
    first_seen: float


class AgentRegistry:
    """In-memory view of live agents, keyed by tenant; expiry is checked on read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self._clock = clock
        self._wall = wall
        self._agents: dict[str, dict[str, LiveAgent]] = {}

    def beat(self, tenant_id: str, heartbeat: Heartbeat) -> None:
        """Record a heartbeat; ``tenant_id`` comes from the subject, which NATS permissions vouch for."""
        agents = self._agents.setdefault(tenant_id, {})
        previous = agents.get(heartbeat.agent_id)
        agents[heartbeat.agent_id] = LiveAgent(
            agent_id=heartbeat.agent_id,
            tenant_id=tenant_id,
            models=heartbeat.models,
            expires_at=self._clock() + MISSED_BEATS * max(heartbeat.interval_s, 0.1),
            first_seen=previous.first_seen if previous else self._wall(),
        )

    def forget(self, tenant_id: str, agent_id: str) -> None:
        """Drop an agent at once (it was revoked)."""
        self._agents.get(tenant_id, {}).pop(agent_id, None)

    def prune(self) -> None:
        """Forget agents gone for long, and tenants with none left (the watchdog calls this)."""
        now = self._clock()
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
        now = self._clock()
        for agent_id in [a.agent_id for a in agents.values() if a.expires_at + FORGET_AFTER_S <= now]:
            del agents[agent_id]
        return [a for a in agents.values() if a.expires_at > now]

    def gone(self, tenant_id: str, agent_id: str) -> bool:
        """True when the agent was heard from but has now missed its heartbeats."""
        agent = self._agents.get(tenant_id, {}).get(agent_id)
        return agent is not None and agent.expires_at <= self._clock()

    def context_length(self, tenant_id: str, model: str) -> int | None:
        """The longest context the tenant's live agents announce for ``model`` (capped), or None."""
        lengths = [m.context_length for a in self.live(tenant_id) for m in a.models if m.id == model]
        return min(max(lengths), TOKEN_COUNT_CEILING) if lengths else None

    def models(self, tenant_id: str) -> dict[str, float]:
        """Model id -> when the first live agent serving it was first seen (unix seconds)."""
        served: dict[str, float] = {}
        for agent in self.live(tenant_id):
            for model in agent.models:
                seen = served.get(model.id)
                served[model.id] = agent.first_seen if seen is None else min(seen, agent.first_seen)
        return served
