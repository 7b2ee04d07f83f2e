"""A :class:`~projections.integrity.merkle.NodeStore` in a PostgreSQL table, through any DB-API cursor (psycopg 3).

The same rows as :mod:`projections.integrity.sqlite_store`: one per complete subtree, keyed by
``(tree, level, idx)``, written once. It imports no driver (the caller passes a cursor whose
``execute`` takes ``%s`` placeholders and whose rows are tuples or dicts), so the integrity package
stays free of the product's dependencies. The caller owns the transaction.
"""

from __future__ import annotations

import re
from typing import Any

from projections.integrity.merkle import HASH_SIZE

_QUALIFIED = re.compile(r'"?[A-Za-z_][A-Za-z0-9_]*"?(\."?[A-Za-z_][A-Za-z0-9_]*"?)?')


def create_table_sql(table: str) -> str:
    """The DDL of a node table (idempotent); ``table`` may be schema-qualified."""
    _check_name(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (tree text NOT NULL, level smallint NOT NULL, idx bigint NOT NULL, "
        "hash bytea NOT NULL, PRIMARY KEY (tree, level, idx))"
    )


def _check_name(table: str) -> None:
    if not _QUALIFIED.fullmatch(table):
        raise ValueError(f"invalid table name {table!r}")


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


class PostgresStore:
    """Complete-subtree hashes of tree ``tree`` in table ``table``, read and written through ``cursor``."""

    def __init__(self, cursor: Any, table: str = "integrity_nodes", tree: str = "") -> None:
        _check_name(table)
        self.cursor = cursor
        self.table = table
        self.tree = tree

    def leaf_count(self) -> int:
        self.cursor.execute(f"SELECT max(idx) AS m FROM {self.table} WHERE tree = %s AND level = 0", (self.tree,))
        found = _first(self.cursor.fetchone())
        return 0 if found is None else int(found) + 1

    def get(self, level: int, index: int) -> bytes:
        self.cursor.execute(
            f"SELECT hash FROM {self.table} WHERE tree = %s AND level = %s AND idx = %s", (self.tree, level, index)
        )
        row = self.cursor.fetchone()
        if row is None:
            raise KeyError((level, index))
        return bytes(_first(row))

    def put(self, level: int, index: int, digest: bytes) -> None:
        if len(digest) != HASH_SIZE:
            raise ValueError("a node hash is 32 bytes")
        self.cursor.execute(
            f"INSERT INTO {self.table} (tree, level, idx, hash) VALUES (%s, %s, %s, %s)",
            (self.tree, level, index, digest),
        )
