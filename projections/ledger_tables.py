"""The integrity ledger's tables: :class:`SQLiteLedgerTables` (in the embedded store's file) and
:class:`PostgresLedgerTables`, tracking recorders that write nodes, leaves, checkpoints and position together.

- ``integrity_nodes``: complete-subtree hashes of every tree (global ``''``, tenants by id), written once.
- ``integrity_leaves``: global leaf index <-> notification id (ids may have gaps, leaves are dense),
  with the event's tenant, its index in the tenant's tree and its time (what an export selects by).
- ``integrity_checkpoints``: the signed notes, by tree and size, with the global size they were cut at.

On PostgreSQL a batch's nodes and leaves go in with ``COPY`` (one round trip each).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier, Literal

from projections.integrity import postgres_store, sqlite_store
from projections.integrity.ledger import GLOBAL, TRACKING_NAME, CheckpointRow, LeafRow, Node, StaleLedgerPosition
from projections.integrity.merkle import MerkleTree
from projections.integrity.postgres_store import PostgresStore
from projections.integrity.sqlite_store import SQLiteStore

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"  # fixed width: SQLite compares times as text


def _edge(size: int) -> list[tuple[int, int]]:
    """The nodes a tree of ``size`` leaves appends next to: the last one of each level."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length())]


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
        """The committed tree ``key`` (``GLOBAL`` or a tenant id), reading its nodes as proofs need them."""
        return MerkleTree(self._tables.store(self._cursor, key))

    def tenant_leaves(self, tenant: str, below: int, since: datetime | None, until: datetime | None) -> list[LeafRow]:
        """The tenant's leaves with a tenant index below ``below``, at or after ``since``, before ``until``."""
        return self._tables.tenant_leaves(self._cursor, tenant, below, since, until)

    def checkpoints(self, tree: str) -> list[CheckpointRow]:
        """Every checkpoint of ``tree``, oldest first."""
        return self._tables.tree_checkpoints(self._cursor, tree)


class SQLiteLedgerTables(SQLiteTrackingRecorder):
    """The ledger in the embedded SQLite event store file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            sqlite_store.create_table_sql("integrity_nodes"),
            "CREATE TABLE IF NOT EXISTS integrity_leaves (leaf INTEGER PRIMARY KEY, notification_id INTEGER NOT NULL "
            "UNIQUE, tenant TEXT, tenant_leaf INTEGER, time TEXT)",
            "CREATE INDEX IF NOT EXISTS integrity_leaves_tenant ON integrity_leaves (tenant, tenant_leaf)",
            "CREATE TABLE IF NOT EXISTS integrity_checkpoints (tree TEXT NOT NULL, size INTEGER NOT NULL, "
            "global_size INTEGER NOT NULL, signed_at TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (tree, size))",
            "CREATE INDEX IF NOT EXISTS integrity_checkpoints_global ON integrity_checkpoints (tree, global_size)",
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def store(self, cursor: Any, tree: str) -> SQLiteStore:
        return SQLiteStore(cursor, "integrity_nodes", tree, create=False)

    def peaks(self, tree: str) -> tuple[int, dict[tuple[int, int], bytes]]:
        with self.datastore.transaction(commit=False) as c:
            store = self.store(c.sqlite_cursor, tree)
            size = store.leaf_count()
            return size, {node: store.get(*node) for node in _edge(size)}

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
        self, expected: int, through: int, nodes: Sequence[Node], leaves: Sequence[LeafRow],
        checkpoints: Sequence[CheckpointRow],
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StaleLedgerPosition
            c.executemany("INSERT INTO integrity_nodes (tree, level, idx, hash) VALUES (?, ?, ?, ?)", nodes)
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
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM integrity_nodes")
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
        self.nodes_name = f'"{schema}"."ownllm_integrity_nodes"'
        self.nodes = SQL(self.nodes_name)
        self.leaves = SQL("{}.{}").format(Identifier(schema), Identifier("ownllm_integrity_leaves"))
        self.checkpoint_table = SQL("{}.{}").format(Identifier(schema), Identifier("ownllm_integrity_checkpoints"))
        self.tracking = SQL("{}.{}").format(Identifier(schema), Identifier(self.tracking_table_name))
        self.sql_create_statements += [
            SQL(postgres_store.create_table_sql(self.nodes_name)).format(),
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

    def store(self, cursor: Any, tree: str) -> PostgresStore:
        return PostgresStore(cursor, self.nodes_name, tree)

    def peaks(self, tree: str) -> tuple[int, dict[tuple[int, int], bytes]]:
        with self.datastore.transaction(commit=False) as curs:
            size = self.store(curs, tree).leaf_count()
            edge = _edge(size)
            if not edge:
                return 0, {}
            curs.execute(
                SQL("SELECT level, idx, hash FROM {} WHERE tree = %s AND (level, idx) IN "
                    "(SELECT * FROM unnest(%s::smallint[], %s::bigint[]))").format(self.nodes),
                (tree, [lv for lv, _ in edge], [i for _, i in edge]),
            )  # fmt: skip
            return size, {(r["level"], r["idx"]): bytes(r["hash"]) for r in curs.fetchall()}

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
        self, expected: int, through: int, nodes: Sequence[Node], leaves: Sequence[LeafRow],
        checkpoints: Sequence[CheckpointRow],
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("SELECT notification_id FROM {} WHERE application_name = %s FOR UPDATE").format(self.tracking),
                (TRACKING_NAME,),
            )
            found = curs.fetchone()
            if (found["notification_id"] if found else 0) != expected:
                raise StaleLedgerPosition
            if nodes:
                with curs.copy(SQL("COPY {} (tree, level, idx, hash) FROM STDIN").format(self.nodes)) as copy:
                    for node in nodes:
                        copy.write_row(node)
            if leaves:
                with curs.copy(SQL("COPY {} FROM STDIN").format(self.leaves)) as copy:
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
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}").format(self.nodes))
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
