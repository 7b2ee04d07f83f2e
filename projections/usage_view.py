"""Usage per tenant, user, key, model, day and status as a tracked SQL read model.

The view and its tracking record are written in one transaction (eventsourcing's tracking
recorders), so each usage event is counted exactly once and the projection resumes where it
stopped instead of replaying history. It holds no personal data: only ids, model names and counts.
One process runs it (``OWNLLM_RUN_PROJECTIONS``); every API process reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier, Literal

from domain.usage import UsageRecord
from projections.log import Recorded, topics_of

TRACKING_NAME = "ownllm/usage"
COLUMNS = "tenant_id, user_id, key_id, model, day, status, requests, prompt_tokens, completion_tokens, duration_ms"


class StalePosition(Exception):
    """Another runner moved the projection on; re-read the position and skip what it applied."""


@dataclass(slots=True)
class UsageRow:
    """What one (day, model, user, key) cost, with requests counted per final status."""

    day: date
    model: str
    user_id: UUID
    key_id: UUID
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class UsageView(Protocol):
    """The tracked usage read model, on SQLite or PostgreSQL."""

    def position(self) -> int:
        """The last notification id this view has applied (0 when new)."""
        ...

    def apply(self, expected: int, tracking: Tracking, events: Sequence[UsageRecord.Recorded]) -> None:
        """Count ``events`` and move the tracking from ``expected`` to ``tracking``, atomically."""
        ...

    def rows(self, tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> list[UsageRow]:
        """One tenant's usage (optionally one user's) between two days, by day, model and key."""
        ...

    def clear(self) -> None:
        """Drop every row and the tracking record (before a rebuild)."""
        ...


def _params(event: UsageRecord.Recorded) -> tuple[Any, ...]:
    return (
        str(event.tenant_id), str(event.user_id), str(event.key_id), event.model,
        event.timestamp.date().isoformat(), event.status, 1, event.prompt_tokens,
        event.completion_tokens, event.duration_ms,
    )  # fmt: skip


def _fold(records: list[tuple[Any, ...]]) -> list[UsageRow]:
    """Rows per status into rows per (day, model, user, key) with ``by_status``."""
    folded: dict[tuple[Any, ...], UsageRow] = {}
    for day, model, user_id, key_id, status, requests, prompt, completion, duration in records:
        the_day = day if isinstance(day, date) else date.fromisoformat(day)
        key = (the_day, model, str(user_id), str(key_id))
        row = folded.setdefault(key, UsageRow(the_day, model, UUID(str(user_id)), UUID(str(key_id))))
        row.requests += requests
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.duration_ms += duration
        row.by_status[status] = row.by_status.get(status, 0) + requests
    return [folded[k] for k in sorted(folded, key=lambda k: (k[0], k[1], k[3]))]


def _filters(tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> tuple[str, list[Any]]:
    clauses, params = ["tenant_id = ?"], [str(tenant_id)]
    for clause, value in (("user_id = ?", user_id), ("day >= ?", since), ("day <= ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(str(value) if isinstance(value, UUID) else value.isoformat())  # type: ignore[union-attr]
    return " AND ".join(clauses), params


class SQLiteUsageView(SQLiteTrackingRecorder):
    """The usage view in the embedded SQLite event store file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS usage_daily (tenant_id TEXT, user_id TEXT, key_id TEXT, model TEXT, "
            "day TEXT, status TEXT, requests INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "duration_ms INTEGER, PRIMARY KEY (tenant_id, user_id, key_id, model, day, status))",
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(self, expected: int, tracking: Tracking, events: Sequence[UsageRecord.Recorded]) -> None:
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StalePosition
            for event in events:
                c.execute(
                    f"INSERT INTO usage_daily ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (tenant_id, user_id, key_id, model, day, status) DO UPDATE SET "
                    "requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens, "
                    "duration_ms = duration_ms + excluded.duration_ms",
                    _params(event),
                )
            self._insert_tracking(c, tracking)

    def rows(self, tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> list[UsageRow]:
        where, params = _filters(tenant_id, user_id, since, until)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT day, model, user_id, key_id, status, requests, prompt_tokens, completion_tokens, duration_ms "
                f"FROM usage_daily WHERE {where}",
                params,
            )
            return _fold([tuple(r) for r in c.fetchall()])

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM usage_daily")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])


