"""The key-sharing detector: per key, the distinct networks and user agents seen within the window (terms §3).

In memory, per process: each key keeps at most ``max + 1`` networks and user agents with when each was
last seen, forgotten once older than the window, so addresses are held only as long as the window
needs and never written anywhere in clear. Crossing a limit reports the key once per window; the
report is sealed with the key owner's subject key when recorded (``OwnLLM.report_key_sharing``).
Each API process judges its own traffic: behind a load balancer that spreads one key over N
processes, a key is flagged once some process alone sees more than the limit (documented bound).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from policies.sharing import DEFAULT_LIMITS, SharingLimits, network_of, suspicious

MAX_USER_AGENT = 200  # characters of a User-Agent that count; the rest cannot make it distinct


@dataclass(frozen=True, slots=True)
class Sighting:
    """What a report carries: the networks seen (personal data: sealed when recorded) and the counts."""

    key_id: UUID
    networks: tuple[str, ...]
    user_agents: int


@dataclass(slots=True)
class _Seen:
    networks: dict[str, float] = field(default_factory=dict)
    agents: dict[int, float] = field(default_factory=dict)
    reported_at: float = float("-inf")
    last: tuple[str, str] = ("", "")  # the last (address, user agent): most requests repeat it
    last_keys: tuple[str, int] = ("", 0)  # its network and user-agent hash


class SharingDetector:
    """``observe`` once per authenticated inference request; ``report`` runs when a key crosses a limit."""

    def __init__(
        self,
        report: Callable[[Sighting], object],
        limits: SharingLimits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.report = report
        self.limits = limits
        self.clock = clock
        self.window_s = limits.window.total_seconds()
        self._keys: dict[UUID, _Seen] = {}

    def observe(self, key_id: UUID, address: str, user_agent: str) -> None:
        """One request of ``key_id`` from ``address`` with ``user_agent``."""
        now = self.clock()
        seen = self._keys.get(key_id)
        if seen is None:
            seen = self._keys[key_id] = _Seen()
        if seen.last == (address, user_agent) and seen.last_keys[0] in seen.networks:
            network, agent = seen.last_keys
            seen.networks[network] = now
            seen.agents[agent] = now
            return
        network = network_of(address)
        agent = hash(user_agent[:MAX_USER_AGENT])  # only counted, never shown: a salted in-process hash
        seen.last, seen.last_keys = (address, user_agent), (network, agent)
        known = network in seen.networks and agent in seen.agents
        if network:
            seen.networks[network] = now
        seen.agents[agent] = now
        if known:
            return
        self._forget_old(seen, now)
        if len(seen.networks) > self.limits.max_networks + 1:
            del seen.networks[min(seen.networks, key=seen.networks.__getitem__)]
        if len(seen.agents) > self.limits.max_user_agents + 1:
            del seen.agents[min(seen.agents, key=seen.agents.__getitem__)]
        if suspicious(len(seen.networks), len(seen.agents), self.limits) and now - seen.reported_at >= self.window_s:
            seen.reported_at = now
            self.report(Sighting(key_id, tuple(sorted(seen.networks)), len(seen.agents)))

    def prune(self) -> None:
        """Forget what is older than the window, and keys with nothing left (called about once a minute)."""
        now = self.clock()
        for key_id in list(self._keys):
            seen = self._keys[key_id]
            self._forget_old(seen, now)
            if not seen.networks and not seen.agents and now - seen.reported_at >= self.window_s:
                del self._keys[key_id]

    def _forget_old(self, seen: _Seen, now: float) -> None:
        horizon = now - self.window_s
        seen.networks = {k: at for k, at in seen.networks.items() if at >= horizon}
        seen.agents = {k: at for k, at in seen.agents.items() if at >= horizon}
