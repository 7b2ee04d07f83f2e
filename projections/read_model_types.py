"""The read models the projection runner (:mod:`projections.runner`) feeds: in memory, or persistent with
a position of their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from projections.log import Recorded


class Projection(Protocol):
    """An in-memory read model: folds events one at a time (``topics``, when it has them, says which)."""

    def process(self, event: Any) -> None:
        """Apply one event."""
        ...


class TrackedProjection(Protocol):
    """A persistent read model fed (notification id, event) pairs: every event, from position 0."""

    def process_batch(self, events: Sequence[tuple[int, Any]]) -> None:
        """Apply the (notification id, event) pairs it has not applied yet."""
        ...


class TrackedReadModel(Protocol):
    """A persistent read model that keeps its own position and receives stored records."""

    name: str
    topics: tuple[str, ...]  # () is every event
    position: int  # everything of its topics up to here is applied

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        """Apply ``records`` (every event of its topics after ``position`` up to ``through``) and move
        the position to ``through``, atomically. After a lost race it may instead re-read its position
        (ahead: skip what the other runner applied; behind: a rebuild elsewhere, the runner reads again)."""
        ...

    def stored_position(self) -> int:
        """The position as stored (what another process reads)."""
        ...

    def clear(self) -> None:
        """Drop everything and go back to position 0 (before a rebuild)."""
        ...
