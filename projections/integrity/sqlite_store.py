"""A :class:`~projections.integrity.merkle.NodeStore` in an SQLite table: the tree's complete-subtree hashes on disk.

One row per node, keyed by ``(tree, level, idx)`` (a primary key, so a node is never written twice);
``tree`` names one of several trees sharing the table (the ledger keeps the global tree under ``""``
and one per tenant under its id). The caller owns the connection and its transactions: appends
become durable when it commits, together with whatever else it writes (a projection's tracking position).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from projections.integrity.merkle import HASH_SIZE


def create_table_sql(table: str) -> str:
    """The DDL of a node table (idempotent)."""
    _check_name(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (tree TEXT NOT NULL, level INTEGER NOT NULL, idx INTEGER NOT NULL, "
        "hash BLOB NOT NULL, PRIMARY KEY (tree, level, idx)) WITHOUT ROWID"
    )


def _check_name(table: str) -> None:
    if not table.isidentifier():
        raise ValueError(f"invalid table name {table!r}")


class SQLiteStore:
    """Complete-subtree hashes of tree ``tree`` in table ``table`` of an SQLite connection (or cursor)."""

    def __init__(
        self,
        connection: sqlite3.Connection | Any,
        table: str = "integrity_nodes",
        tree: str = "",
        *,
        create: bool = True,
    ) -> None:
        _check_name(table)
        self.connection = connection
        self.table = table
        self.tree = tree
        if create:
            connection.execute(create_table_sql(table))

    def leaf_count(self) -> int:
        row = self.connection.execute(
            f"SELECT max(idx) FROM {self.table} WHERE tree = ? AND level = 0", (self.tree,)
        ).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def get(self, level: int, index: int) -> bytes:
        row = self.connection.execute(
            f"SELECT hash FROM {self.table} WHERE tree = ? AND level = ? AND idx = ?", (self.tree, level, index)
        ).fetchone()
        if row is None:
            raise KeyError((level, index))
        return bytes(row[0])

    def put(self, level: int, index: int, digest: bytes) -> None:
        if len(digest) != HASH_SIZE:
            raise ValueError("a node hash is 32 bytes")
        self.connection.execute(
            f"INSERT INTO {self.table} (tree, level, idx, hash) VALUES (?, ?, ?, ?)", (self.tree, level, index, digest)
        )
