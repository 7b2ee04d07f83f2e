"""The billing ledger's tables: :class:`SQLiteBillingTable` and :class:`PostgresBillingTable`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier, Literal

from projections.billing_ledger import COLUMNS, TRACKING_NAME, BillingTable, LedgerRow, StalePosition
from projections.tracking import check_locked_position


def _params(row: LedgerRow) -> tuple[Any, ...]:
    return (row.notification_id, str(row.tenant_id), row.at.isoformat(), row.kind, row.ref, row.detail, row.currency,
            row.amount_cents, row.vat_cents)  # fmt: skip


def _row(values: Sequence[Any]) -> LedgerRow:
    n, tenant, at, kind, ref, detail, currency, amount, vat = values
    when = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    return LedgerRow(int(n), UUID(str(tenant)), when, kind, ref, detail, currency, int(amount), int(vat))


def _filters(tenant_id: UUID, since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    clauses, params = ["tenant_id = ?"], [str(tenant_id)]
    for clause, value in (("at >= ?", since), ("at < ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value.isoformat())
    return " AND ".join(clauses), params


class SQLiteBillingTable(BillingTable, SQLiteTrackingRecorder):
    """The billing ledger in the embedded SQLite event store file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS billing_ledger (notification_id INTEGER PRIMARY KEY, tenant_id TEXT, at TEXT, "
            "kind TEXT, ref TEXT, detail TEXT, currency TEXT, amount_cents INTEGER, vat_cents INTEGER)",
            "CREATE INDEX IF NOT EXISTS billing_ledger_tenant ON billing_ledger (tenant_id, at)",
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(self, expected: int, tracking: Tracking, rows: Sequence[LedgerRow]) -> None:
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StalePosition
            for row in rows:
                c.execute(f"INSERT INTO billing_ledger ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                          _params(row))  # fmt: skip
            self._insert_tracking(c, tracking)

    def rows(self, tenant_id: UUID, since: datetime | None, until: datetime | None) -> list[LedgerRow]:
        where, params = _filters(tenant_id, since, until)
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {COLUMNS} FROM billing_ledger WHERE {where} ORDER BY notification_id", params)
            return [_row(tuple(r)) for r in c.fetchall()]

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM billing_ledger")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])


class PostgresBillingTable(BillingTable, PostgresTrackingRecorder):
    """The billing ledger in the event store's PostgreSQL schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.table = SQL("{}.{}").format(schema, Identifier("ownllm_billing_ledger"))
        self.tracking = SQL("{}.{}").format(schema, Identifier(self.tracking_table_name))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (notification_id bigint PRIMARY KEY, tenant_id uuid, at timestamptz, "
                "kind text, ref text, detail text, currency text, amount_cents bigint, vat_cents bigint)"
            ).format(self.table)
        )
        self.sql_create_statements.append(
            SQL("CREATE INDEX IF NOT EXISTS ownllm_billing_ledger_tenant ON {} (tenant_id, at)").format(self.table)
        )
        self.sql_create_statements.append(
            SQL("INSERT INTO {} VALUES ({}, 0) ON CONFLICT DO NOTHING").format(self.tracking, Literal(TRACKING_NAME))
        )

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(self, expected: int, tracking: Tracking, rows: Sequence[LedgerRow]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            check_locked_position(curs, self.tracking, TRACKING_NAME, expected, StalePosition)
            if rows:
                curs.executemany(
                    SQL(
                        "INSERT INTO {} (" + COLUMNS + ") VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
                    ).format(self.table),
                    [(*_params(r)[:2], r.at, *_params(r)[3:]) for r in rows],
                )
            self._insert_tracking(curs, tracking)

    def rows(self, tenant_id: UUID, since: datetime | None, until: datetime | None) -> list[LedgerRow]:
        where, params = _filters(tenant_id, since, until)
        query = SQL("SELECT " + COLUMNS + " FROM {} WHERE " + where.replace("?", "%s") + " ORDER BY notification_id")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query.format(self.table), [str(tenant_id), *(datetime.fromisoformat(p) for p in params[1:])])
            return [_row(tuple(r.values())) for r in curs.fetchall()]

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}").format(self.table))
            curs.execute(
                SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                (TRACKING_NAME,),
            )
