"""The tree over an SQLite table answers as the one in memory, resumes after a reopen, and never rewrites a node."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from projections.integrity.merkle import MerkleTree
from projections.integrity.sqlite_store import SQLiteStore

DATA = [b"event %d" % i for i in range(70)]


def test_a_tree_on_sqlite_equals_the_one_in_memory_and_resumes_after_a_reopen(tmp_path: Path) -> None:
    memory = MerkleTree()
    memory.extend(DATA)
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as connection:
        tree = MerkleTree(SQLiteStore(connection))
        tree.extend(DATA[:41])
    connection.close()
    with sqlite3.connect(path) as connection:
        tree = MerkleTree(SQLiteStore(connection))
        assert tree.size == 41 and tree.root() == memory.root(41)
        tree.extend(DATA[41:])
        assert [tree.root(n) for n in range(71)] == [memory.root(n) for n in range(71)]
        assert tree.inclusion_proof(17, 53) == memory.inclusion_proof(17, 53)
        assert tree.consistency_proof(13, 70) == memory.consistency_proof(13, 70)
    connection.close()


def test_appends_not_committed_are_not_in_the_tree_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    connection = sqlite3.connect(path)
    tree = MerkleTree(SQLiteStore(connection))
    tree.extend(DATA[:10])
    connection.commit()
    tree.extend(DATA[10:15])
    connection.rollback()
    connection.close()
    reopened = sqlite3.connect(path)
    assert MerkleTree(SQLiteStore(reopened)).size == 10
    reopened.close()


def test_a_node_is_never_written_twice() -> None:
    connection = sqlite3.connect(":memory:")
    store = SQLiteStore(connection)
    store.put(0, 0, b"a" * 32)
    with pytest.raises(sqlite3.IntegrityError):
        store.put(0, 0, b"b" * 32)
    with pytest.raises(KeyError):
        store.get(0, 1)
    with pytest.raises(ValueError):
        SQLiteStore(connection, table="nodes; DROP TABLE x")
    connection.close()
