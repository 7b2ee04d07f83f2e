"""The durable outbox of e-mail notices: a table (SQLite beside the event store, or PostgreSQL).

A notice is queued once per id (``INSERT ... ON CONFLICT DO NOTHING``), so whatever queues it may
do so again after a crash. Its recipient is a user id looked up when it is sent (only a notice to
someone who is no user yet, an invitation, holds an address); once the SMTP server accepted it,
the row keeps its id, kind, times and Message-ID, and its body and address are purged.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from uuid import UUID

Status = Literal["queued", "sent", "dropped"]
COLUMNS = (
    "id, kind, tenant_id, to_user, to_address, subject, body, created_at, attempts, next_attempt_at, status, "
    "sent_at, message_id, last_error"
)
_CREATE = """CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, tenant_id TEXT, to_user TEXT, to_address TEXT,
    subject TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'queued', sent_at TEXT, message_id TEXT,
    last_error TEXT)"""
MAX_ERROR = 300


@dataclass(frozen=True, slots=True)
class Notice:
    """One e-mail to one recipient: a user (looked up at send time) or, for invitations, an address."""

    id: UUID
    kind: str  # suspension, appeal_decision, invitation, generic
    subject: str
    body: str
    tenant_id: UUID | None = None
    to_user: UUID | None = None
    to_address: str | None = None
    created_at: datetime | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    status: Status = "queued"
    sent_at: datetime | None = None
    message_id: str | None = None
    last_error: str | None = None


def message_id_for(notice_id: UUID) -> str:
    """The Message-ID of every delivery of a notice: a receiver recognises a repeat by it."""
    return f"<{notice_id}@outbox.ownllm>"


class Outbox(Protocol):
    """Where notices wait until the SMTP server has accepted them."""

    def enqueue(self, notice: Notice, now: datetime) -> bool:
        """Queue ``notice`` unless its id is queued already; True when it is new."""
        ...

    def due(self, now: datetime, limit: int = 50) -> list[Notice]:
        """Queued notices whose next attempt is at or before ``now``, oldest first."""
        ...

    def sent(self, notice_id: UUID, now: datetime) -> None:
        """The server accepted it: record when, and purge its body and address."""
        ...

    def dropped(self, notice_id: UUID, now: datetime, why: str) -> None:
        """It cannot be sent (its recipient was erased): purge it and say why."""
        ...

    def failed(self, notice_id: UUID, error: str, next_attempt_at: datetime) -> None:
        """An attempt failed: count it and wait until ``next_attempt_at``."""
        ...

    def all(self, limit: int = 1000) -> list[Notice]:
        """Every notice, newest first."""
        ...


class SqlOutbox:
    """The outbox on a DB-API connection factory; ``placeholder`` is ``?`` (sqlite3) or ``%s`` (psycopg)."""

    def __init__(self, connect: Any, table: str, placeholder: str) -> None:
        self._connect = connect
        self.table = table
        self._p = placeholder
        self._lock = threading.Lock()
        with self._tx() as cur:
            cur.execute(_CREATE.format(table=table))

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock:
            conn = self._connect()
            try:
                cur = conn.cursor()
                yield cur
                conn.commit()
            finally:
                conn.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._p).replace("{t}", self.table)

    def enqueue(self, notice: Notice, now: datetime) -> bool:
        """Queue once per id."""
        sql = self._sql(
            "INSERT INTO {t} (id, kind, tenant_id, to_user, to_address, subject, body, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        )
        values = (str(notice.id), notice.kind, _text(notice.tenant_id), _text(notice.to_user), notice.to_address,
                  notice.subject, notice.body, _time(now), _time(now))  # fmt: skip
        with self._tx() as cur:
            cur.execute(sql, values)
            return bool(cur.rowcount)

    def due(self, now: datetime, limit: int = 50) -> list[Notice]:
        """Due notices, oldest first."""
        sql = self._sql(
            f"SELECT {COLUMNS} FROM {{t}} WHERE status = 'queued' AND next_attempt_at <= ? "
            "ORDER BY created_at, id LIMIT ?"
        )
        with self._tx() as cur:
            cur.execute(sql, (_time(now), limit))
            return [_notice(row) for row in cur.fetchall()]

    def sent(self, notice_id: UUID, now: datetime) -> None:
        """Mark sent and purge."""
        sql = self._sql(
            "UPDATE {t} SET status = 'sent', sent_at = ?, message_id = ?, body = '', to_address = NULL, "
            "attempts = attempts + 1, last_error = NULL WHERE id = ?"
        )
        with self._tx() as cur:
            cur.execute(sql, (_time(now), message_id_for(notice_id), str(notice_id)))

    def dropped(self, notice_id: UUID, now: datetime, why: str) -> None:
        """Give up on a notice and purge it."""
        sql = self._sql(
            "UPDATE {t} SET status = 'dropped', sent_at = ?, body = '', to_address = NULL, last_error = ? WHERE id = ?"
        )
        with self._tx() as cur:
            cur.execute(sql, (_time(now), why[:MAX_ERROR], str(notice_id)))

    def failed(self, notice_id: UUID, error: str, next_attempt_at: datetime) -> None:
        """Count a failed attempt."""
        sql = self._sql(
            "UPDATE {t} SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
            "WHERE id = ? AND status = 'queued'"
        )
        with self._tx() as cur:
            cur.execute(sql, (error[:MAX_ERROR], _time(next_attempt_at), str(notice_id)))

    def all(self, limit: int = 1000) -> list[Notice]:
        """Every notice, newest first."""
        with self._tx() as cur:
            cur.execute(self._sql(f"SELECT {COLUMNS} FROM {{t}} ORDER BY created_at DESC, id LIMIT ?"), (limit,))
            return [_notice(row) for row in cur.fetchall()]


def sqlite_outbox(path: str) -> SqlOutbox:
    """The embedded outbox: its own SQLite file (0600, made by the caller) beside the event store."""

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30)
        conn.execute("PRAGMA secure_delete=ON")  # a purged body leaves no bytes in free pages
        return conn

    return SqlOutbox(connect, "outbox_notices", "?")


def postgres_outbox(dsn: str, schema: str) -> SqlOutbox:
    """The outbox table in the deployment's PostgreSQL schema (shared by every API process)."""
    import psycopg

    def connect() -> Any:
        return psycopg.connect(dsn, connect_timeout=10)

    return SqlOutbox(connect, f'"{schema}".outbox_notices', "%s")


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds: text that sorts as time does."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _notice(row: tuple[Any, ...]) -> Notice:
    (id_, kind, tenant, user, address, subject, body, created, attempts, next_at, status, sent, mid, error) = row
    return Notice(
        UUID(id_), kind, subject, body, UUID(tenant) if tenant else None, UUID(user) if user else None, address,
        _when(created), attempts, _when(next_at), status, _when(sent), mid, error,
    )  # fmt: skip
