"""The audit log's row counts per tenant, action and actor, kept with the rows: ``X-Total-Count`` in one
small read.

Counting the rows a page's filter matches walks its index entries, about 40 ms per 100,000 on a
loaded machine: a tenant's whole log, or its exports, or one busy key's rows, are past any latency
target long before the 100,000 where the count may become an estimate. The counts table holds one
row per (tenant, action, actor) seen, with the action's kind, so a filter on no more than those
(what most listings are: the newest page, an action or a kind of action, an actor) is the sum of a
few of its rows, exact at any size. Filters on time, subject or request id count rows as before.

Writes: :meth:`apply` of both tables adds a batch's rows (and each hourly usage row when its bucket
is new, not when counts are added to it) in the batch's transaction, so counts move with the rows
and the tracking record; a rebuild leaves them out while it writes and sums the rows once at the end,
as it builds its indexes. A store from before the counts table sums its rows into it when opened
(the table is empty while rows exist; PostgreSQL locks it first, so two processes opening together,
or a writer, neither count a row twice nor miss one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from projections.audit_log import AuditFilter, AuditRow, UsageBucket
from projections.audit_queries import where_clause

KEY = "tenant_id, action, actor, action_kind"  # the columns counted by, in the table's order


def countable(where: AuditFilter) -> bool:
    """Whether the counts table answers this filter: it narrows by tenant, action, kind and actor only."""
    return all(v is None for v in (where.subject_id, where.since, where.until, where.request_id, where.involves))


def count_sql(table: str, where: AuditFilter, *, sqlite: bool) -> tuple[str, list[Any]]:
    """The matching rows' count from the counts table (``?`` placeholders); only for :func:`countable` filters."""
    conditions, params = where_clause(where, sqlite=sqlite)
    return f"SELECT coalesce(sum(rows), 0) AS n FROM {table} WHERE {conditions}", params


def tally(rows: Iterable[AuditRow | UsageBucket]) -> list[tuple[str, str, str, str, int]]:
    """What a batch's new rows add to the counts: ``(tenant id, action, actor, kind, rows)``."""
    counted = Counter((str(r.entry.tenant_id), r.entry.action, r.entry.actor) for r in rows)
    return [(tenant, action, actor, action.partition(".")[0], n) for (tenant, action, actor), n in counted.items()]


def fill_sql(counts: str, table: str) -> str:
    """Sum the rows into an empty counts table (a store from before it, a rebuild's end); no-op when it has any."""
    return (
        f"INSERT INTO {counts} ({KEY}, rows) SELECT {KEY}, count(*) FROM {table} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {counts}) GROUP BY {KEY}"
    )


def recount_sql(counts: str, table: str) -> tuple[str, str]:
    """One tenant's counts summed again from its rows (after a purge); each takes the tenant id (``?``)."""
    return (
        f"DELETE FROM {counts} WHERE tenant_id = ?",
        f"INSERT INTO {counts} ({KEY}, rows) SELECT {KEY}, count(*) FROM {table} WHERE tenant_id = ? GROUP BY {KEY}",
    )
