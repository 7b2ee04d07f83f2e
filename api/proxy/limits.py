"""In-memory enforcement of the plan limits: sliding windows and concurrency slots, no database.

Each process enforces its own share; with N API processes behind a balancer a subject can get up to
N times its limit. That is the price of keeping the hot path free of network round trips.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from policies.limits import WINDOW_S, PlanLimits, RateLimits, limits_for

Clock = Callable[[], float]


class SlidingWindow:
    """Amounts recorded over the last ``window_s`` seconds; admits while the total is under ``limit``."""

    __slots__ = ("entries", "limit", "total", "window_s")

    def __init__(self, limit: int, window_s: float = WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        """Forget entries older than the window."""
        horizon = now - self.window_s
        entries = self.entries
        while entries and entries[0][0] <= horizon:
            self.total -= entries.popleft()[1]

    def used(self, now: float) -> int:
        """The total inside the window ending at ``now``."""
        self._expire(now)
        return self.total

    def retry_after(self, now: float, amount: int = 1) -> float:
        """Seconds until ``amount`` more fits under the limit (0.0 when it fits now)."""
        self._expire(now)
        excess = self.total + amount - self.limit
        if excess <= 0:
            return 0.0
        if amount > self.limit:
            return self.window_s
        for stamp, value in self.entries:
            excess -= value
            if excess <= 0:
                return stamp + self.window_s - now
        return self.window_s

    def add(self, now: float, amount: int) -> None:
        """Record ``amount`` at ``now`` (may exceed the limit: tokens are known only afterwards)."""
        if amount <= 0:
            return
        self._expire(now)
        self.entries.append((now, amount))
        self.total += amount


class Subject:
    """The counters of one key or one tenant."""

    __slots__ = ("in_flight", "limits", "requests", "tokens")

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self.requests = SlidingWindow(limits.requests_per_minute)
        self.tokens = SlidingWindow(limits.tokens_per_minute)
        self.in_flight = 0

    def refusal(self, now: float) -> tuple[str, float] | None:
        """Why a new generation may not start now, and when to retry; ``None`` when it may."""
        wait = self.requests.retry_after(now)
        if wait > 0:
            return f"requests per minute (limit {self.limits.requests_per_minute})", wait
        if self.tokens.used(now) >= self.limits.tokens_per_minute:
            return f"tokens per minute (limit {self.limits.tokens_per_minute})", self.tokens.retry_after(now, 0)
        if self.in_flight >= self.limits.concurrent_streams:
            return f"concurrent requests (limit {self.limits.concurrent_streams})", 1.0
        return None


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal: which limit, on what, and seconds to wait (rounded up for ``Retry-After``)."""

    scope: str  # "API key" or "organization"
    limit: str
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """The ``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class Grant:
    """A started generation's hold on its key's and tenant's counters; release exactly once."""

    __slots__ = ("_key", "_limiter", "_released", "_tenant")

    def __init__(self, limiter: Limiter, key: Subject, tenant: Subject) -> None:
        self._limiter = limiter
        self._key = key
        self._tenant = tenant
        self._released = False

    def release(self, tokens: int) -> None:
        """Free the slot and charge the tokens the generation used."""
        if self._released:
            return
        self._released = True
        now = self._limiter.clock()
        for subject in (self._key, self._tenant):
            subject.in_flight -= 1
            subject.tokens.add(now, tokens)


class Limiter:
    """Per-key and per-tenant limits of each caller's plan, enforced in this process's memory."""

    def __init__(self, clock: Clock = time.monotonic, plans: Callable[[str], PlanLimits] = limits_for) -> None:
        self.clock = clock
        self._plans = plans
        self._keys: dict[UUID, Subject] = {}
        self._tenants: dict[UUID, Subject] = {}

    def _subject(self, table: dict[UUID, Subject], ident: UUID, limits: RateLimits) -> Subject:
        """The counters of one subject, created on first use and re-limited when the plan changed."""
        subject = table.get(ident)
        if subject is None:
            subject = table[ident] = Subject(limits)
        elif subject.limits is not limits:
            subject.limits = limits
            subject.requests.limit = limits.requests_per_minute
            subject.tokens.limit = limits.tokens_per_minute
        return subject

    def admit(self, plan: str, tenant_id: UUID, key_id: UUID) -> Grant | Refused:
        """Start a generation if neither the key nor the tenant is over a limit."""
        limits = self._plans(plan)
        now = self.clock()
        key = self._subject(self._keys, key_id, limits.per_key)
        tenant = self._subject(self._tenants, tenant_id, limits.per_tenant)
        for scope, subject in (("API key", key), ("organization", tenant)):
            refusal = subject.refusal(now)
            if refusal is not None:
                return Refused(scope, refusal[0], refusal[1])
        for subject in (key, tenant):
            subject.requests.add(now, 1)
            subject.in_flight += 1
        return Grant(self, key, tenant)

    def prune(self) -> None:
        """Drop idle subjects so memory follows active callers, not every key ever seen."""
        now = self.clock()
        for table in (self._keys, self._tenants):
            idle = [
                i for i, s in table.items() if not s.in_flight and not s.requests.used(now) and not s.tokens.used(now)
            ]
            for ident in idle:
                del table[ident]
