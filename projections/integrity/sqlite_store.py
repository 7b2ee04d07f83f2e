"""A :class:`~projections.integrity.merkle.NodeStore` in an SQLite table: the tree's complete-subtree hashes on disk.

One row per node, keyed by ``(level, idx)`` (a primary key, so a node is never written twice). The
caller owns the connection and its transactions: appends become durable when it commits, together
with whatever else it writes (a projection's tracking position).
"""

from __future__ import annotations

import sqlite3

from projections.integrity.merkle import HASH_SIZE


class SQLiteStore:
    """Complete-subtree hashes in table ``table`` of an SQLite connection."""

    def __init__(self, connection: sqlite3.Connection, table: str = "integrity_nodes") -> None:
        if not table.isidentifier():
            raise ValueError(f"invalid table name {table!r}")
        self.connection = connection
        self.table = table
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (level INTEGER NOT NULL, idx INTEGER NOT NULL, "
            "hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID"
        )

    def leaf_count(self) -> int:
        row = self.connection.execute(f"SELECT max(idx) FROM {self.table} WHERE level = 0").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def get(self, level: int, index: int) -> bytes:
        row = self.connection.execute(
            f"SELECT hash FROM {self.table} WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        if row is None:
            raise KeyError((level, index))
        return bytes(row[0])

    def put(self, level: int, index: int, digest: bytes) -> None:
        if len(digest) != HASH_SIZE:
            raise ValueError("a node hash is 32 bytes")
        self.connection.execute(f"INSERT INTO {self.table} (level, idx, hash) VALUES (?, ?, ?)", (level, index, digest))
