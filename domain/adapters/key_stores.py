"""Subject-key stores: one AES-GCM key per data subject, in SQLite (embedded) or PostgreSQL.

They live apart from the event store (their own file, or their own table that may sit in another
database: ``OWNLLM_KEYS_DSN``), so a backup of the events alone holds nothing that unseals personal data.

A destroyed key must really go. SQLite keeps a deleted row's bytes in free pages unless
``secure_delete`` is on, and in the ``-wal`` file until a checkpoint (FACTS.md): the SQLite store
turns ``secure_delete`` on and checkpoints (TRUNCATE) after every destroy. PostgreSQL keeps the old
row version until VACUUM: the PostgreSQL store counts destroys and :meth:`PostgresKeyStore.vacuum`
(run by the policy sweeper on a schedule) vacuums the table. Backups and WAL archives still hold
the key until they rotate out: README, "Erasure and backups".
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any
from uuid import UUID

from domain.sealing import KeyStore

log = logging.getLogger(__name__)


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
        self._db.execute("PRAGMA secure_delete=ON")  # freed bytes are zeroed, not left in free pages
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

    _DESTROY = (
        "INSERT INTO subject_keys (subject_id, key, destroyed) VALUES (?, NULL, 1) "
        "ON CONFLICT(subject_id) DO UPDATE SET key=NULL, destroyed=1"
    )

    def _destroy(self, subject_id: UUID) -> None:
        self._db.execute(self._DESTROY, (str(subject_id),))
        self.checkpoint()

    def _destroy_many(self, subject_ids: list[UUID]) -> None:
        """One transaction and one checkpoint for the whole batch."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(self._DESTROY, [(str(s),) for s in subject_ids])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self.checkpoint()

    def checkpoint(self) -> bool:
        """Move the WAL into the database file and truncate it (the old key bytes go with it); False when a
        reader in another process kept part of it (the next destroy, or the next start, completes it)."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("subject-key store: checkpoint incomplete (a reader holds the WAL); retried later")
        return not busy

    def close(self) -> None:
        self.checkpoint()
        self._db.close()


class PostgresKeyStore(KeyStore):
    """Subject keys in a PostgreSQL table of their own (may be a different database or DSN).

    Connections come from a small pool that checks each one before lending it, and a statement
    that fails on a broken connection is retried on a fresh one: a PostgreSQL restart (or a
    failover) costs a reconnect, not a runner stopped at an event it cannot unseal. Every
    statement is idempotent (a read, an insert that keeps an existing key, a destroy), so a retry
    after a connection died mid-statement cannot store a second key.
    """

    ATTEMPTS = 5
    RETRY_PAUSE_S = 0.2

    def __init__(self, dsn: str, schema: str = "public", *, connect_timeout_s: float = 30.0) -> None:
        super().__init__()
        from psycopg_pool import ConnectionPool

        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=2,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=connect_timeout_s,
            name="ownllm-subject-keys",
            open=False,
        )
        self._pool.open(wait=True, timeout=connect_timeout_s)
        self._table = f'"{schema}".ownllm_subject_keys'
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            "subject_id uuid PRIMARY KEY, key bytea, destroyed boolean NOT NULL DEFAULT false)"
        )

    def _execute(self, query: str, params: tuple[object, ...] = (), many: list[tuple[object, ...]] | None = None
                 ) -> tuple[Any, ...] | None:  # fmt: skip
        """Run one statement (or, ``many``, it once per row in one transaction), on a fresh connection again
        when the one lent broke (a batch is repeated whole: our statements are idempotent); its first row."""
        import psycopg

        for attempt in range(1, self.ATTEMPTS + 1):
            try:
                with self._pool.connection() as conn:
                    if many is not None:
                        with conn.transaction(), conn.cursor() as cursor:
                            cursor.executemany(query, many)
                        return None
                    cursor = conn.execute(query, params)  # the table name is our own
                    return cursor.fetchone() if cursor.description else None
            except psycopg.OperationalError:
                if attempt == self.ATTEMPTS:
                    raise
                log.warning("subject-key store: connection lost, retrying (%d/%d)", attempt, self.ATTEMPTS)
                time.sleep(self.RETRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")

    def _load(self, subject_id: UUID) -> bytes | None:
        row = self._execute(f"SELECT key FROM {self._table} WHERE subject_id=%s", (subject_id,))
        return bytes(row[0]) if row and row[0] is not None else None

    def _was_destroyed(self, subject_id: UUID) -> bool:
        row = self._execute(f"SELECT destroyed FROM {self._table} WHERE subject_id=%s", (subject_id,))
        return bool(row and row[0])

    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        self._execute(
            f"INSERT INTO {self._table} (subject_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (subject_id, key),
        )
        stored = self._load(subject_id)
        return stored if stored is not None else key

    def _destroy(self, subject_id: UUID) -> None:
        self._execute(self._DESTROY.format(table=self._table), (subject_id,))
        self.destroyed_since_vacuum += 1

    def _destroy_many(self, subject_ids: list[UUID]) -> None:
        """One transaction for the whole batch."""
        self._execute(self._DESTROY.format(table=self._table), many=[(s,) for s in subject_ids])
        self.destroyed_since_vacuum += len(subject_ids)

    _DESTROY = ("INSERT INTO {table} (subject_id, key, destroyed) VALUES (%s, NULL, true) "
                "ON CONFLICT (subject_id) DO UPDATE SET key=NULL, destroyed=true")  # fmt: skip

    destroyed_since_vacuum = 0

    def vacuum(self) -> bool:
        """VACUUM the key table when keys were destroyed since the last one (their old row versions go);
        True when it ran. Plain VACUUM: no lock that stops readers."""
        if not self.destroyed_since_vacuum:
            return False
        count, self.destroyed_since_vacuum = self.destroyed_since_vacuum, 0
        try:
            self._execute(f"VACUUM {self._table}")
        except Exception:
            self.destroyed_since_vacuum += count
            raise
        return True

    def close(self) -> None:
        self._pool.close()
