"""The integrity ledger's tables: :class:`SQLiteLedgerTables` (in the embedded store's file) and
:class:`PostgresLedgerTables`, tracking recorders that write tiles, leaves, checkpoints and position together.

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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.errors import UndefinedTable
from psycopg.sql import SQL, Identifier, Literal

from projections.integrity.ledger import GLOBAL, TRACKING_NAME, CheckpointRow, LeafRow, StaleLedgerPosition, TileRow
from projections.integrity.merkle import HASH_SIZE, MerkleTree
from projections.integrity.tiles import MAX_TILE_LEVELS, TileCache, TileKey, TileStore, edge_tiles, size_of
from projections.tracking import check_locked_position

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"  # fixed width: SQLite compares times as text


def _edge(last: dict[int, list[tuple[int, int, bytes]]]) -> tuple[int, dict[TileKey, bytes]]:
    """A tree's size and edge tiles from the last two tiles of each tile level ``(index, width, hashes)``."""
    if not last.get(0):
        return 0, {}
    size = size_of(last[0][0][0], last[0][0][1])
    found = {(level, index): hashes for level, rows in last.items() for index, _, hashes in rows}
    return size, {key: found[key] for key in edge_tiles(size)}


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _text(value: datetime | None) -> str | None:
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
        return _edge(last)

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
            size, at = (row[0], _time(row[1])) if row else (0, None)
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
                [(tree, level, idx, len(hashes) // HASH_SIZE, hashes) for tree, level, idx, hashes in tiles],
            )
            c.executemany(
                "INSERT INTO integrity_leaves VALUES (?, ?, ?, ?, ?)",
                [(r.leaf, r.notification_id, r.tenant, r.tenant_leaf, _text(r.time)) for r in leaves],
            )
            c.executemany(
                "INSERT INTO integrity_checkpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(r.tree, r.size, r.global_size, _text(r.signed_at), r.note) for r in checkpoints],
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
                params.append(_text(moment))
        rows = cursor.execute(sql + " ORDER BY tenant_leaf", params).fetchall()
        return [LeafRow(r[0], r[1], r[2], r[3], _time(r[4])) for r in rows]

    def tree_checkpoints(self, cursor: Any, tree: str) -> list[CheckpointRow]:
        rows = cursor.execute(
            "SELECT tree, size, global_size, signed_at, note FROM integrity_checkpoints WHERE tree = ? ORDER BY size",
            (tree,),
        ).fetchall()
        return [CheckpointRow(r[0], r[1], r[2], _time(r[3]) or datetime.min, r[4]) for r in rows]

    def checkpoints(self, trees: Sequence[str], after: int, limit: int) -> list[CheckpointRow]:
        """Checkpoints of ``trees`` cut after global size ``after``, in the order they were cut (keyset)."""
        marks = ",".join("?" * len(trees))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT tree, size, global_size, signed_at, note FROM integrity_checkpoints "
                f"WHERE tree IN ({marks}) AND global_size > ? ORDER BY global_size, tree LIMIT ?",
                [*trees, after, limit],
            )
            return [CheckpointRow(r[0], r[1], r[2], _time(r[3]) or datetime.min, r[4]) for r in c.fetchall()]


class PostgresLedgerTables(PostgresTrackingRecorder):
    """The ledger in the event store's PostgreSQL schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = self.datastore.schema
        self.tile_cache = TileCache()
        self.old_nodes = SQL("{}.{}").format(Identifier(schema), Identifier("ownllm_integrity_nodes"))
        self.tiles = SQL("{}.{}").format(Identifier(schema), Identifier("ownllm_integrity_tiles"))
        self.leaves = SQL("{}.{}").format(Identifier(schema), Identifier("ownllm_integrity_leaves"))
        self.checkpoint_table = SQL("{}.{}").format(Identifier(schema), Identifier("ownllm_integrity_checkpoints"))
        self.tracking = SQL("{}.{}").format(Identifier(schema), Identifier(self.tracking_table_name))
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (tree text NOT NULL, level smallint NOT NULL, idx bigint NOT NULL, "
                "width smallint NOT NULL, hashes bytea NOT NULL, PRIMARY KEY (tree, level, idx))"
            ).format(self.tiles),
            # random hashes never compress: store them out of line without trying
            SQL("ALTER TABLE {} ALTER COLUMN hashes SET STORAGE EXTERNAL").format(self.tiles),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (leaf bigint PRIMARY KEY, notification_id bigint NOT NULL UNIQUE, "
                "tenant text, tenant_leaf bigint, time timestamptz)"
            ).format(self.leaves),
            SQL("CREATE INDEX IF NOT EXISTS ownllm_integrity_leaves_tenant ON {} (tenant, tenant_leaf)").format(
                self.leaves
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (tree text NOT NULL, size bigint NOT NULL, global_size bigint NOT NULL, "
                "signed_at timestamptz NOT NULL, note text NOT NULL, PRIMARY KEY (tree, size))"
            ).format(self.checkpoint_table),
            SQL("CREATE INDEX IF NOT EXISTS ownllm_integrity_checkpoints_global ON {} (tree, global_size)").format(
                self.checkpoint_table
            ),
            SQL("INSERT INTO {} VALUES ({}, 0) ON CONFLICT DO NOTHING").format(self.tracking, Literal(TRACKING_NAME)),
        ]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT to_regclass(%s) AS found", (self.old_nodes.as_string(),))
            row = curs.fetchone()
            if row is None or row["found"] is None:
                return
        try:  # a store from before tiles: replay the log into tiles (module docstring)
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(SQL("DROP TABLE {}").format(self.old_nodes))  # waits for a concurrent migration
                curs.execute(SQL("DELETE FROM {}").format(self.tiles))
                curs.execute(SQL("DELETE FROM {}").format(self.leaves))
                curs.execute(
                    SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                    (TRACKING_NAME,),
                )
        except UndefinedTable:
            pass

    def edge_tiles(self, cursor: Any, tree: str) -> tuple[int, dict[TileKey, bytes]]:
        cursor.execute(
            SQL(
                "SELECT l.level, t.idx, t.width, t.hashes FROM generate_series(0, %s) AS l(level) CROSS JOIN LATERAL "
                "(SELECT idx, width, hashes FROM {} WHERE tree = %s AND level = l.level ORDER BY idx DESC LIMIT 2) t"
            ).format(self.tiles),
            (MAX_TILE_LEVELS - 1, tree),
        )
        last: dict[int, list[tuple[int, int, bytes]]] = {}
        for r in cursor.fetchall():
            last.setdefault(r["level"], []).append((r["idx"], r["width"], bytes(r["hashes"])))
        return _edge(last)

    def fetch_tiles(self, cursor: Any, tree: str, keys: Sequence[TileKey]) -> dict[TileKey, bytes]:
        cursor.execute(
            SQL(
                "SELECT level, idx, hashes FROM {} WHERE tree = %s AND (level, idx) IN "
                "(SELECT * FROM unnest(%s::smallint[], %s::bigint[]))"
            ).format(self.tiles),
            (tree, [level for level, _ in keys], [index for _, index in keys]),
        )
        return {(r["level"], r["idx"]): bytes(r["hashes"]) for r in cursor.fetchall()}

    def edge(self, tree: str) -> tuple[int, dict[TileKey, bytes]]:
        with self.datastore.transaction(commit=False) as curs:
            return self.edge_tiles(curs, tree)

    def checkpoint_state(self) -> tuple[int, datetime | None, set[str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT size, signed_at FROM {} WHERE tree = %s ORDER BY size DESC LIMIT 1").format(
                    self.checkpoint_table
                ),
                (GLOBAL,),
            )
            row = curs.fetchone()
            size, at = (row["size"], row["signed_at"]) if row else (0, None)
            curs.execute(
                SQL("SELECT DISTINCT tenant FROM {} WHERE leaf >= %s AND tenant IS NOT NULL").format(self.leaves),
                (size,),
            )
            return size, at, {r["tenant"] for r in curs.fetchall()}

    def apply(
        self, expected: int, through: int, tiles: Sequence[TileRow], leaves: Sequence[LeafRow],
        checkpoints: Sequence[CheckpointRow],
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as curs:
            check_locked_position(curs, self.tracking, TRACKING_NAME, expected, StaleLedgerPosition)
            if tiles:
                curs.execute(
                    SQL(
                        "INSERT INTO {} SELECT * FROM unnest(%b::text[], %b::smallint[], %b::bigint[], %b::smallint[], "
                        "%b::bytea[]) ON CONFLICT (tree, level, idx) DO UPDATE SET width = excluded.width, "
                        "hashes = excluded.hashes"
                    ).format(self.tiles),
                    [list(column) for column in zip(
                        *((tree, level, idx, len(hashes) // HASH_SIZE, hashes) for tree, level, idx, hashes in tiles),
                        strict=True,
                    )],
                )  # fmt: skip
            if leaves:
                with curs.copy(SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(self.leaves)) as copy:
                    copy.set_types(["int8", "int8", "text", "int8", "timestamptz"])
                    for r in leaves:
                        copy.write_row((r.leaf, r.notification_id, r.tenant, r.tenant_leaf, r.time))
            if checkpoints:
                curs.execute(  # one statement for a cut's hundreds of tenant checkpoints
                    SQL(
                        "INSERT INTO {} SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], "
                        "%s::timestamptz[], %s::text[]) ON CONFLICT DO NOTHING"
                    ).format(self.checkpoint_table),
                    [list(column) for column in zip(
                        *((r.tree, r.size, r.global_size, r.signed_at, r.note) for r in checkpoints), strict=True
                    )],
                )  # fmt: skip
            if through > expected:
                self._insert_tracking(curs, Tracking(TRACKING_NAME, through))

    def clear(self) -> None:
        self.tile_cache.clear()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}").format(self.tiles))
            curs.execute(SQL("DELETE FROM {}").format(self.leaves))
            curs.execute(
                SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                (TRACKING_NAME,),
            )

    @contextmanager
    def reading(self) -> Iterator[LedgerSnapshot]:
        """A snapshot to export from."""
        with self.datastore.transaction(commit=False) as curs:
            yield LedgerSnapshot(self, curs)

    def tenant_leaves(
        self, cursor: Any, tenant: str, below: int, since: datetime | None, until: datetime | None
    ) -> list[LeafRow]:
        sql = "SELECT leaf, notification_id, tenant, tenant_leaf, time FROM {} WHERE tenant = %s AND tenant_leaf < %s"
        params: list[Any] = [tenant, below]
        for clause, moment in ((" AND time >= %s", since), (" AND time < %s", until)):
            if moment is not None:
                sql += clause
                params.append(moment)
        cursor.execute(SQL(sql + " ORDER BY tenant_leaf").format(self.leaves), params)
        return [
            LeafRow(r["leaf"], r["notification_id"], r["tenant"], r["tenant_leaf"], r["time"])
            for r in cursor.fetchall()
        ]

    def tree_checkpoints(self, cursor: Any, tree: str) -> list[CheckpointRow]:
        cursor.execute(
            SQL("SELECT tree, size, global_size, signed_at, note FROM {} WHERE tree = %s ORDER BY size").format(
                self.checkpoint_table
            ),
            (tree,),
        )
        return [CheckpointRow(**r) for r in cursor.fetchall()]

    def checkpoints(self, trees: Sequence[str], after: int, limit: int) -> list[CheckpointRow]:
        """Checkpoints of ``trees`` cut after global size ``after``, in the order they were cut (keyset)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT tree, size, global_size, signed_at, note FROM {} WHERE tree = ANY(%s) AND global_size > %s "
                    "ORDER BY global_size, tree LIMIT %s"
                ).format(self.checkpoint_table),
                (list(trees), after, limit),
            )
            return [CheckpointRow(**r) for r in curs.fetchall()]


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
