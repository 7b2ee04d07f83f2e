"""The integrity ledger's tables in the embedded SQLite event store file (see :mod:`projections.ledger_tables`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteTrackingRecorder

from projections.integrity.ledger_rows import (
    GLOBAL,
    TRACKING_NAME,
    CheckpointRow,
    LeafRow,
    StaleLedgerPosition,
    TileRow,
)
from projections.integrity.tiles import MAX_TILE_LEVELS, TileCache, TileKey, width_of
from projections.ledger_tables import LedgerSnapshot, edge_of, time_of, time_text


class SQLiteLedgerTables(SQLiteTrackingRecorder):
    """The ledger in the embedded SQLite event store file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tile_cache = TileCache()

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS integrity_tiles (tree TEXT NOT NULL, level INTEGER NOT NULL, "
            "idx INTEGER NOT NULL, width INTEGER NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (tree, level, idx))",
            "CREATE TABLE IF NOT EXISTS integrity_leaves (leaf INTEGER PRIMARY KEY, notification_id INTEGER NOT NULL "
            "UNIQUE, tenant TEXT, tenant_leaf INTEGER, time TEXT)",
            "CREATE INDEX IF NOT EXISTS integrity_leaves_tenant ON integrity_leaves (tenant, tenant_leaf)",
            "CREATE TABLE IF NOT EXISTS integrity_checkpoints (tree TEXT NOT NULL, size INTEGER NOT NULL, "
            "global_size INTEGER NOT NULL, signed_at TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (tree, size))",
            "CREATE INDEX IF NOT EXISTS integrity_checkpoints_global ON integrity_checkpoints (tree, global_size)",
            "CREATE INDEX IF NOT EXISTS integrity_checkpoints_signed ON integrity_checkpoints (signed_at)",
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def _create_table(self, c: Any) -> None:
        super()._create_table(c)
        c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'integrity_nodes'")
        if c.fetchone():  # a store from before tiles: replay the log into tiles (module docstring)
            c.execute("DROP TABLE integrity_nodes")
            c.execute("DELETE FROM integrity_tiles")
            c.execute("DELETE FROM integrity_leaves")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def edge_tiles(self, cursor: Any, tree: str) -> tuple[int, dict[TileKey, bytes]]:
        last: dict[int, list[tuple[int, int, bytes]]] = {}
        for level in range(MAX_TILE_LEVELS):
            rows = cursor.execute(
                "SELECT idx, width, hashes FROM integrity_tiles WHERE tree = ? AND level = ? ORDER BY idx DESC LIMIT 2",
                (tree, level),
            ).fetchall()
            if not rows:
                break
            last[level] = [(r[0], r[1], bytes(r[2])) for r in rows]
        return edge_of(last)

    def fetch_tiles(self, cursor: Any, tree: str, keys: Sequence[TileKey]) -> dict[TileKey, bytes]:
        # one primary-key lookup per tile (SQLite scans the tree's rows for a row-value IN list)
        one = "SELECT level, idx, hashes FROM integrity_tiles WHERE tree = ? AND level = ? AND idx = ?"
        rows = cursor.execute(
            " UNION ALL ".join([one] * len(keys)), [part for key in keys for part in (tree, *key)]
        ).fetchall()
        return {(r[0], r[1]): bytes(r[2]) for r in rows}

    def edge(self, tree: str) -> tuple[int, dict[TileKey, bytes]]:
        with self.datastore.transaction(commit=False) as c:
            return self.edge_tiles(c.sqlite_cursor, tree)

    def checkpoint_state(self) -> tuple[int, datetime | None, set[str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT size, signed_at FROM integrity_checkpoints WHERE tree = ? ORDER BY size DESC LIMIT 1", (GLOBAL,)
            )
            row = c.fetchone()
            size, at = (row[0], time_of(row[1])) if row else (0, None)
            c.execute("SELECT DISTINCT tenant FROM integrity_leaves WHERE leaf >= ? AND tenant IS NOT NULL", (size,))
            return size, at, {r[0] for r in c.fetchall()}

    def apply(
        self, expected: int, through: int, tiles: Sequence[TileRow], leaves: Sequence[LeafRow],
        checkpoints: Sequence[CheckpointRow],
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StaleLedgerPosition
            c.executemany(
                "INSERT INTO integrity_tiles VALUES (?, ?, ?, ?, ?) ON CONFLICT (tree, level, idx) "
                "DO UPDATE SET width = excluded.width, hashes = excluded.hashes",
                [(tree, level, idx, width_of(hashes), hashes) for tree, level, idx, hashes in tiles],
            )
            c.executemany(
                "INSERT INTO integrity_leaves VALUES (?, ?, ?, ?, ?)",
                [(r.leaf, r.notification_id, r.tenant, r.tenant_leaf, time_text(r.time)) for r in leaves],
            )
            c.executemany(
                "INSERT INTO integrity_checkpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(r.tree, r.size, r.global_size, time_text(r.signed_at), r.note) for r in checkpoints],
            )
            if through > expected:
                self._insert_tracking(c, Tracking(TRACKING_NAME, through))

    def clear(self) -> None:
        self.tile_cache.clear()
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM integrity_tiles")
            c.execute("DELETE FROM integrity_leaves")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])

    @contextmanager
    def reading(self) -> Iterator[LedgerSnapshot]:
        """A snapshot to export from."""
        with self.datastore.transaction(commit=False) as c:
            yield LedgerSnapshot(self, c.sqlite_cursor)

    def tenant_leaves(
        self, cursor: Any, tenant: str, below: int, since: datetime | None, until: datetime | None
    ) -> list[LeafRow]:
        sql = (
            "SELECT leaf, notification_id, tenant, tenant_leaf, time FROM integrity_leaves "
            "WHERE tenant = ? AND tenant_leaf < ?"
        )
        params: list[Any] = [tenant, below]
        for clause, moment in ((" AND time >= ?", since), (" AND time < ?", until)):
            if moment is not None:
                sql += clause
                params.append(time_text(moment))
        rows = cursor.execute(sql + " ORDER BY tenant_leaf", params).fetchall()
        return [LeafRow(r[0], r[1], r[2], r[3], time_of(r[4])) for r in rows]

    def tree_checkpoints(self, cursor: Any, tree: str) -> list[CheckpointRow]:
        rows = cursor.execute(
            "SELECT tree, size, global_size, signed_at, note FROM integrity_checkpoints WHERE tree = ? ORDER BY size",
            (tree,),
        ).fetchall()
        return [CheckpointRow(r[0], r[1], r[2], time_of(r[3]) or datetime.min, r[4]) for r in rows]

    def checkpoints(self, trees: Sequence[str], after: int, limit: int) -> list[CheckpointRow]:
        """Checkpoints of ``trees`` cut after global size ``after``, in the order they were cut (keyset)."""
        marks = ",".join("?" * len(trees))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT tree, size, global_size, signed_at, note FROM integrity_checkpoints "
                f"WHERE tree IN ({marks}) AND global_size > ? ORDER BY global_size, tree LIMIT ?",
                [*trees, after, limit],
            )
            return [CheckpointRow(r[0], r[1], r[2], time_of(r[3]) or datetime.min, r[4]) for r in c.fetchall()]

    def last_signed_between(self, start: datetime, end: datetime) -> list[CheckpointRow]:
        """Each tree's newest checkpoint signed in ``[start, end)`` (SQLite keeps the MAX row's other columns)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT tree, MAX(size), global_size, signed_at, note FROM integrity_checkpoints "
                "WHERE signed_at >= ? AND signed_at < ? GROUP BY tree ORDER BY tree",
                [time_text(start), time_text(end)],
            )
            return [CheckpointRow(r[0], r[1], r[2], time_of(r[3]) or datetime.min, r[4]) for r in c.fetchall()]
