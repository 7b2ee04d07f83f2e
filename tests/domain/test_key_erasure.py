"""A destroyed subject key really goes: not in the SQLite file, its -wal or free pages; not in PostgreSQL's heap."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg

from domain.adapters.key_stores import PostgresKeyStore, SQLiteKeyStore
from tests.support.postgres import create_schema


def _files(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_an_unprotected_sqlite_file_keeps_a_deleted_key_which_is_what_the_store_prevents(tmp_path: Path) -> None:
    # the control: a plain WAL-mode table keeps the old row's bytes after the update
    plain = tmp_path / "plain.sqlite"
    db = sqlite3.connect(plain, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE k (id TEXT PRIMARY KEY, key BLOB)")
    secret = uuid.uuid4().bytes * 2
    db.execute("INSERT INTO k VALUES ('a', ?)", (secret,))
    db.execute("UPDATE k SET key = NULL WHERE id = 'a'")
    assert secret in _files(plain)
    db.close()

    path = tmp_path / "subject-keys.sqlite"
    store = SQLiteKeyStore(str(path))
    subjects = [uuid.uuid4() for _ in range(200)]
    keys = {s: store.key_for(s, create=True) for s in subjects}
    reader = SQLiteKeyStore(str(path))  # another process with the store open
    assert reader.key_for(subjects[7], create=False) == keys[subjects[7]]
    store.destroy(subjects[7])
    raw = _files(path)
    assert keys[subjects[8]] in raw  # the search reads the real files
    assert keys[subjects[7]] not in raw  # neither in the database file, its free pages, nor the -wal
    assert store.key_for(subjects[7], create=True) is None  # never recreated
    reader.forget(subjects[7])  # what the erasure event makes every process do
    assert reader.key_for(subjects[7], create=False) is None
    reader.close()
    store.close()


def test_a_destroyed_key_leaves_the_postgres_heap_at_the_next_vacuum(postgres_dsn: str) -> None:
    schema = create_schema(postgres_dsn)
    store = PostgresKeyStore(postgres_dsn, schema)

    def heap() -> bytes:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute(
                f"SELECT pg_read_binary_file(pg_relation_filepath('\"{schema}\".ownllm_subject_keys'))"
            ).fetchone()
            assert row is not None
            return bytes(row[0])

    try:
        subjects = [uuid.uuid4() for _ in range(50)]
        keys = {s: store.key_for(s, create=True) for s in subjects}
        assert store.vacuum() is False  # nothing destroyed: no vacuum
        store.destroy(subjects[3])
        assert keys[subjects[3]] in heap()  # the old row version stays until VACUUM ...
        assert store.vacuum() is True
        assert keys[subjects[3]] not in heap() and keys[subjects[4]] in heap()  # ... and goes with it
        assert store.key_for(subjects[3], create=True) is None
    finally:
        store.close()
