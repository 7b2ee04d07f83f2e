"""Fewer garbage collections while a bulk pass allocates millions of short-lived, acyclic objects."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Each batch of a rebuild (10,000 records, their events and rows) lives past a young collection, so
# with the default thresholds the oldest generation, every live object included, was walked again
# and again: a quarter of a 1M-event rebuild's time (bench/audit_log.py). A young collection every
# 100,000 allocations, and the objects alive before the pass set aside, keep the cost per object.
BULK_THRESHOLDS = (100_000, 50, 1_000)


class _Pauses:
    """How many passes hold the settings now, and the thresholds to restore after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: tuple[int, int, int] = gc.get_threshold()


_pauses = _Pauses()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Set aside the objects alive now and collect rarely until the block ends; then as before.

    Nested or concurrent passes keep these settings until the last of them ends.
    """
    with _pauses.lock:
        if _pauses.depth == 0:
            _pauses.saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*BULK_THRESHOLDS)
        _pauses.depth += 1
    try:
        yield
    finally:
        with _pauses.lock:
            _pauses.depth -= 1
            if _pauses.depth == 0:
                gc.set_threshold(*_pauses.saved)
                gc.unfreeze()
