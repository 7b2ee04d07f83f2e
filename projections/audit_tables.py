"""The audit log's tables: :class:`SQLiteAuditTable` (in the embedded store's file) and
:class:`~projections.audit_postgres.PostgresAuditTable`, tracking recorders that write rows and position together.

Their SQL (keyset pages, counts, the CSV export) is built in :mod:`projections.audit_queries`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from projections import audit_counts
from projections.audit_log import TRACKING_NAME, AuditFilter, AuditRow, Order, StaleAuditPosition, UsageBucket
from projections.audit_queries import (
    INDEXES,
    STORED,
    TIME_FORMAT,
    count_sql,
    row_of,
    rows_params,
    select_sql,
    usage_params,
)

# The indexes a rebuild drops and builds once at the end, after the rows (one sort each instead of a
# B-tree insert per row and index: the rebuild's largest cost). The primary key and the usage rows'
# unique bucket stay: the upsert of hourly usage needs the latter. A rebuild killed on the way leaves
# them missing until the next start, whose CREATE INDEX IF NOT EXISTS puts them back.
SECONDARY = ("tenant", *INDEXES)
SINCE_PROBE = 1000  # index entries a SQLite page since a time counts before choosing its index


class AuditTableBase(TrackingRecorder):
    """What both tables do alike: the position, and a keyset page read into rows."""

    sqlite: bool
    table_sql: str  # the table's name as :func:`select_sql` puts it in the statement
    bulk = False  # a rebuild is writing (``bulk_load``): counts are summed once at its end

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def fetch(
        self, where: AuditFilter, *, after: int | None, before: int | None, limit: int, order: Order
    ) -> list[AuditRow]:
        table = self._table_for(where, after, before, limit, order)
        sql, params = select_sql(table, where, after, before, limit, order, sqlite=self.sqlite)
        return [row_of(values) for values in self._select(sql, params)]

    def _table_for(self, where: AuditFilter, after: int | None, before: int | None, limit: int, order: Order) -> str:
        """The table as the page's query names it (SQLite: with the index to walk, where the planner cannot know)."""
        return self.table_sql

    @abstractmethod
    def _select(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """The rows of a ``?``-placeholder query, as tuples."""


class SQLiteAuditTable(AuditTableBase, SQLiteTrackingRecorder):
    """The audit log in the embedded SQLite event store file."""

    sqlite = True
    table_sql = "audit_log"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS audit_log (position INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, "
            "time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject_kind TEXT NOT NULL, "
            "subject_id TEXT NOT NULL, summary TEXT NOT NULL, request_id TEXT NOT NULL, bucket TEXT UNIQUE, "
            "requests INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, action_kind TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS audit_log_tenant ON audit_log (tenant_id, position)",
            *(f"CREATE INDEX IF NOT EXISTS audit_log_{name} ON audit_log ({cols})" for name, cols in INDEXES.items()),
            "CREATE TABLE IF NOT EXISTS audit_counts (tenant_id TEXT NOT NULL, action TEXT NOT NULL, actor TEXT NOT "
            "NULL, action_kind TEXT NOT NULL, rows INTEGER NOT NULL, PRIMARY KEY (tenant_id, action, actor)) "
            "WITHOUT ROWID",
            audit_counts.fill_sql("audit_counts", "audit_log"),
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def apply(
        self, expected: int, tracking: Tracking, rows: Sequence[AuditRow], usage: Sequence[UsageBucket],
        purges: Sequence[tuple[UUID, int]] = (),
    ) -> None:  # fmt: skip
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StaleAuditPosition
            c.executemany(
                f"INSERT INTO audit_log ({STORED}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows_params(rows, sqlite=True)
            )
            if not self.bulk:
                c.executemany(
                    "INSERT INTO audit_counts VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, action, actor) "
                    "DO UPDATE SET rows = rows + excluded.rows",
                    audit_counts.tally([*rows, *self._new_buckets(c, usage)]),
                )
            c.executemany(
                f"INSERT INTO audit_log ({STORED}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (bucket) DO UPDATE "
                "SET requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens",
                usage_params(usage, sqlite=True),
            )
            for tenant_id, before in purges:
                c.execute("DELETE FROM audit_log WHERE tenant_id = ? AND position < ?", (str(tenant_id), before))
                if not self.bulk:  # the tenant's counts summed again from the rows left (few: it ended)
                    for statement in audit_counts.recount_sql("audit_counts", "audit_log"):
                        c.execute(statement, (str(tenant_id),))
            self._insert_tracking(c, tracking)

    @staticmethod
    def _new_buckets(c: Any, usage: Sequence[UsageBucket]) -> list[UsageBucket]:
        """The hourly usage rows not stored yet (their counts are added to, not counted again)."""
        stored: set[str] = set()
        for start in range(0, len(usage), 500):
            chunk = [str(u.bucket) for u in usage[start : start + 500]]
            c.execute(f"SELECT bucket FROM audit_log WHERE bucket IN ({','.join('?' * len(chunk))})", chunk)
            stored.update(r[0] for r in c.fetchall())
        return [u for u in usage if str(u.bucket) not in stored]

    def _select(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]

    def _table_for(self, where: AuditFilter, after: int | None, before: int | None, limit: int, order: Order) -> str:
        """The newest rows since a time: walk the positions back, unless few rows match.

        SQLite has no histogram (no STAT4 in Python's build), so for ``time >= ?`` it takes the time
        index, reads every row since then and sorts them by position: 12-16 ms p99 for the newest hour
        of a 5,000-row tenant, more as the tenant grows. Times grow with positions, so when many rows
        match, walking the (tenant, position) index back meets ``limit`` of them at once; a bounded
        count on the time index (index only, at most ``SINCE_PROBE`` entries) says which case this is.
        """
        others = (where.actors, where.action, where.action_prefix, where.subject_id, where.request_id, where.until,
                  where.involves, after)  # fmt: skip
        if where.since is None or any(v is not None and v != () for v in others) or order != "desc":
            return self.table_sql
        probe = (
            "SELECT count(*) FROM (SELECT 1 FROM audit_log INDEXED BY audit_log_time WHERE tenant_id = ? AND time >= ?"
            + (" AND position < ?" if before is not None else "")
            + " LIMIT ?)"
        )
        since = where.since.astimezone(UTC).strftime(TIME_FORMAT)
        params = [str(where.tenant_id), since, *([before] if before is not None else []), SINCE_PROBE]
        many = int(self._select(probe, params)[0][0]) >= min(SINCE_PROBE, 4 * limit)
        return "audit_log INDEXED BY audit_log_tenant" if many else self.table_sql

    def fetch_raw(self, where: AuditFilter, *, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        return self._select(*select_sql("audit_log", where, after, None, limit, "asc", sqlite=True))

    def count(self, where: AuditFilter, up_to: int) -> tuple[int, bool]:
        if audit_counts.countable(where):
            return int(self._select(*audit_counts.count_sql("audit_counts", where, sqlite=True))[0][0]), True
        found = int(self._select(*count_sql("audit_log", where, up_to, sqlite=True))[0][0])
        return (found, True) if found <= up_to else (up_to, False)

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM audit_log")
            c.execute("DELETE FROM audit_counts")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        with self.datastore.transaction(commit=True) as c:
            for name in SECONDARY:
                c.execute(f"DROP INDEX IF EXISTS audit_log_{name}")
        self.bulk = True
        try:
            yield
        finally:
            self.bulk = False
            with self.datastore.transaction(commit=True) as c:
                for statement in self.construct_create_table_statements():
                    if statement.startswith("CREATE INDEX"):
                        c.execute(statement)
                c.execute("DELETE FROM audit_counts")
                c.execute(audit_counts.fill_sql("audit_counts", "audit_log"))
