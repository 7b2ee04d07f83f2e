"""Token buckets per key, in a table of bounded size, on an injected clock."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable


class TokenBuckets:
    """Each key may spend ``capacity`` tokens at once, refilled at ``per_second``; at most ``max_keys`` kept.

    When the table is full the least recently seen key is forgotten (its next request starts with a
    full bucket, so pair a per-address table with a bucket for everyone to bound the total).
    """

    def __init__(self, capacity: float, per_second: float, max_keys: int, now: Callable[[], float]) -> None:
        if capacity < 1 or per_second <= 0 or max_keys < 1:
            raise ValueError("a bucket needs capacity >= 1, a positive rate and room for one key")
        self.capacity = float(capacity)
        self.per_second = per_second
        self.max_keys = max_keys
        self.now = now
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, as of)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may spend a token (0 when it may now); spends nothing."""
        with self._lock:
            tokens = self._tokens(key, self.now())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_second

    def take(self, key: str) -> float:
        """Spend a token of ``key`` if it has one: 0 when spent, else the seconds to wait for one."""
        with self._lock:
            now = self.now()
            tokens = self._tokens(key, now)
            if tokens < 1:
                self._store(key, tokens, now)
                return (1 - tokens) / self.per_second
            self._store(key, tokens - 1, now)
            return 0.0

    def _tokens(self, key: str, now: float) -> float:
        """The key's tokens now; a clock that went back refills nothing."""
        found = self._buckets.get(key)
        if found is None:
            return self.capacity
        tokens, as_of = found
        return min(self.capacity, tokens + max(0.0, now - as_of) * self.per_second)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


def retry_after(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header: never 0 for a refusal."""
    return max(1, math.ceil(seconds))
