"""The credit view's tables: :class:`SQLiteCreditTables` (in the embedded store's file) and
:class:`PostgresCreditTables`, eventsourcing tracking recorders that write rows and position together."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier, Literal

from projections.credit_view import TRACKING_NAME, LotRow, MovementRow, NoticeRow, Op, StalePosition
from projections.tracking import check_locked_position

TABLES = ("credit_lots", "credit_movements", "credit_modes", "credit_notices")
DDL = {
    "credit_lots": "(tenant_id {uuid}, lot_id {uuid} PRIMARY KEY, payment_id TEXT, amount_cents BIGINT, "
    "purchased_at {ts}, expires_at {ts}, remaining_micro BIGINT, state TEXT)",
    "credit_movements": "(position BIGINT PRIMARY KEY, tenant_id {uuid}, at {ts}, kind TEXT, amount_micro BIGINT, "
    "lot_id {uuid}, usage_request_id TEXT, model TEXT, price_version BIGINT, shortfall_micro BIGINT)",
    "credit_modes": "(tenant_id {uuid} PRIMARY KEY, mode TEXT, debits BOOLEAN)",
    "credit_notices": "(position BIGINT, tenant_id {uuid}, model TEXT, input_per_million BIGINT, "
    "output_per_million BIGINT, effective_at {ts}, scheduled_at {ts}, version BIGINT, sent_at {ts}, "
    "PRIMARY KEY (position, tenant_id))",
}
WRITES = {
    "lot": "INSERT INTO {credit_lots} VALUES (?, ?, ?, ?, ?, ?, ?, 'open') ON CONFLICT DO NOTHING",
    "move": "INSERT INTO {credit_movements} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    "take": "UPDATE {credit_lots} SET remaining_micro = remaining_micro - ? WHERE lot_id = ?",
    "close": "UPDATE {credit_lots} SET state = ?, remaining_micro = 0 WHERE lot_id = ?",
    "mode": "INSERT INTO {credit_modes} VALUES (?, ?, ?) "
    "ON CONFLICT (tenant_id) DO UPDATE SET mode = excluded.mode, debits = excluded.debits",
    "notices": "INSERT INTO {credit_notices} SELECT ?, tenant_id, ?, ?, ?, ?, ?, ?, NULL FROM {credit_modes} "
    "WHERE debits ON CONFLICT DO NOTHING",
}
_LOT = "SELECT lot_id, payment_id, amount_cents, purchased_at, expires_at, remaining_micro, state FROM {credit_lots} "
_MOVE = ("SELECT position, at, kind, amount_micro, lot_id, usage_request_id, model, price_version, shortfall_micro "
         "FROM {credit_movements} ")  # fmt: skip
_NOTICE = ("SELECT position, tenant_id, model, input_per_million, output_per_million, effective_at, scheduled_at, "
           "version FROM {credit_notices} ")  # fmt: skip
READS = {
    "lots": _LOT + "WHERE tenant_id = ? ORDER BY purchased_at, lot_id",
    "balance": "SELECT coalesce(sum(remaining_micro), 0) FROM {credit_lots} "
    "WHERE tenant_id = ? AND state = 'open' AND expires_at > ?",
    "movements": _MOVE + "WHERE tenant_id = ? AND position > ? ORDER BY position LIMIT ?",
    "count": "SELECT count(*) FROM {credit_movements} WHERE tenant_id = ?",
    "due": "SELECT DISTINCT tenant_id FROM {credit_lots} WHERE state = 'open' AND expires_at <= ?",
    "pending": _NOTICE + "WHERE sent_at IS NULL ORDER BY position, tenant_id LIMIT ?",
}


class _CreditTables(TrackingRecorder):
    """What both dialects share: the ops' and reads' SQL, and turning rows into values."""

    names: dict[str, str]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def lots(self, tenant_id: UUID) -> list[LotRow]:
        rows = self._read("lots", (self._p(tenant_id),))
        return [LotRow(self._uuid(r[0]), r[1], r[2], self._dt(r[3]), self._dt(r[4]), r[5], r[6]) for r in rows]

    def balance(self, tenant_id: UUID, now: datetime) -> int:
        return int(self._read("balance", (self._p(tenant_id), self._p(now)))[0][0])

    def movements(self, tenant_id: UUID, after: int, limit: int) -> list[MovementRow]:
        rows = self._read("movements", (self._p(tenant_id), after, limit))
        return [MovementRow(r[0], self._dt(r[1]), r[2], r[3], None if r[4] is None else self._uuid(r[4]), r[5], r[6],
                            r[7], r[8]) for r in rows]  # fmt: skip

    def count_movements(self, tenant_id: UUID) -> int:
        return int(self._read("count", (self._p(tenant_id),))[0][0])

    def due_tenants(self, now: datetime) -> list[UUID]:
        return [self._uuid(r[0]) for r in self._read("due", (self._p(now),))]

    def pending_notices(self, limit: int) -> list[NoticeRow]:
        return [NoticeRow(r[0], self._uuid(r[1]), r[2], r[3], r[4], self._dt(r[5]), self._dt(r[6]), r[7])
                for r in self._read("pending", (limit,))]  # fmt: skip

    def _ops(self, ops: Sequence[Op]) -> list[tuple[str, tuple[Any, ...]]]:
        return [(WRITES[name].format(**self.names), tuple(self._p(v) for v in values)) for name, values in ops]

    @staticmethod
    def _uuid(value: Any) -> UUID:
        return value if isinstance(value, UUID) else UUID(str(value))

    @staticmethod
    def _dt(value: Any) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)

    @abstractmethod
    def _p(self, value: Any) -> Any:
        """A value as this dialect binds it."""

    @abstractmethod
    def _read(self, name: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of one of READS."""


