"""Storage for the reaction runner: handlers' failures, and the locks that keep one runner per handler."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from projections.reactions import Failure

STATUS_TABLE = "ownllm_reaction_status"
_LOCK_PREFIX = "ownllm reaction "


class SQLReactionStatus:
    """Failures in a small table beside the events (SQLite or PostgreSQL), one row per failing handler."""

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore) -> None:
        self.datastore = datastore
        self.postgres = isinstance(datastore, PostgresDatastore)
        self.table = (
            f'"{datastore.schema}".{STATUS_TABLE}' if isinstance(datastore, PostgresDatastore) else STATUS_TABLE
        )
        self._execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (name TEXT PRIMARY KEY, failures INTEGER NOT NULL, "
            "last_error TEXT NOT NULL, at TEXT NOT NULL)"
        )

    def failed(self, name: str, failure: Failure) -> None:
        """Remember the handler's latest failure."""
        self._execute(
            f"INSERT INTO {self.table} (name, failures, last_error, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET failures = excluded.failures, last_error = excluded.last_error, "
            "at = excluded.at",
            (name, failure.failures, failure.last_error, failure.at.isoformat()),
        )

    def recovered(self, name: str) -> None:
        """The handler works again: forget its failure."""
        self._execute(f"DELETE FROM {self.table} WHERE name = ?", (name,))

    def failures(self) -> dict[str, Failure]:
        """Every failing handler's latest failure."""
        rows = self._execute(f"SELECT name, failures, last_error, at FROM {self.table}", fetch=True)
        return {_get(r, 0, "name"): _failure(r) for r in rows}

    def _execute(self, sql: str, params: tuple[Any, ...] = (), *, fetch: bool = False) -> list[Any]:
        if self.postgres:
            sql = sql.replace("?", "%s")
        with self.datastore.transaction(commit=not fetch) as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if fetch else []


def _get(row: Any, index: int, name: str) -> Any:
    """A column of a tuple-like (SQLite) or dict-like (psycopg) row."""
    return row[name] if isinstance(row, dict) else row[index]


def _failure(row: Any) -> Failure:
    return Failure(
        int(_get(row, 1, "failures")), str(_get(row, 2, "last_error")), datetime.fromisoformat(_get(row, 3, "at"))
    )


class FileLocks:
    """One process per handler on one machine (the embedded SQLite store): ``flock`` on a file per handler."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, name: str) -> bool:
        """True when this process holds the handler's lock (taken now if free)."""
        with self._lock:
            if name in self._held:
                return True
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._held[name] = fd
            return True

    def release_all(self) -> None:
        """Give every lock back (closing the file releases the flock)."""
        with self._lock:
            for fd in self._held.values():
                os.close(fd)
            self._held.clear()


class PostgresLocks:
    """One process per handler across every API process: a session advisory lock per handler.

    Each held lock has its own connection; if that connection dies, the server releases the lock,
    so the next call notices (the liveness query fails) and competes for it again.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._held: dict[str, psycopg.Connection[Any]] = {}
        self._lock = threading.Lock()

    def acquire(self, name: str) -> bool:
        """True when this process holds the handler's advisory lock (taken now if free)."""
        with self._lock:
            conn = self._held.get(name)
            if conn is not None:
                try:
                    conn.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    self._drop(name)
            try:
                conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            except psycopg.Error:
                return False
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_LOCK_PREFIX + name,)).fetchone()
            if not (row and row[0]):
                conn.close()
                return False
            self._held[name] = conn
            return True

    def release_all(self) -> None:
        """Give every lock back by closing its connection."""
        with self._lock:
            for name in list(self._held):
                self._drop(name)

    def _drop(self, name: str) -> None:
        conn = self._held.pop(name)
        with contextlib.suppress(psycopg.Error):
            conn.close()


class ProcessLocks:
    """Every handler runs here (one process by construction: tests, the in-memory store)."""

    def acquire(self, name: str) -> bool:
        """Always held."""
        return True

    def release_all(self) -> None:
        """Nothing to give back."""
