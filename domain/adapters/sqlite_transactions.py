"""SQLite write transactions take the write lock when they begin, so concurrent writers wait instead of failing.

eventsourcing 9.5.6 opens every SQLite transaction with a plain (deferred) ``BEGIN``. A write
transaction that reads first (a tracked view checking its position, ``CREATE TABLE IF NOT EXISTS``
at start, the tracking-table migration) then holds a read snapshot; if another connection commits
before it writes, its upgrade to a write lock fails AT ONCE with "database is locked"
(``SQLITE_BUSY_SNAPSHOT``: SQLite cannot wait for a snapshot that is already stale). Seen as a
flaky start of a second process on a busy store (the CLI next to ``ownllm serve``). ``BEGIN
IMMEDIATE`` takes the write lock first, so a second writer waits (up to the connection's busy
timeout) and then reads a current snapshot. Read-only transactions stay deferred.
"""

from __future__ import annotations

from eventsourcing.sqlite import SQLiteCursor, SQLiteTransaction

_library_enter = SQLiteTransaction.__enter__


def _enter(self: SQLiteTransaction) -> SQLiteCursor:
    cursor = self.connection.cursor()
    cursor.execute("BEGIN IMMEDIATE" if self.commit else "BEGIN")
    return cursor


def begin_writes_immediately() -> None:
    """Make every SQLite write transaction of this process ``BEGIN IMMEDIATE`` (idempotent)."""
    SQLiteTransaction.__enter__ = _enter  # type: ignore[method-assign]


def library_behaviour() -> None:
    """Back to the library's deferred ``BEGIN`` (for the test that shows why)."""
    SQLiteTransaction.__enter__ = _library_enter  # type: ignore[method-assign]
