"""Where each reader of the notification log stands: position, head, lag, failures.

Generic over its sources: a read model, or anything else that tracks a position in the log (the
reaction handlers will show here too). A source is a name, a kind and a way to read its position
*as any process sees it* (a tracked projection reads its tracking record; an in-memory one can only
report the process that asks). Failures are remembered by the process that runs the reader and
persisted in a one-row-per-name table next to the events (:class:`FailureLog`), so ``ownllm
projections status``, another process, can show them. Only the exception's type is stored, as the
runner logs it: a database error's message may quote row values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from eventsourcing.persistence import ApplicationRecorder, IntegrityError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

TABLE = "ownllm_read_model_status"


@dataclass(frozen=True, slots=True)
class Source:
    """Something that reads the log: its name, its kind (in-memory, tracked, reaction) and its position."""

    name: str
    kind: str
    position: Callable[[], int]


@dataclass(frozen=True, slots=True)
class Failures:
    """A reader's failures: how many in a row (0 once it succeeds again) and the last one."""

    failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """One row of the status table."""

    name: str
    kind: str
    position: int
    head: int
    lag: int  # notifications recorded after ``position``
    failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None


def collect_status(sources: Iterable[Source], head: int, failures: Mapping[str, Failures]) -> list[ReaderStatus]:
    """The status of every source against the log's head, with what is known of its failures."""
    rows = []
    for source in sources:
        position = source.position()
        known = failures.get(source.name, Failures())
        rows.append(
            ReaderStatus(
                source.name, source.kind, position, head, max(0, head - position),
                known.failures, known.last_error, known.last_error_at,
            )
        )  # fmt: skip
    return rows


class FailureLog(Protocol):
    """Where readers' failures are kept for other processes to see."""

    def failed(self, name: str, error: str, at: datetime, failures: int) -> None:
        """``name`` has failed ``failures`` times in a row, the last time with ``error``."""
        ...

    def recovered(self, name: str) -> None:
        """``name`` succeeded again (its last error stays on record)."""
        ...

    def load(self) -> dict[str, Failures]:
        """Every reader's failures by name."""
        ...


class MemoryFailureLog:
    """Failures of this process only (the in-memory event store)."""

    def __init__(self) -> None:
        self.rows: dict[str, Failures] = {}

    def failed(self, name: str, error: str, at: datetime, failures: int) -> None:
        self.rows[name] = Failures(failures, error, at)

    def recovered(self, name: str) -> None:
        known = self.rows.get(name, Failures())
        self.rows[name] = Failures(0, known.last_error, known.last_error_at)

    def load(self) -> dict[str, Failures]:
        return dict(self.rows)


class SQLiteFailureLog:
    """Failures in a small table of the SQLite event store file."""

    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, failures INTEGER NOT NULL, "
                "last_error TEXT, last_error_at TEXT)"
            )

    def failed(self, name: str, error: str, at: datetime, failures: int) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "failures = excluded.failures, last_error = excluded.last_error, "
                "last_error_at = excluded.last_error_at",
                (name, failures, error, at.isoformat()),
            )

    def recovered(self, name: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"UPDATE {TABLE} SET failures = 0 WHERE name = ?", (name,))

    def load(self) -> dict[str, Failures]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT name, failures, last_error, last_error_at FROM {TABLE}")
            return {
                row["name"]: Failures(
                    row["failures"],
                    row["last_error"],
                    datetime.fromisoformat(row["last_error_at"]) if row["last_error_at"] else None,
                )
                for row in c.fetchall()
            }


class PostgresFailureLog:
    """Failures in a small table of the event store's PostgreSQL schema."""

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        self.table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(TABLE))
        # (two processes creating it at the same moment: one of them sees a unique violation)
        with contextlib.suppress(IntegrityError), self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, failures bigint NOT NULL, "
                    "last_error text, last_error_at timestamptz)"
                ).format(self.table)
            )

    def failed(self, name: str, error: str, at: datetime, failures: int) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                    "failures = excluded.failures, last_error = excluded.last_error, "
                    "last_error_at = excluded.last_error_at"
                ).format(self.table),
                (name, failures, error, at),
            )

    def recovered(self, name: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("UPDATE {} SET failures = 0 WHERE name = %s").format(self.table), (name,))

    def load(self) -> dict[str, Failures]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT name, failures, last_error, last_error_at FROM {}").format(self.table))
            return {
                row["name"]: Failures(row["failures"], row["last_error"], row["last_error_at"])
                for row in curs.fetchall()
            }


def failure_log_for(recorder: ApplicationRecorder) -> FailureLog:
    """The failure log that lives with the event store (the process's memory for POPO)."""
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteFailureLog(recorder)
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresFailureLog(recorder)
    return MemoryFailureLog()


def utc_now() -> datetime:
    """When a failure happened."""
    return datetime.now(UTC)
