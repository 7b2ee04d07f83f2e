"""Reading every topic of the log by id ranges, as tuples (PostgreSQL in binary): see ``NotificationLog.records``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.adapt import Loader
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from projections.log_records import Recorded

RANGE_CHUNK = 2000  # ids per query of a read of every topic


class _RawUUID(Loader):
    """A uuid column as its 16 bytes (a :class:`Recorded` builds the UUID if a reader asks)."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


def ranges_postgres(
    recorder: PostgresApplicationRecorder, after: int, stop: int, limit: int, decode: Callable[[Notification], Any]
) -> tuple[list[Recorded], int]:
    table = SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    query = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
        "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
    ).format(table)
    found: list[Recorded] = []
    of = Recorded.of
    with recorder.datastore.get_connection() as conn, conn.cursor(binary=True, row_factory=tuple_row) as curs:
        curs.adapters.register_loader("uuid", _RawUUID)
        while after < stop and len(found) < limit:
            upper = min(stop, after + RANGE_CHUNK)
            curs.execute(query, (after, upper), prepare=True)
            found += [of(row, decode) for row in curs.fetchall()]
            after = upper
    return found, after


def ranges_sqlite(
    recorder: SQLiteApplicationRecorder, after: int, stop: int, limit: int, decode: Callable[[Notification], Any]
) -> tuple[list[Recorded], int]:
    query = (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {recorder.events_table_name} "
        "WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
    )
    convert, of = recorder.convert_originator_id, Recorded.of
    found: list[Recorded] = []
    with recorder.datastore.transaction(commit=False) as c:
        cursor = c.sqlite_cursor
        cursor.row_factory = None  # tuples
        while after < stop and len(found) < limit:
            upper = min(stop, after + RANGE_CHUNK)
            found += [of((i, convert(o), v, t, s), decode) for i, o, v, t, s in cursor.execute(query, (after, upper))]
            after = upper
    return found, after