class PostgresUsageView(PostgresTrackingRecorder):
    """The usage view in the event store's PostgreSQL schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier("ownllm_usage_daily"))
        self.tracking = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.tracking_table_name))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (tenant_id uuid, user_id uuid, key_id uuid, model text, day date, "
                "status text, requests bigint, prompt_tokens bigint, completion_tokens bigint, duration_ms bigint, "
                "PRIMARY KEY (tenant_id, user_id, key_id, model, day, status))"
            ).format(self.table)
        )
        # The row exists from the start, so ``FOR UPDATE`` always has something to lock.
        self.sql_create_statements.append(
            SQL("INSERT INTO {} VALUES ({}, 0) ON CONFLICT DO NOTHING").format(self.tracking, Literal(TRACKING_NAME))
        )

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(self, expected: int, tracking: Tracking, events: Sequence[UsageRecord.Recorded]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("SELECT notification_id FROM {} WHERE application_name = %s FOR UPDATE").format(self.tracking),
                (TRACKING_NAME,),
            )
            found = curs.fetchone()
            if (found["notification_id"] if found else 0) != expected:
                raise StalePosition
            if events:
                curs.executemany(
                    SQL(
                        "INSERT INTO {} (" + COLUMNS + ") VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT (tenant_id, user_id, key_id, model, day, status) DO UPDATE SET "
                        "requests = {t}.requests + excluded.requests, "
                        "prompt_tokens = {t}.prompt_tokens + excluded.prompt_tokens, "
                        "completion_tokens = {t}.completion_tokens + excluded.completion_tokens, "
                        "duration_ms = {t}.duration_ms + excluded.duration_ms"
                    ).format(self.table, t=Identifier("ownllm_usage_daily")),
                    [_params(e) for e in events],
                )
            self._insert_tracking(curs, tracking)

    def rows(self, tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> list[UsageRow]:
        where, params = _filters(tenant_id, user_id, since, until)
        query = SQL(
            "SELECT day, model, user_id, key_id, status, requests, prompt_tokens, completion_tokens, duration_ms "
            "FROM {} WHERE " + where.replace("?", "%s")
        ).format(self.table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return _fold([tuple(r.values()) for r in curs.fetchall()])

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}").format(self.table))
            curs.execute(
                SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                (TRACKING_NAME,),
            )


class UsageProjection:
    """Feeds ``UsageRecord.Recorded`` events to the view, exactly once, batch by batch."""

    name = "usage"
    topics = topics_of([UsageRecord.Recorded])

    def __init__(self, view: UsageView) -> None:
        self.view = view
        self.position = view.position()

    def stored_position(self) -> int:
        """The view's position as its tracking record says (another process may have moved it)."""
        return self.view.position()

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        """Count the usage records after the view's position and move it to ``through``, atomically.

        ``records`` are every usage record after ``self.position`` up to ``through`` (the runner reads
        them by topic). When another runner moved the view on first, only what it has not applied is
        counted; when the view went back (a rebuild elsewhere) nothing is applied and the runner reads
        again from the view's position.
        """
        start = self.position
        for _ in range(5):
            if self.position >= through or self.position < start:
                return
            usage = [
                r.event for r in records
                if r.notification_id > self.position and isinstance(r.event, UsageRecord.Recorded)
            ]  # fmt: skip
            try:
                self.view.apply(self.position, Tracking(TRACKING_NAME, through), usage)
            except (StalePosition, IntegrityError):
                self.position = self.view.position()  # another runner got there first: never count twice
                continue
            self.position = through
            return
        raise StalePosition("usage projection kept losing races; is more than one runner configured?")

    def process_batch(self, events: Sequence[tuple[int, Any]]) -> None:
        """Apply the usage events of one batch of (notification id, event) newer than the view."""
        for _ in range(5):
            fresh = [(n, e) for n, e in events if n > self.position]
            usage = [e for _, e in fresh if isinstance(e, UsageRecord.Recorded)]
            if not usage:
                return
            last = fresh[-1][0]
            try:
                self.view.apply(self.position, Tracking(TRACKING_NAME, last), usage)
            except (StalePosition, IntegrityError):
                self.position = self.view.position()  # another runner got there first: never count twice
                continue
            self.position = last
            return
        raise StalePosition("usage projection kept losing races; is more than one runner configured?")

    def clear(self) -> None:
        """Drop every row and go back to position 0 (before ``ownllm projections rebuild usage``)."""
        self.view.clear()
        self.position = 0

    def rebuild(self, events: Sequence[tuple[int, Any]]) -> None:
        """Start again from nothing, then apply ``events`` ((notification id, event) pairs)."""
        self.clear()
        self.process_batch(events)

    def query(self, tenant_id: UUID, *, user_id: UUID | None = None, since: date | None = None,
              until: date | None = None) -> list[UsageRow]:  # fmt: skip
        """The view's rows (reads the database: the dashboard, not the hot path)."""
        return self.view.rows(tenant_id, user_id, since, until)