class SQLiteCreditTables(_CreditTables, SQLiteTrackingRecorder):
    """The credit view in the embedded SQLite event store file."""

    names = {t: t for t in TABLES}

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *(f"CREATE TABLE IF NOT EXISTS {t} " + DDL[t].format(uuid="TEXT", ts="TEXT") for t in TABLES),
            "CREATE INDEX IF NOT EXISTS credit_movements_tenant ON credit_movements (tenant_id, position)",
            "CREATE INDEX IF NOT EXISTS credit_lots_tenant ON credit_lots (tenant_id, purchased_at)",
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def _p(self, value: Any) -> Any:
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, datetime):  # one fixed-width form, so text order is time order
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
        return value

    def apply(self, expected: int, tracking: Tracking, ops: Sequence[Op]) -> None:
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StalePosition
            for sql, params in self._ops(ops):
                c.execute(sql, params)
            self._insert_tracking(c, tracking)

    def _read(self, name: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(READS[name].format(**self.names), params)
            return [tuple(r) for r in c.fetchall()]

    def mark_sent(self, notices: Sequence[tuple[int, UUID]], at: datetime) -> None:
        with self.datastore.transaction(commit=True) as c:
            for position, tenant_id in notices:
                c.execute("UPDATE credit_notices SET sent_at = ? WHERE position = ? AND tenant_id = ?",
                          (self._p(at), position, str(tenant_id)))  # fmt: skip

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for table in TABLES:
                c.execute(f"DELETE FROM {table}")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])


class PostgresCreditTables(_CreditTables, PostgresTrackingRecorder):
    """The credit view in the event store's PostgreSQL schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = self.datastore.schema
        self.names = {t: f'"{schema}"."ownllm_{t}"' for t in TABLES}
        self.tracking = SQL("{}.{}").format(Identifier(schema), Identifier(self.tracking_table_name))
        for table in TABLES:
            ddl = DDL[table].format(uuid="uuid", ts="timestamptz")
            self.sql_create_statements.append(SQL(f"CREATE TABLE IF NOT EXISTS {self.names[table]} {ddl}"))  # type: ignore[arg-type]
        self.sql_create_statements.append(SQL(
            f"CREATE INDEX IF NOT EXISTS ownllm_credit_movements_tenant ON {self.names['credit_movements']} "
            "(tenant_id, position)"))  # type: ignore[arg-type]  # fmt: skip
        self.sql_create_statements.append(
            SQL("INSERT INTO {} VALUES ({}, 0) ON CONFLICT DO NOTHING").format(self.tracking, Literal(TRACKING_NAME))
        )

    def _p(self, value: Any) -> Any:
        return value

    def apply(self, expected: int, tracking: Tracking, ops: Sequence[Op]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            check_locked_position(curs, self.tracking, TRACKING_NAME, expected, StalePosition)
            for sql, params in self._ops(ops):
                curs.execute(sql.replace("?", "%s"), params)  # type: ignore[call-overload]
            self._insert_tracking(curs, tracking)

    def _read(self, name: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(READS[name].format(**self.names).replace("?", "%s"), params)  # type: ignore[call-overload]
            return [tuple(r.values()) for r in curs.fetchall()]

    def mark_sent(self, notices: Sequence[tuple[int, UUID]], at: datetime) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for position, tenant_id in notices:
                curs.execute(f"UPDATE {self.names['credit_notices']} SET sent_at = %s "  # type: ignore[call-overload]
                             "WHERE position = %s AND tenant_id = %s", (at, position, tenant_id))  # fmt: skip

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for table in TABLES:
                curs.execute(f"DELETE FROM {self.names[table]}")  # type: ignore[call-overload]
            curs.execute(
                SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                (TRACKING_NAME,),
            )
