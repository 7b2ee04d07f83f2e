"""Refused requests are counted in memory, never recorded one event each (issue 13).

A flood of 401/403/429 must not become a flood of event-store writes: the proxy counts a refused
request of a known tenant per (tenant, user, key, reason) and the usage writer records one tally
per tenant per interval. A request refused before its key was known (401, a suspended tenant's
403 at authentication) has no tenant to bill or show it to: it is counted in :attr:`totals` only
(the process's metrics). The number of counters is bounded: past the bound, a new (user, key) of a
tenant falls into that tenant's unattributed counter; past twice the bound, only the metrics count it.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

# Refusals tallied instead of recorded one by one: authentication, permission and rate limits.
TALLIED_STATUSES = frozenset({401, 403, 429})
UNKNOWN = "00000000-0000-0000-0000-000000000000"  # the user and key of a tally entry over the bound


class RejectionCounter:
    """Counters of refused requests; :meth:`drain` turns them into one tally per tenant."""

    def __init__(self, max_counters: int = 10_000) -> None:
        self.max_counters = max_counters
        self._counts: Counter[tuple[UUID, str, str, str]] = Counter()
        self._lock = threading.Lock()  # counted on the event loop, drained by the writer thread
        self.totals: Counter[tuple[int, str]] = Counter()  # (status, reason) over the process's life
        self.uncounted = 0  # refusals only the metrics saw, past every bound

    def count(
        self, status: int, reason: str, tenant_id: UUID | None, user_id: UUID | None, key_id: UUID | None
    ) -> None:
        """Count one refused request; without a tenant, in the metrics only."""
        self.totals[(status, reason)] += 1
        if tenant_id is None:
            return
        label = f"{status} {reason}"
        entry = (tenant_id, str(user_id or UNKNOWN), str(key_id or UNKNOWN), label)
        with self._lock:
            counts = self._counts
            if entry not in counts and len(counts) >= self.max_counters:
                entry = (tenant_id, UNKNOWN, UNKNOWN, label)
                if entry not in counts and len(counts) >= 2 * self.max_counters:
                    self.uncounted += 1
                    return
            counts[entry] += 1

    def counted(self, tenant_id: UUID) -> int:
        """A tenant's refusals counted since the last tally."""
        with self._lock:
            return sum(n for (tenant, *_), n in self._counts.items() if tenant == tenant_id)

    def pending(self) -> int:
        """How many counters wait for the next tally."""
        return len(self._counts)

    def drain(self, tally_prefix: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """One tally record per tenant for the interval, and reset the counters."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        by_tenant: dict[UUID, list[dict[str, Any]]] = {}
        for (tenant_id, user_id, key_id, reason), count in counts.items():
            entry = {"user_id": user_id, "key_id": key_id, "reason": reason, "count": count}
            by_tenant.setdefault(tenant_id, []).append(entry)
        return [
            {"tally_id": f"{tally_prefix}:{tenant_id}", "tenant_id": str(tenant_id), "since": since.isoformat(),
             "until": until.isoformat(), "counts": entries}
            for tenant_id, entries in by_tenant.items()
        ]  # fmt: skip


class TallySchedule:
    """When, and under which ids, the refusal counters become tally records (one per tenant per interval)."""

    def __init__(
        self,
        counter: RejectionCounter,
        interval_s: float,
        clock: Callable[[], float],
        wall_clock: Callable[[], datetime],
    ) -> None:
        self.counter = counter
        self._interval_s = interval_s
        self._clock, self._wall_clock = clock, wall_clock
        self._prefix = uuid.uuid4().hex  # this process's tallies: ids unique across processes
        self._seq = 0
        self._since = wall_clock()
        self._next = clock() + interval_s

    def due(self, force: bool = False) -> list[dict[str, Any]]:
        """The tally records when the interval is over (or ``force``), else none."""
        now = self._clock()
        if not force and now < self._next:
            return []
        self._next = now + self._interval_s
        if not self.counter.pending():
            return []
        until = self._wall_clock()
        self._seq += 1
        tallies = self.counter.drain(f"{self._prefix}:{self._seq}", self._since, until)
        self._since = until
        return tallies
