"""The integrity ledger's tables, what both stores share: :class:`~projections.ledger_sqlite.SQLiteLedgerTables`
(in the embedded store's file) and :class:`~projections.ledger_postgres.PostgresLedgerTables`, tracking
recorders that write tiles, leaves, checkpoints and position together.

- ``integrity_tiles``: every tree's hashes (global ``''``, tenants by id) as tiles, one row per
  (tree, tile level, tile index) holding up to 256 concatenated hashes and their count
  (:mod:`projections.integrity.tiles`); a partial tile's row is rewritten as it grows.
- ``integrity_leaves``: global leaf index <-> notification id (ids may have gaps, leaves are dense),
  with the event's tenant, its index in the tenant's tree and its time (what an export selects by).
- ``integrity_checkpoints``: the signed notes, by tree and size, with the global size they were cut at.

On PostgreSQL a batch's leaves go in with ``COPY`` and its tiles in one upsert; a tree's edge and
a proof's tiles are read in one query each (a small LRU keeps full tiles, which never change).

Migration: stores from before tiles hold ``integrity_nodes`` (``ownllm_integrity_nodes``) instead.
On opening one, the old table is dropped and the ledger's leaves and position cleared in one
transaction; the runner then replays the log into tiles. The trees are the same, so the kept
checkpoints still verify (``ownllm audit verify --live``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from projections.integrity.ledger_rows import CheckpointRow, LeafRow
from projections.integrity.merkle import MerkleTree
from projections.integrity.tiles import TileKey, TileStore, edge_tiles, size_of

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"  # fixed width: SQLite compares times as text


def edge_of(last: dict[int, list[tuple[int, int, bytes]]]) -> tuple[int, dict[TileKey, bytes]]:
    """A tree's size and edge tiles from the last two tiles of each tile level ``(index, width, hashes)``."""
    if not last.get(0):
        return 0, {}
    size = size_of(last[0][0][0], last[0][0][1])
    found = {(level, index): hashes for level, rows in last.items() for index, _, hashes in rows}
    return size, {key: found[key] for key in edge_tiles(size)}


def time_of(value: Any) -> datetime | None:
    """A stored time as a datetime (SQLite holds text)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def time_text(value: datetime | None) -> str | None:
    """A time as SQLite stores it: UTC, fixed width."""
    return None if value is None else value.astimezone(UTC).strftime(TIME_FORMAT)


class LedgerSnapshot:
    """Reads for exports and the API inside one read transaction: trees with proofs, leaves, checkpoints."""

    def __init__(self, tables: Any, cursor: Any) -> None:
        self._tables, self._cursor = tables, cursor

    def tree(self, key: str) -> MerkleTree:
        """The committed tree ``key`` (``GLOBAL`` or a tenant id), reading its tiles as proofs need them."""
        size, tiles = self._tables.edge_tiles(self._cursor, key)
        fetch = lambda keys: self._tables.fetch_tiles(self._cursor, key, keys)  # noqa: E731
        return MerkleTree(TileStore(size, tiles, fetch, self._tables.tile_cache, key))

    def tenant_leaves(self, tenant: str, below: int, since: datetime | None, until: datetime | None) -> list[LeafRow]:
        """The tenant's leaves with a tenant index below ``below``, at or after ``since``, before ``until``."""
        return self._tables.tenant_leaves(self._cursor, tenant, below, since, until)

    def checkpoints(self, tree: str) -> list[CheckpointRow]:
        """Every checkpoint of ``tree``, oldest first."""
        return self._tables.tree_checkpoints(self._cursor, tree)


def stored_states(recorder: ApplicationRecorder, ids: Sequence[int]) -> dict[int, bytes]:
    """The stored bytes of these notification ids, exactly as the recorder holds them."""
    found: dict[int, bytes] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        if isinstance(recorder, PostgresApplicationRecorder):
            table = SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
            with recorder.datastore.transaction(commit=False) as curs:
                curs.execute(
                    SQL("SELECT notification_id, state FROM {} WHERE notification_id = ANY(%s)").format(table), (chunk,)
                )
                found.update((r["notification_id"], bytes(r["state"])) for r in curs.fetchall())
        else:
            table_name = recorder.events_table_name  # type: ignore[attr-defined]
            with recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
                c.execute(f"SELECT rowid, state FROM {table_name} WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
                found.update((r[0], bytes(r[1])) for r in c.fetchall())
    return found
