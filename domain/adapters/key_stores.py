"""Subject-key stores: one AES-GCM key per data subject, in SQLite (embedded) or PostgreSQL.

They live apart from the event store (their own file, or their own table that may sit in another
database), so a backup of the events alone holds nothing that unseals personal data.
"""

from __future__ import annotations

import sqlite3
from uuid import UUID

from domain.sealing import KeyStore


class SQLiteKeyStore(KeyStore):
    """Subject keys in their own SQLite file (not the event store's), for the embedded default."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS subject_keys ("
        "subject_id TEXT PRIMARY KEY, key BLOB, destroyed INTEGER NOT NULL DEFAULT 0)"
    )

    def __init__(self, path: str) -> None:
        super().__init__()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(self._DDL)

    def _load(self, subject_id: UUID) -> bytes | None:
        row = self._db.execute("SELECT key FROM subject_keys WHERE subject_id=?", (str(subject_id),)).fetchone()
        return row[0] if row else None

    def _was_destroyed(self, subject_id: UUID) -> bool:
        row = self._db.execute("SELECT destroyed FROM subject_keys WHERE subject_id=?", (str(subject_id),)).fetchone()
        return bool(row and row[0])

    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        self._db.execute("INSERT OR IGNORE INTO subject_keys (subject_id, key) VALUES (?, ?)", (str(subject_id), key))
        stored = self._load(subject_id)
        return stored if stored is not None else key

    def _destroy(self, subject_id: UUID) -> None:
        self._db.execute(
            "INSERT INTO subject_keys (subject_id, key, destroyed) VALUES (?, NULL, 1) "
            "ON CONFLICT(subject_id) DO UPDATE SET key=NULL, destroyed=1",
            (str(subject_id),),
        )

    def close(self) -> None:
        self._db.close()


class PostgresKeyStore(KeyStore):
    """Subject keys in a PostgreSQL table of their own (may be a different database or DSN)."""

    def __init__(self, dsn: str, schema: str = "public") -> None:
        super().__init__()
        import psycopg

        self._conn = psycopg.connect(dsn, autocommit=True)
        self._table = f'"{schema}".ownllm_subject_keys'
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            "subject_id uuid PRIMARY KEY, key bytea, destroyed boolean NOT NULL DEFAULT false)"
        )

    def _load(self, subject_id: UUID) -> bytes | None:
        row = self._conn.execute(f"SELECT key FROM {self._table} WHERE subject_id=%s", (subject_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def _was_destroyed(self, subject_id: UUID) -> bool:
        row = self._conn.execute(f"SELECT destroyed FROM {self._table} WHERE subject_id=%s", (subject_id,)).fetchone()
        return bool(row and row[0])

    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        self._conn.execute(
            f"INSERT INTO {self._table} (subject_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (subject_id, key),
        )
        stored = self._load(subject_id)
        return stored if stored is not None else key

    def _destroy(self, subject_id: UUID) -> None:
        self._conn.execute(
            f"INSERT INTO {self._table} (subject_id, key, destroyed) VALUES (%s, NULL, true) "
            "ON CONFLICT (subject_id) DO UPDATE SET key=NULL, destroyed=true",
            (subject_id,),
        )

    def close(self) -> None:
        self._conn.close()
