"""The locks that keep at most one runner per reaction handler: a file lock, or a PostgreSQL advisory lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import psycopg

_LOCK_PREFIX = "ownllm reaction "


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
