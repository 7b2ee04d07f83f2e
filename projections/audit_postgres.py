"""The audit log's table in the event store's PostgreSQL schema (see :mod:`projections.audit_tables`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

from projections import audit_counts
from projections.audit_log import TRACKING_NAME, AuditFilter, AuditRow, StaleAuditPosition, UsageBucket
from projections.audit_queries import (
    COPY_CSV,
    INDEXES,
    RAW_POSTGRES,
    STORED,
    count_sql,
    select_sql,
    usage_params,
    where_clause,
)
from projections.audit_tables import SECONDARY, AuditTableBase
from projections.tracking import check_locked_position

# A rebuild's indexes are built in this many sessions at once: each build also has the server's parallel
# workers, but its heap scan and final write are one process's (7 builds: 9.0 s in one session, 7.5 in two).
INDEX_SESSIONS = 2
COPY_TYPES = ["int8", "uuid", "timestamptz", "text", "text", "text", "uuid", "text", "text", "uuid", "int8", "int8",
              "int8", "text"]  # the STORED columns, in order  # fmt: skip


def _uuid(value: Any) -> UUID:
    return value if type(value) is UUID else UUID(str(value))


def _one(curs: Any) -> Any:
    """The one row a query always returns."""
    row = curs.fetchone()
    assert row is not None
    return row


class PostgresAuditTable(AuditTableBase, PostgresTrackingRecorder):
    """The audit log in the event store's PostgreSQL schema."""

    sqlite = False
    table_sql = "{t}"  # formatted with the schema-qualified identifier

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.name = "ownllm_audit_log"
        self.table = SQL("{}.{}").format(schema, Identifier(self.name))
        self.tracking = SQL("{}.{}").format(schema, Identifier(self.tracking_table_name))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, tenant_id uuid NOT NULL, "
                "time timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, subject_kind text NOT NULL, "
                "subject_id uuid NOT NULL, summary text NOT NULL, request_id text NOT NULL, bucket uuid UNIQUE, "
                "requests bigint, prompt_tokens bigint, completion_tokens bigint, action_kind text NOT NULL)"
            ).format(self.table)
        )
        self.counts = SQL("{}.{}").format(schema, Identifier("ownllm_audit_counts"))
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (tenant_id uuid NOT NULL, action text NOT NULL, actor text NOT NULL, "
                "action_kind text NOT NULL, rows bigint NOT NULL, PRIMARY KEY (tenant_id, action, actor))"
            ).format(self.counts),
            # the rows' table before the counts, in the order a batch takes them (else a batch in flight, holding
            # the rows and writing its counts, and this opening, holding the counts and indexing the rows, deadlock)
            SQL("LOCK TABLE {} IN SHARE MODE").format(self.table),
            SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self.counts),  # see audit_counts
            SQL(audit_counts.fill_sql("{c}", "{t}")).format(c=self.counts, t=self.table),
        ]
        for suffix, cols in {"tenant": "tenant_id, position", **INDEXES}.items():
            self.sql_create_statements.append(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (" + cols + ")").format(
                    Identifier(f"{self.name}_{suffix}"), self.table
                )
            )
        self.sql_create_statements.append(
            SQL("INSERT INTO {} VALUES ({}, 0) ON CONFLICT DO NOTHING").format(self.tracking, Literal(TRACKING_NAME))
        )

    def _sql(self, sql: str) -> Any:
        """A ``?``-placeholder query on this table, as psycopg runs it."""
        return SQL(sql.replace("?", "%s")).format(t=self.table, c=self.counts)

    def apply(
        self, expected: int, tracking: Tracking, rows: Sequence[AuditRow], usage: Sequence[UsageBucket],
        purges: Sequence[tuple[UUID, int]] = (),
    ) -> None:  # fmt: skip
        insert = "INSERT INTO {} (" + STORED + ") VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        with self.datastore.transaction(commit=True) as curs:
            check_locked_position(curs, self.tracking, TRACKING_NAME, expected, StaleAuditPosition)
            if rows:  # binary COPY: a rebuild's rows go in at the server's pace, not one statement each
                with curs.copy(SQL("COPY {} (" + STORED + ") FROM STDIN (FORMAT BINARY)").format(self.table)) as copy:
                    copy.set_types(COPY_TYPES)
                    for r in rows:
                        e = r.entry
                        copy.write_row((r.position, _uuid(e.tenant_id), e.time, e.actor, e.action, e.subject_kind,
                                        _uuid(e.subject_id), e.summary, e.request_id, None, 0, 0, 0,
                                        e.action.partition(".")[0]))  # fmt: skip
            if not self.bulk:
                self._count(curs, [*rows, *self._new_buckets(curs, usage)])
            if usage:
                curs.executemany(
                    SQL(
                        insert + " ON CONFLICT (bucket) DO UPDATE SET requests = {t}.requests + excluded.requests, "
                        "prompt_tokens = {t}.prompt_tokens + excluded.prompt_tokens, "
                        "completion_tokens = {t}.completion_tokens + excluded.completion_tokens"
                    ).format(self.table, t=Identifier(self.name)),
                    usage_params(usage, sqlite=False),
                )
            for tenant_id, before in purges:
                curs.execute(SQL("DELETE FROM {} WHERE tenant_id = %s AND position < %s").format(self.table),
                             (tenant_id, before))  # fmt: skip
                if not self.bulk:  # the tenant's counts summed again from the rows left (few: it ended)
                    for statement in audit_counts.recount_sql("{c}", "{t}"):
                        curs.execute(self._sql(statement), (tenant_id,))
            self._insert_tracking(curs, tracking)

    def _new_buckets(self, curs: Any, usage: Sequence[UsageBucket]) -> list[UsageBucket]:
        """The hourly usage rows not stored yet (their counts are added to, not counted again)."""
        if not usage:
            return []
        curs.execute(
            SQL("SELECT bucket FROM {} WHERE bucket = ANY(%s)").format(self.table), ([u.bucket for u in usage],)
        )
        stored = {r["bucket"] for r in curs.fetchall()}
        return [u for u in usage if u.bucket not in stored]

    def _count(self, curs: Any, rows: Sequence[AuditRow | UsageBucket]) -> None:
        """Add new rows to the counts (one statement)."""
        counted = audit_counts.tally(rows)
        if counted:
            curs.execute(
                SQL(
                    "INSERT INTO {} SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::int8[]) "
                    "ON CONFLICT (tenant_id, action, actor) DO UPDATE SET rows = {}.rows + excluded.rows"
                ).format(self.counts, Identifier("ownllm_audit_counts")),
                [list(column) for column in zip(*counted, strict=True)],
            )

    def _select(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self.datastore.cursor() as curs:  # one statement: no BEGIN/ROLLBACK round trips
            curs.execute(self._sql(sql), params)
            return [tuple(r.values()) for r in curs.fetchall()]

    def fetch_raw(self, where: AuditFilter, *, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        sql, params = select_sql("{t}", where, after, None, limit, "asc", sqlite=False, columns=RAW_POSTGRES)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._sql(sql), params)
            return curs.fetchall()

    def copy_csv(self, where: AuditFilter, actors: Mapping[str, str], subjects: Mapping[str, str]) -> Iterator[bytes]:
        """The export's CSV rows (no header), oldest first, formatted by the server (``COPY ... TO STDOUT``).

        Display names come in as two arrays joined to the rows, and formula cells are escaped in SQL
        as :func:`api.audit_export.safe_cell` does: no row passes through Python on its way out.
        """
        if where.involves is not None:
            raise ValueError("a subject's history is exported through the keyset path")
        conditions, params = where_clause(where, sqlite=False)
        sql = COPY_CSV.replace("{where}", conditions.replace("?", "%s"))  # its columns are the audit table's alone
        arguments = [list(actors), list(actors.values()), list(subjects), list(subjects.values()), *params]
        with (
            self.datastore.get_connection() as conn,
            conn.cursor() as curs,
            curs.copy(SQL(sql).format(t=self.table), arguments) as copy,
        ):
            yield from (bytes(chunk) for chunk in copy)

    def count(self, where: AuditFilter, up_to: int) -> tuple[int, bool]:
        if audit_counts.countable(where):
            sql, params = audit_counts.count_sql("{c}", where, sqlite=False)
            return int(self._select(sql, params)[0][0]), True
        sql, params = count_sql("{t}", where, up_to, sqlite=False)
        with self.datastore.cursor() as curs:
            curs.execute(self._sql(sql), params)
            found = int(_one(curs)["n"])
            if found <= up_to:
                return found, True
            plan = "EXPLAIN (FORMAT JSON) " + sql.removeprefix("SELECT count(*) AS n FROM (").rsplit(" LIMIT ?", 1)[0]
            curs.execute(self._sql(plan), params[:-1])
            estimate = int(_one(curs)["QUERY PLAN"][0]["Plan"]["Plan Rows"])
        return max(estimate, up_to + 1), False

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("TRUNCATE {}, {}").format(self.table, self.counts))  # no dead rows left for a rebuild
            curs.execute(
                SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                (TRACKING_NAME,),
            )

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        schema = Identifier(self.datastore.schema)
        with self.datastore.transaction(commit=True) as curs:
            for name in SECONDARY:
                curs.execute(SQL("DROP INDEX IF EXISTS {}.{}").format(schema, Identifier(f"{self.name}_{name}")))
        self.bulk = True
        try:
            yield
        finally:
            self.bulk = False
            indexes = [s for s in self.sql_create_statements if s.as_string().startswith("CREATE INDEX")]
            with ThreadPoolExecutor(INDEX_SESSIONS, thread_name_prefix="audit-index") as sessions:
                for built in [sessions.submit(self._build, indexes[i::INDEX_SESSIONS]) for i in range(INDEX_SESSIONS)]:
                    built.result()
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self.counts))
                curs.execute(SQL("DELETE FROM {}").format(self.counts))
                curs.execute(SQL(audit_counts.fill_sql("{c}", "{t}")).format(c=self.counts, t=self.table))
                curs.execute(SQL("ANALYZE {}").format(self.table))

    def _build(self, statements: Sequence[Any]) -> None:
        """Build some of the indexes in a session of their own (each sorted in memory)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for statement in statements:
                curs.execute(statement)
