"""The integrity ledger's rows and the tables that hold them (:mod:`projections.integrity.ledger` writes them)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

GLOBAL = ""  # the global tree's key in the tile table (tenant trees are keyed by the tenant's id)
TRACKING_NAME = "ownllm/integrity"


class StaleLedgerPosition(Exception):
    """Another process moved the ledger on (or rebuilt it); reload and retry."""


class StoredRecord(Protocol):
    """What the runner hands over per event (``projections.log.Recorded``)."""

    @property
    def notification_id(self) -> int: ...

    @property
    def state(self) -> bytes: ...

    @property
    def event(self) -> Any: ...


class LeafRow(NamedTuple):
    """Where one event sits: global leaf, notification id, tenant (None: no tenant's), tenant leaf, time.

    A named tuple, not a frozen dataclass: the ledger makes one per event, and a tuple is built in C.
    """

    leaf: int
    notification_id: int
    tenant: str | None
    tenant_leaf: int | None
    time: datetime | None


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A signed checkpoint as stored: its tree (``GLOBAL`` or a tenant id), size, the global size then, the note."""

    tree: str
    size: int
    global_size: int
    signed_at: datetime
    note: str


TileRow = tuple[str, int, int, bytes]  # (tree, tile level, tile index, its bottom row's hashes)


class LedgerTables(Protocol):
    """The ledger's rows on SQLite or PostgreSQL (see ``projections/ledger_tables.py``)."""

    def position(self) -> int:
        """The last notification id applied (0 when new)."""
        ...

    def edge(self, tree: str) -> tuple[int, dict[tuple[int, int], bytes]]:
        """The committed size of ``tree`` and its edge tiles by (tile level, index) (``tiles.edge_tiles``)."""
        ...

    def checkpoint_state(self) -> tuple[int, datetime | None, set[str]]:
        """The newest global checkpoint's size and time, and the tenants with leaves after it."""
        ...

    def apply(
        self, expected: int, through: int, tiles: Sequence[TileRow], leaves: Sequence[LeafRow],
        checkpoints: Sequence[CheckpointRow],
    ) -> None:  # fmt: skip
        """Write the rows (a tile row replaces the stored one) and move the position, atomically."""
        ...

    def clear(self) -> None:
        """Drop the tiles, leaves and position (checkpoints stay: they were given out)."""
        ...

    def checkpoints(self, trees: Sequence[str], after: int, limit: int) -> list[CheckpointRow]:
        """Checkpoints of ``trees`` cut after global size ``after``, in the order they were cut."""
        ...

    def reading(self) -> AbstractContextManager[Any]:
        """A read transaction with trees for proofs (``projections.integrity.export.Snapshot``)."""
