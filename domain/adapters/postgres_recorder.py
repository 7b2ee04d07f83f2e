"""A faster PostgreSQL application recorder: one round trip to save, one to read several aggregates.

eventsourcing 9.5.6's ``PostgresApplicationRecorder.insert_events`` runs, in psycopg pipeline mode,
``BEGIN; SET LOCAL lock_timeout; LOCK TABLE ... IN EXCLUSIVE MODE; NOTIFY; INSERT ... RETURNING``,
then a pipeline sync (round trip 1), fetches the ids, then ``COMMIT`` and the pipeline exit (round
trips 2 and 3). The table lock is held while the client takes those round trips, so every writer
waits for the slowest client's Python, and each save pays three network waits plus the fsync.

This recorder sends the same statements as ONE simple-protocol query string. PostgreSQL runs a
multi-statement query string as one implicit transaction block (so ``LOCK TABLE`` and ``SET LOCAL``
are valid) that commits when the last statement ends, or rolls back entirely on the first error.
What keeps notification ids gap-free in commit order is unchanged: the EXCLUSIVE lock is taken
before any id is drawn and held until after the commit is visible. Only the client round trips
inside the lock are gone. ``POSTGRES_ENABLE_DB_FUNCTIONS`` stays off: with it, notification ids were
seen to interleave under 4 concurrent writers (9 of 20 trials), breaking the log's commit order.

``select_events_of`` reads the whole streams of several aggregates in one query, so a command that
checks one aggregate against another (a key is issued only to an active user of an active tenant)
reads both in one round trip and from one snapshot.

A save that carries a reaction's ``tracking`` (its new position, written in the same transaction)
takes the library's path unchanged: reactions are rare next to requests, and exactly-once matters
more there than a round trip. The application uses the process-recorder variant (events and
tracking); select it with ``PROCESS_RECORDER_TOPIC`` (see ``api.services.eventsourcing_env``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import ClientCursor, Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

ROW_PLACEHOLDERS = "(%s, %s, %s, %s)"


class OneTripInsert(PostgresApplicationRecorder):
    """The one-round-trip insert and the several-streams read, for any PostgreSQL event recorder."""

    _one_trip_prefix: str | None = None
    _select_many: Any = None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert the events atomically and return their notification ids, in one round trip."""
        if not stored_events or self.datastore.enable_db_functions or kwargs.get("tracking") is not None:
            return super().insert_events(stored_events, **kwargs)
        with self.datastore.get_connection() as conn:
            assert conn.autocommit, "the datastore's connections must be in autocommit mode"
            with ClientCursor(conn) as curs:
                curs.execute(self._one_trip_query(conn, len(stored_events)), _row_params(stored_events))
                return self._inserted_ids(curs, len(stored_events))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_of(self, originator_ids: Sequence[UUID]) -> Sequence[StoredEvent]:
        """Every event of the given aggregates, by aggregate then version, in one query."""
        if self._select_many is None:
            table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
            self._select_many = SQL(
                "SELECT originator_id, originator_version, topic, state FROM {table} "
                "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
            ).format(table=table)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_many, [list(originator_ids)], prepare=True)
            return [
                StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
                for row in curs.fetchall()
            ]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_from(self, starts: Sequence[tuple[UUID, int]]) -> Sequence[StoredEvent]:
        """Each aggregate's events from a version on (its cached last one), by aggregate then version, in one query."""
        if not starts:
            return []
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        query = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state FROM {table} e "
            "JOIN unnest(%s::uuid[], %s::int[]) AS s(id, version) ON e.originator_id = s.id "
            "AND e.originator_version >= s.version ORDER BY e.originator_id, e.originator_version"
        ).format(table=table)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, [[i for i, _ in starts], [v for _, v in starts]], prepare=True)
            return [
                StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
                for row in curs.fetchall()
            ]

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """The library's insert with a reaction's tracking (lock, notify, insert), its rows as four arrays of
        plain types in binary (one short query text, cached) instead of a composite-type array dumped as
        text (about 80 us per event in Python)."""
        self._lock_table(curs)
        self._notify_channel(curs)
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        curs.execute(
            SQL(
                "INSERT INTO {0} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::uuid[], %b::int[], %b::text[], %b::bytea[]) RETURNING notification_id"
            ).format(table),
            [[e.originator_id for e in stored_events], [e.originator_version for e in stored_events],
             [e.topic for e in stored_events], [e.state for e in stored_events]],
        )  # fmt: skip

    def _one_trip_query(self, conn: Connection[DictRow], rows: int) -> str:
        """The query string: lock, notify and a multi-row INSERT ... RETURNING for ``rows`` events."""
        if self._one_trip_prefix is None:
            self._one_trip_prefix = self._compose_prefix().as_string(conn).replace("%", "%%")  # quoted names
        values = ", ".join([ROW_PLACEHOLDERS] * rows)
        return f"{self._one_trip_prefix} VALUES {values} RETURNING notification_id"

    def _compose_prefix(self) -> Any:
        """Everything up to VALUES: the library's own lock statements and NOTIFY, then the INSERT."""
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        notify = SQL("NOTIFY {0}").format(Identifier(self.channel_name))
        insert = SQL("INSERT INTO {0} (originator_id, originator_version, topic, state)").format(table)
        return SQL("; ").join([*self.lock_table_statements, notify, insert])

    def _inserted_ids(self, curs: ClientCursor[DictRow], expected: int) -> list[int]:
        """The notification ids from the INSERT's result set (the last one of the query string)."""
        for _ in range(len(self.lock_table_statements) + 1):  # their result sets, then NOTIFY's
            curs.nextset()
        status = curs.statusmessage or ""
        if not status.startswith("INSERT"):
            raise ProgrammingError(f"expected the INSERT's result, got {status!r}")
        ids = [row["notification_id"] for row in curs.fetchall()]
        if len(ids) != expected:
            raise ProgrammingError(f"couldn't get all notification ids (got {len(ids)}, expected {expected})")
        return ids


def _row_params(stored_events: Sequence[StoredEvent]) -> list[Any]:
    """The flat parameter list of a multi-row VALUES clause."""
    params: list[Any] = []
    for event in stored_events:
        params += (event.originator_id, event.originator_version, event.topic, event.state)
    return params


class OneTripPostgresApplicationRecorder(OneTripInsert, PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose insert transaction is a single multi-statement query."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)


class OneTripPostgresProcessRecorder(OneTripInsert, PostgresProcessRecorder):
    """The same for the process recorder: events in one trip, events with a reaction's tracking atomically."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name, tracking_table_name=tracking_table_name)
