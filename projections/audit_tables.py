"""The audit log's tables: :class:`SQLiteAuditTable` (in the embedded store's file) and
:class:`PostgresAuditTable`, tracking recorders that write rows and position together.

Every query is keyset on an index that starts with the tenant and ends with the position, so a
page costs the same at row 10 and at row 10 million; nothing uses OFFSET. An action prefix ending
at a dot (``api_key.*``) is an equality on the action's kind (its own indexed column), and a
subject's history is the union of two keyset reads (rows about it, rows by it), each on its index.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

from projections.audit_entries import AuditEntry
from projections.audit_log import TRACKING_NAME, AuditFilter, AuditRow, Order, StaleAuditPosition, UsageBucket
from projections.tracking import check_locked_position

STORED = (
    "position, tenant_id, time, actor, action, subject_kind, subject_id, summary, request_id, bucket, "
    "requests, prompt_tokens, completion_tokens, action_kind"
)
COLUMNS = STORED.removesuffix(", action_kind")  # what a read returns
INDEXES = {  # name suffix -> columns; each ends with the position, the keyset cursor
    "actor": "tenant_id, actor, position",
    "action": "tenant_id, action, position",
    "kind": "tenant_id, action_kind, position",
    "subject": "tenant_id, subject_id, position",
    "request": "tenant_id, request_id, position",
    "time": "tenant_id, time, position",
}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"  # fixed width: SQLite compares times as text


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def where_clause(where: AuditFilter, *, sqlite: bool) -> tuple[str, list[Any]]:
    """SQL conditions (``?`` placeholders) and their parameters for a filter, ``involves`` aside."""
    clauses: list[str] = ["tenant_id = ?"]
    params: list[Any] = [str(where.tenant_id)]
    for column, value in (("action", where.action), ("request_id", where.request_id),
                          ("subject_id", where.subject_id)):  # fmt: skip
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    if where.actors:
        clauses.append(f"actor IN ({_marks(where.actors)})")
        params += list(where.actors)
    prefix = where.action_prefix
    if prefix and prefix.endswith(".") and prefix.count(".") == 1:
        clauses.append("action_kind = ?")
        params.append(prefix[:-1])
    elif prefix:
        clauses.append("action >= ? AND action < ?")  # a range, so the (tenant, action) index serves it
        params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
    for op, moment in ((">=", where.since), ("<", where.until)):
        if moment is not None:
            clauses.append(f"time {op} ?")
            params.append(_time_text(moment) if sqlite else moment)
    return " AND ".join(clauses), params


def branches(where: AuditFilter, *, sqlite: bool) -> list[tuple[str, list[Any]]]:
    """The filter as one or two conditions whose union it is (a subject's history: about it, by it)."""
    base, params = where_clause(where, sqlite=sqlite)
    if where.involves is None:
        return [(base, params)]
    about = (f"{base} AND subject_id = ?", [*params, str(where.involves)])
    if not where.involves_actors:
        return [about]
    by = (f"{base} AND actor IN ({_marks(where.involves_actors)})", [*params, *where.involves_actors])
    return [about, by]


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def cursor_clause(after: int | None, before: int | None) -> tuple[str, list[Any]]:
    """The keyset bounds: strictly after and strictly before the given positions."""
    clauses, params = [], []
    if after is not None:
        clauses.append("position > ?")
        params.append(after)
    if before is not None:
        clauses.append("position < ?")
        params.append(before)
    return "".join(f" AND {c}" for c in clauses), params


def select_sql(
    table: str, where: AuditFilter, after: int | None, before: int | None, limit: int, order: Order, *,
    sqlite: bool, columns: str = COLUMNS,
) -> tuple[str, list[Any]]:  # fmt: skip
    """A keyset page (``?`` placeholders); a union of two keyset reads for a subject's history."""
    direction = "ASC" if order == "asc" else "DESC"
    cursor, cursor_params = cursor_clause(after, before)
    parts, params = [], []
    for conditions, branch_params in branches(where, sqlite=sqlite):
        parts.append(f"SELECT {columns} FROM {table} WHERE {conditions}{cursor} ORDER BY position {direction} LIMIT ?")
        params += [*branch_params, *cursor_params, limit]
    if len(parts) == 1:
        return parts[0], params
    union = " UNION ".join(f"SELECT * FROM ({part}) AS b{n}" for n, part in enumerate(parts))
    return f"SELECT * FROM ({union}) AS u ORDER BY position {direction} LIMIT ?", [*params, limit]


def count_sql(table: str, where: AuditFilter, up_to: int, *, sqlite: bool) -> tuple[str, list[Any]]:
    """Count matching rows, stopping past ``up_to``."""
    parts, params = [], []
    for conditions, branch_params in branches(where, sqlite=sqlite):
        parts.append(f"SELECT position FROM {table} WHERE {conditions}")
        params += branch_params
    return f"SELECT count(*) AS n FROM ({' UNION '.join(parts)} LIMIT ?) AS s", [*params, up_to + 1]


def row_of(values: Sequence[Any]) -> AuditRow:
    """A stored row back into an :class:`AuditRow`."""
    position, tenant_id, time, actor, action, kind, subject, summary, request_id, _, req, prompt, completion = values
    moment = time if isinstance(time, datetime) else datetime.fromisoformat(time)
    entry = AuditEntry(_uuid(tenant_id), moment, actor, action, kind, _uuid(subject), summary, request_id)
    return AuditRow(position, entry, req or 0, prompt or 0, completion or 0)


def _uuid(value: UUID | str) -> UUID:
    """psycopg already gives UUIDs; SQLite gives text."""
    return value if isinstance(value, UUID) else UUID(value)


def _entry_params(
    position: int, e: AuditEntry, bucket: UUID | None, counts: tuple[int, int, int], sqlite: bool
) -> tuple[Any, ...]:
    time: Any = _time_text(e.time) if sqlite else e.time
    return (position, str(e.tenant_id), time, e.actor, e.action, e.subject_kind, str(e.subject_id), e.summary,
            e.request_id, str(bucket) if bucket else None, *counts, e.action.partition(".")[0])  # fmt: skip


# Text as SQLite stores it, so an export writes PostgreSQL's rows without converting each value.
RAW_POSTGRES = (
    COLUMNS.replace("tenant_id", "tenant_id::text")
    .replace("subject_id", "subject_id::text")
    .replace("time", "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') AS time")
)


def _escaped(value: str) -> str:
    """SQL of a cell a spreadsheet shows as text: a leading ``= + - @``, tab or CR gets a ``'``."""
    quote = "''''"
    return (
        f"CASE WHEN left({value}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
        f"THEN {quote} || {value} ELSE coalesce({value}, '') END"
    )


# The CSV export, formatted by PostgreSQL; the columns of api.audit_export.HEADER, in its order.
_USAGE_SUMMARY = (
    "CASE WHEN a.action = 'usage.hourly' THEN a.requests || ' requests, ' || a.prompt_tokens || ' prompt and ' "
    "|| a.completion_tokens || ' completion tokens on ' || a.summary ELSE a.summary END"
)
_NAMED = "CASE WHEN a.subject_kind IN ('tenant', 'user', 'api_key', 'agent') THEN sn.subject_name END"
COPY_CSV = (
    "COPY (SELECT a.position, to_char(a.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
    + ", ".join(
        [_escaped("a.actor"), _escaped("coalesce(an.actor_name, a.actor)"), "a.action", "a.subject_kind",
         "a.subject_id::text", _escaped(_NAMED), _escaped(_USAGE_SUMMARY), _escaped("a.request_id")]
    )
    + " FROM {t} AS a"
    " LEFT JOIN unnest(%s::text[], %s::text[]) AS an(actor_key, actor_name) ON an.actor_key = a.actor"
    " LEFT JOIN unnest(%s::text[], %s::text[]) AS sn(subject_key, subject_name) ON sn.subject_key = a.subject_id::text"
    " WHERE {where} ORDER BY a.position) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)"
)  # fmt: skip


def _one(curs: Any) -> Any:
    """The one row a query always returns."""
    row = curs.fetchone()
    assert row is not None
    return row


class SQLiteAuditTable(SQLiteTrackingRecorder):
    """The audit log in the embedded SQLite event store file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS audit_log (position INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, "
            "time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject_kind TEXT NOT NULL, "
            "subject_id TEXT NOT NULL, summary TEXT NOT NULL, request_id TEXT NOT NULL, bucket TEXT UNIQUE, "
            "requests INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, action_kind TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS audit_log_tenant ON audit_log (tenant_id, position)",
            *(f"CREATE INDEX IF NOT EXISTS audit_log_{name} ON audit_log ({cols})" for name, cols in INDEXES.items()),
            f"INSERT INTO tracking VALUES ('{TRACKING_NAME}', 0) ON CONFLICT DO NOTHING",
        ]

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(self, expected: int, tracking: Tracking, rows: Sequence[AuditRow], usage: Sequence[UsageBucket]) -> None:
        with self.datastore.transaction(commit=True) as c:
            if (self._max_tracking_id(TRACKING_NAME, c) or 0) != expected:
                raise StaleAuditPosition
            c.executemany(
                f"INSERT INTO audit_log ({STORED}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [_entry_params(r.position, r.entry, None, (0, 0, 0), True) for r in rows],
            )
            c.executemany(
                f"INSERT INTO audit_log ({STORED}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (bucket) DO UPDATE "
                "SET requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens",
                [_entry_params(u.position, u.entry, u.bucket, (u.requests, u.prompt_tokens, u.completion_tokens), True)
                 for u in usage],
            )  # fmt: skip
            self._insert_tracking(c, tracking)

    def fetch(
        self, where: AuditFilter, *, after: int | None, before: int | None, limit: int, order: Order
    ) -> list[AuditRow]:
        sql, params = select_sql("audit_log", where, after, before, limit, order, sqlite=True)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [row_of(tuple(r)) for r in c.fetchall()]

    def fetch_raw(self, where: AuditFilter, *, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        sql, params = select_sql("audit_log", where, after, None, limit, "asc", sqlite=True)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]

    def count(self, where: AuditFilter, up_to: int) -> tuple[int, bool]:
        sql, params = count_sql("audit_log", where, up_to, sqlite=True)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            found = int(c.fetchone()[0])
        return (found, True) if found <= up_to else (up_to, False)

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM audit_log")
            c.execute("UPDATE tracking SET notification_id = 0 WHERE application_name = ?", [TRACKING_NAME])


class PostgresAuditTable(PostgresTrackingRecorder):
    """The audit log in the event store's PostgreSQL schema."""

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
        for suffix, cols in {"tenant": "tenant_id, position", **INDEXES}.items():
            self.sql_create_statements.append(
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (" + cols + ")").format(
                    Identifier(f"{self.name}_{suffix}"), self.table
                )
            )
        self.sql_create_statements.append(
            SQL("INSERT INTO {} VALUES ({}, 0) ON CONFLICT DO NOTHING").format(self.tracking, Literal(TRACKING_NAME))
        )

    def position(self) -> int:
        return self.max_tracking_id(TRACKING_NAME) or 0

    def apply(self, expected: int, tracking: Tracking, rows: Sequence[AuditRow], usage: Sequence[UsageBucket]) -> None:
        insert = "INSERT INTO {} (" + STORED + ") VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        with self.datastore.transaction(commit=True) as curs:
            check_locked_position(curs, self.tracking, TRACKING_NAME, expected, StaleAuditPosition)
            if rows:  # COPY: a rebuild's rows go in at the server's pace, not one statement each
                with curs.copy(SQL("COPY {} (" + STORED + ") FROM STDIN").format(self.table)) as copy:
                    for r in rows:
                        copy.write_row(_entry_params(r.position, r.entry, None, (0, 0, 0), False))
            if usage:
                curs.executemany(
                    SQL(
                        insert + " ON CONFLICT (bucket) DO UPDATE SET requests = {t}.requests + excluded.requests, "
                        "prompt_tokens = {t}.prompt_tokens + excluded.prompt_tokens, "
                        "completion_tokens = {t}.completion_tokens + excluded.completion_tokens"
                    ).format(self.table, t=Identifier(self.name)),
                    [_entry_params(u.position, u.entry, u.bucket, (u.requests, u.prompt_tokens, u.completion_tokens),
                                   False) for u in usage],
                )  # fmt: skip
            self._insert_tracking(curs, tracking)

    def fetch(
        self, where: AuditFilter, *, after: int | None, before: int | None, limit: int, order: Order
    ) -> list[AuditRow]:
        sql, params = select_sql("{t}", where, after, before, limit, order, sqlite=False)
        with self.datastore.cursor() as curs:  # one statement: no BEGIN/ROLLBACK round trips
            curs.execute(SQL(sql.replace("?", "%s")).format(t=self.table), params)
            return [row_of(tuple(r.values())) for r in curs.fetchall()]

    def fetch_raw(self, where: AuditFilter, *, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        sql, params = select_sql("{t}", where, after, None, limit, "asc", sqlite=False, columns=RAW_POSTGRES)
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(SQL(sql.replace("?", "%s")).format(t=self.table), params)
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
        sql, params = count_sql("{t}", where, up_to, sqlite=False)
        with self.datastore.cursor() as curs:
            curs.execute(SQL(sql.replace("?", "%s")).format(t=self.table), params)
            found = int(_one(curs)["n"])
            if found <= up_to:
                return found, True
            sql, params = count_sql("{t}", where, up_to, sqlite=False)
            plan = "EXPLAIN (FORMAT JSON) " + sql.removeprefix("SELECT count(*) AS n FROM (").rsplit(" LIMIT ?", 1)[0]
            curs.execute(SQL(plan.replace("?", "%s")).format(t=self.table), params[:-1])
            estimate = int(_one(curs)["QUERY PLAN"][0]["Plan"]["Plan Rows"])
        return max(estimate, up_to + 1), False

    def clear(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {}").format(self.table))
            curs.execute(
                SQL("UPDATE {} SET notification_id = 0 WHERE application_name = %s").format(self.tracking),
                (TRACKING_NAME,),
            )
