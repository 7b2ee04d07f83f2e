"""The audit log's SQL, shared by both tables: stored columns and indexes, keyset page and count
queries built from an :class:`AuditFilter` (``?`` placeholders), stored rows to and from
:class:`AuditRow`, and PostgreSQL's CSV export statement.

Every query is keyset on an index that starts with the tenant and ends with the position, so a
page costs the same at row 10 and at row 10 million; nothing uses OFFSET. An action prefix ending
at a dot (``api_key.*``) is an equality on the action's kind (its own indexed column), and a
subject's history is the union of two keyset reads (rows about it, rows by it), each on its index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from projections.audit_entries import AuditEntry
from projections.audit_log import AuditFilter, AuditRow, Order, UsageBucket

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


def rows_params(rows: Sequence[AuditRow], *, sqlite: bool) -> list[tuple[Any, ...]]:
    """The stored values of plain rows (no usage bucket, no counts)."""
    return [_entry_params(r.position, r.entry, None, (0, 0, 0), sqlite) for r in rows]


def usage_params(usage: Sequence[UsageBucket], *, sqlite: bool) -> list[tuple[Any, ...]]:
    """The stored values of hourly usage rows, with their bucket and counts."""
    return [_entry_params(u.position, u.entry, u.bucket, (u.requests, u.prompt_tokens, u.completion_tokens), sqlite)
            for u in usage]  # fmt: skip
