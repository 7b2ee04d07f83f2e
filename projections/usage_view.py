"""Usage per tenant, user, key, model, day and status as a tracked SQL read model.

The view and its tracking record are written in one transaction (eventsourcing's tracking
recorders), so each usage event is counted exactly once and the projection resumes where it
stopped instead of replaying history. It holds no personal data: only ids, model names and counts.
One process runs it (``OWNLLM_RUN_PROJECTIONS``); every API process reads it.

Agents are untrusted (issue 13): the proxy validates their token counts, but a record that still
cannot be counted (a negative or absurd value, from an older proxy or a bug) must never stop the
view for every tenant behind it. Such a record is *quarantined*: not counted, its notification id
and reason kept in a small table (``usage_quarantine``) in the same transaction as the rest of its
batch, logged, and shown by ``ownllm projections status``; the rest of the batch and later events
apply as usual.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

TRACKING_NAME = "ownllm/usage"
# The largest count one record may add. No request costs a trillion tokens or milliseconds, and
# with this bound a row's sums stay far below the 64-bit columns' limit (2**63 - 1) for 2**23 records.
MAX_RECORD_VALUE = 2**40
QUARANTINE = "usage_quarantine"
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

    def apply(
        self,
        expected: int,
        tracking: Tracking,
        events: Sequence[UsageRecord.Recorded],
        quarantined: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Count ``events``, keep the ``quarantined`` (notification id, reason)s, and move the tracking
        from ``expected`` to ``tracking``, atomically."""
        ...

    def quarantined(self) -> list[tuple[int, str]]:
        """The (notification id, reason) of every record that was not counted, oldest first."""
        ...

    def rows(self, tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> list[UsageRow]:
        """One tenant's usage (optionally one user's) between two days, by day, model and key."""
        ...

    def clear(self) -> None:
        """Drop every row and the tracking record (before a rebuild)."""
        ...


def unfit(event: UsageRecord.Recorded) -> str | None:
    """Why a usage record cannot be counted (a value out of range), or None when it can."""
    for name in ("prompt_tokens", "completion_tokens", "duration_ms"):
        value = getattr(event, name, None)
        if type(value) is not int or not 0 <= value <= MAX_RECORD_VALUE:
            return f"{name} out of range"
    return None


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
            f"CREATE TABLE IF NOT EXISTS {QUARANTINE} (notification_id INTEGER PRIMARY KEY, reason TEXT NOT NULL)",
        ]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(
        self,
        expected: int,
        tracking: Tracking,
        events: Sequence[UsageRecord.Recorded],
        quarantined: Sequence[tuple[int, str]] = (),
    ) -> None:
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StalePosition
            for notification_id, reason in quarantined:
                c.execute(f"INSERT INTO {QUARANTINE} VALUES (?, ?) ON CONFLICT DO NOTHING", (notification_id, reason))
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

    def quarantined(self) -> list[tuple[int, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT notification_id, reason FROM {QUARANTINE} ORDER BY notification_id")
            return [(r[0], r[1]) for r in c.fetchall()]

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM usage_daily")
            c.execute(f"DELETE FROM {QUARANTINE}")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])


class PostgresUsageView(PostgresTrackingRecorder):
    """The usage view in the event store's PostgreSQL schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier("ownllm_usage_daily"))
        self.tracking = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.tracking_table_name))
        self.quarantine = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier("ownllm_" + QUARANTINE))
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {} (notification_id bigint PRIMARY KEY, reason text NOT NULL)").format(
                self.quarantine
            )
        )
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

    def apply(
        self,
        expected: int,
        tracking: Tracking,
        events: Sequence[UsageRecord.Recorded],
        quarantined: Sequence[tuple[int, str]] = (),
    ) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("SELECT notification_id FROM {} WHERE application_name = %s FOR UPDATE").format(self.tracking),
                (TRACKING_NAME,),
            )
            found = curs.fetchone()
            if (found["notification_id"] if found else 0) != expected:
                raise StalePosition
            if quarantined:
                curs.executemany(
                    SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self.quarantine),
                    list(quarantined),
                )
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

    def quarantined(self) -> list[tuple[int, str]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT notification_id, reason FROM {} ORDER BY notification_id").format(self.quarantine))
            return [(r["notification_id"], r["reason"]) for r in curs.fetchall()]

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}").format(self.table))
            curs.execute(SQL("DELETE FROM {}").format(self.quarantine))
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
            usage, quarantined = _sort_out(
                (r.notification_id, r.event) for r in records if r.notification_id > self.position
            )
            try:
                self.view.apply(self.position, Tracking(TRACKING_NAME, through), usage, quarantined)
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
            usage, quarantined = _sort_out(fresh)
            if not usage and not quarantined:
                return
            last = fresh[-1][0]
            try:
                self.view.apply(self.position, Tracking(TRACKING_NAME, last), usage, quarantined)
            except (StalePosition, IntegrityError):
                self.position = self.view.position()  # another runner got there first: never count twice
                continue
            self.position = last
            return
        raise StalePosition("usage projection kept losing races; is more than one runner configured?")

    def quarantined(self) -> list[tuple[int, str]]:
        """The (notification id, reason) of the records that were not counted (``projections status``)."""
        return self.view.quarantined()

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


def _sort_out(
    events: Any,
) -> tuple[list[UsageRecord.Recorded], list[tuple[int, str]]]:
    """The usage records that can be counted, and the (notification id, reason) of those that cannot."""
    usage: list[UsageRecord.Recorded] = []
    quarantined: list[tuple[int, str]] = []
    for notification_id, event in events:
        if not isinstance(event, UsageRecord.Recorded):
            continue
        reason = unfit(event)
        if reason is None:
            usage.append(event)
        else:
            log.error("usage record at notification %d quarantined, not counted: %s", notification_id, reason)
            quarantined.append((notification_id, reason))
    return usage, quarantined
