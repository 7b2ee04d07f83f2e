"""Older snapshots dropped once a newer one is stored.

Only an aggregate's latest snapshot is ever read (a ledger loads from it, and the audit check replays
the ledger against what is stored). A credit ledger's snapshot holds up to 10,000 remembered debit ids
(351 KB) and comes every 5,000 debits (about 500 bytes each), so keeping every one added a seventh to
the ledger's storage, for ever. Snapshots are derived state outside the integrity chain: dropping an
older one loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

DropOlder = Callable[[UUID, int], None]


def older_snapshots_dropper(recorder: AggregateRecorder) -> DropOlder | None:
    """What deletes an aggregate's snapshots older than a version in this store (``None`` in memory,
    where nothing outlives the process)."""
    if isinstance(recorder, PostgresAggregateRecorder):
        return partial(_drop_postgres, recorder)
    if isinstance(recorder, SQLiteAggregateRecorder):
        return partial(_drop_sqlite, recorder)
    return None


def _drop_postgres(recorder: PostgresAggregateRecorder, originator_id: UUID, version: int) -> None:
    statement = SQL("DELETE FROM {}.{} WHERE originator_id = %s AND originator_version < %s").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )
    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(statement, (originator_id, version))


def _drop_sqlite(recorder: SQLiteAggregateRecorder, originator_id: UUID, version: int) -> None:
    # the table name is the recorder's own (eventsourcing names it), never input
    statement = f"DELETE FROM {recorder.events_table_name} WHERE originator_id = ? AND originator_version < ?"
    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(statement, (originator_id.hex, version))
