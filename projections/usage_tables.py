"""The usage view's tables: :class:`SQLiteUsageView` (in the embedded store's file) and
:class:`PostgresUsageView`, eventsourcing tracking recorders that write rows and position together."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier, Literal

from domain.usage import UsageRecord
from projections.tracking import check_locked_position
from projections.usage_view import COLUMNS, QUARANTINE, TRACKING_NAME, RefusedRow, StalePosition, UsageRow


def _params(event: UsageRecord.Recorded | RefusedRow) -> tuple[Any, ...]:
    return (
        str(event.tenant_id), str(event.user_id), str(event.key_id), event.model,
        event.timestamp.date().isoformat(), event.status, getattr(event, "requests", 1), event.prompt_tokens,
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


_SELECT = "SELECT day, model, user_id, key_id, status, requests, prompt_tokens, completion_tokens, duration_ms FROM "


class _UsageTable(TrackingRecorder):
    """What both tables do alike: the position, each event as its stored values, and the folded read."""

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(
        self,
        expected: int,
        tracking: Tracking,
        events: Sequence[UsageRecord.Recorded | RefusedRow],
        quarantined: Sequence[tuple[int, str]] = (),
        purged: Sequence[UUID] = (),
    ) -> None:
        self._write(expected, tracking, [_params(e) for e in events], quarantined, purged)

    def rows(self, tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> list[UsageRow]:
        where, params = _filters(tenant_id, user_id, since, until)
        return _fold(self._select(where, params))

    @abstractmethod
    def _write(
        self, expected: int, tracking: Tracking, rows: list[tuple[Any, ...]], quarantined: Sequence[tuple[int, str]],
        purged: Sequence[UUID],
    ) -> None:  # fmt: skip
        """Add ``rows`` (stored values) to the counts, keep the ``quarantined``, drop the ``purged`` tenants' rows,
        move the tracking, atomically."""

    @abstractmethod
    def _select(self, where: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """The per-status rows matching ``where`` (``?`` placeholders), as tuples."""


class SQLiteUsageView(_UsageTable, SQLiteTrackingRecorder):
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

    def _write(
        self, expected: int, tracking: Tracking, rows: list[tuple[Any, ...]], quarantined: Sequence[tuple[int, str]],
        purged: Sequence[UUID],
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StalePosition
            for notification_id, reason in quarantined:
                c.execute(f"INSERT INTO {QUARANTINE} VALUES (?, ?) ON CONFLICT DO NOTHING", (notification_id, reason))
            for row in rows:
                c.execute(
                    f"INSERT INTO usage_daily ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (tenant_id, user_id, key_id, model, day, status) DO UPDATE SET "
                    "requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens, "
                    "duration_ms = duration_ms + excluded.duration_ms",
                    row,
                )
            for tenant_id in purged:
                c.execute("DELETE FROM usage_daily WHERE tenant_id = ?", (str(tenant_id),))
            self._insert_tracking(c, tracking)

    def _select(self, where: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"{_SELECT}usage_daily WHERE {where}", params)
            return [tuple(r) for r in c.fetchall()]

    def quarantined(self) -> list[tuple[int, str]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT notification_id, reason FROM {QUARANTINE} ORDER BY notification_id")
            return [(r[0], r[1]) for r in c.fetchall()]

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM usage_daily")
            c.execute(f"DELETE FROM {QUARANTINE}")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])


class PostgresUsageView(_UsageTable, PostgresTrackingRecorder):
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

    def _write(
        self, expected: int, tracking: Tracking, rows: list[tuple[Any, ...]], quarantined: Sequence[tuple[int, str]],
        purged: Sequence[UUID],
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as curs:
            check_locked_position(curs, self.tracking, TRACKING_NAME, expected, StalePosition)
            if quarantined:
                curs.executemany(
                    SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self.quarantine),
                    list(quarantined),
                )
            if rows:
                curs.executemany(
                    SQL(
                        "INSERT INTO {} (" + COLUMNS + ") VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                        "ON CONFLICT (tenant_id, user_id, key_id, model, day, status) DO UPDATE SET "
                        "requests = {t}.requests + excluded.requests, "
                        "prompt_tokens = {t}.prompt_tokens + excluded.prompt_tokens, "
                        "completion_tokens = {t}.completion_tokens + excluded.completion_tokens, "
                        "duration_ms = {t}.duration_ms + excluded.duration_ms"
                    ).format(self.table, t=Identifier("ownllm_usage_daily")),
                    rows,
                )
            for tenant_id in purged:
                curs.execute(SQL("DELETE FROM {} WHERE tenant_id = %s").format(self.table), (tenant_id,))
            self._insert_tracking(curs, tracking)

    def _select(self, where: str, params: list[Any]) -> list[tuple[Any, ...]]:
        query = SQL(_SELECT + "{} WHERE " + where.replace("?", "%s")).format(self.table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, params)
            return [tuple(r.values()) for r in curs.fetchall()]

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
