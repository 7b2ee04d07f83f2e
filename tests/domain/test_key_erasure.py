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


def test_the_subject_keys_can_live_in_a_database_of_their_own(postgres_dsn: str, tmp_path: Path) -> None:
    from api.services import build_services
    from api.settings import load_settings
    from tests.support.postgres import server_dsn, throwaway_database

    with server_dsn() as server, throwaway_database(server) as keys_dsn:
        schema = create_schema(postgres_dsn)
        with psycopg.connect(keys_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        settings = load_settings({}, persistence="postgres", postgres_dsn=postgres_dsn, postgres_schema=schema,
                                 keys_dsn=keys_dsn, var_dir=str(tmp_path / "var"), inference=False,
                                 nats_public_url="tls://n:4222")  # fmt: skip
        services = build_services(settings, start_runner=False)
        try:
            signed = services.app.signup(slug="own-keys", name="K", admin_name="A", admin_email="a@k.example",
                                         request_id="r")  # fmt: skip
        finally:
            services.close()

        def key_rows(dsn: str) -> int:
            with psycopg.connect(dsn) as conn:
                found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".ownllm_subject_keys',)).fetchone()
                if found is None or found[0] is None:
                    return -1
                counted = conn.execute(f'SELECT count(*) FROM "{schema}".ownllm_subject_keys').fetchone()
                return int(counted[0]) if counted else 0

        assert key_rows(keys_dsn) >= 1  # the admin's key is in the keys' own database ...
        assert key_rows(postgres_dsn) == -1  # ... and the event store's database has no key table at all
        assert signed.admin_user_id


def test_a_batch_of_destroyed_keys_goes_in_one_transaction_from_the_sqlite_file_and_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "subject-keys.sqlite"
    store = SQLiteKeyStore(str(path))
    subjects = [uuid.uuid4() for _ in range(300)]
    keys = {s: store.key_for(s, create=True) for s in subjects}
    reader = SQLiteKeyStore(str(path))
    assert reader.key_for(subjects[0], create=False) == keys[subjects[0]]
    gone, kept = subjects[:150], subjects[150:]
    never_had_one = uuid.uuid4()
    store.destroy_many([*gone, gone[0], never_had_one])  # duplicates and unknown subjects are fine
    raw = _files(path)
    assert all(keys[s] in raw for s in kept)
    assert not any(keys[s] in raw for s in gone)  # neither in the file, its free pages, nor the -wal
    assert all(store.key_for(s, create=True) is None for s in (*gone, never_had_one))  # never recreated
    assert all(store.key_for(s, create=False) == keys[s] for s in kept)
    store.destroy_many(gone)  # idempotent
    reader.forget(subjects[0])
    assert reader.key_for(subjects[0], create=False) is None
    reader.close()
    store.close()


def test_a_batch_of_destroyed_keys_leaves_postgres_at_the_next_vacuum(postgres_dsn: str) -> None:
    store = PostgresKeyStore(postgres_dsn, create_schema(postgres_dsn))
    try:
        subjects = [uuid.uuid4() for _ in range(40)]
        keys = {s: store.key_for(s, create=True) for s in subjects}
        store.destroy_many(subjects[:25])
        assert store.destroyed_since_vacuum == 25 and store.vacuum() is True
        reopened = PostgresKeyStore(postgres_dsn, store._table.split(".")[0].strip('"'))
        try:
            assert all(reopened.key_for(s, create=True) is None for s in subjects[:25])
            assert all(reopened.key_for(s, create=False) == keys[s] for s in subjects[25:])
        finally:
            reopened.close()
    finally:
        store.close()
