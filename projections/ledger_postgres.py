"""The integrity ledger's tables in the event store's PostgreSQL schema (see :mod:`projections.ledger_tables`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.errors import UndefinedTable
from psycopg.sql import SQL, Identifier, Literal

from projections.integrity.ledger_rows import (
    GLOBAL,
    TRACKING_NAME,
    CheckpointRow,
    LeafRow,
    StaleLedgerPosition,
    TileRow,
)
from projections.integrity.tiles import MAX_TILE_LEVELS, TileCache, TileKey, width_of
from projections.ledger_tables import LedgerSnapshot, edge_of
from projections.tracking import check_locked_position


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
            SQL("CREATE INDEX IF NOT EXISTS ownllm_integrity_checkpoints_signed ON {} (signed_at)").format(
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
        return edge_of(last)

    def fetch_tiles(self, cursor: Any, tree: str, keys: Sequence[TileKey]) -> dict[TileKey, bytes]:
        # one primary-key lookup per tile: a join with unnest(arrays) got a generic plan once prepared
        # that took 0.5 ms a proof at 10M leaves, three times these
        one = "SELECT level, idx, hashes FROM {t} WHERE tree = %s AND level = %s AND idx = %s"
        cursor.execute(
            SQL(" UNION ALL ".join([one] * len(keys))).format(t=self.tiles),
            [part for key in keys for part in (tree, *key)],
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
                        *((tree, level, idx, width_of(hashes), hashes) for tree, level, idx, hashes in tiles),
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

    def last_signed_between(self, start: datetime, end: datetime) -> list[CheckpointRow]:
        """Each tree's newest checkpoint signed in ``[start, end)``."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT DISTINCT ON (tree) tree, size, global_size, signed_at, note FROM {} "
                    "WHERE signed_at >= %s AND signed_at < %s ORDER BY tree, size DESC"
                ).format(self.checkpoint_table),
                (start, end),
            )
            return [CheckpointRow(**r) for r in curs.fetchall()]
