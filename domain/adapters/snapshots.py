"""The snapshot store's recorders: eventsourcing's, plus the latest snapshots of many aggregates in one query
and the deletion of the older ones.

Only credit ledgers have snapshots. The debit path reads the latest of every ledger its batch misses in
cache at once (one query, not one per tenant), and only the latest is ever read, so a newer one drops the
older: a ledger's snapshot holds up to 10,000 remembered debit ids (351 KB) and comes every 5,000 debits
(about 500 bytes each), so keeping every one added a seventh to the ledger's storage, for ever. Snapshots
are derived state outside the integrity chain: dropping an older one loses nothing.

The factories here are what ``PERSISTENCE_MODULE`` names (``api/stores.py``); the application finds the two
methods on its snapshot recorder (``select_latest_of``, ``delete_before``) and does without them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.postgres import PostgresFactory as LibraryPostgresFactory
from eventsourcing.sqlite import SQLiteAggregateRecorder
from eventsourcing.sqlite import SQLiteFactory as LibrarySQLiteFactory
from psycopg.sql import SQL, Identifier


class PostgresSnapshotRecorder(PostgresAggregateRecorder):
    """eventsourcing's recorder with the latest-of-many read and the deletion of older snapshots."""

    def select_latest_of(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """The latest snapshot of each aggregate that has one, in one query."""
        if not originator_ids:
            return []
        query = SQL(
            "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version DESC"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, [list(originator_ids)])
            return [
                StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
                for row in curs.fetchall()
            ]

    def delete_before(self, originator_id: UUID, version: int) -> None:
        """Delete the aggregate's snapshots older than ``version``."""
        query = SQL("DELETE FROM {}.{} WHERE originator_id = %s AND originator_version < %s").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(query, (originator_id, version))


class SQLiteSnapshotRecorder(SQLiteAggregateRecorder):
    """eventsourcing's recorder with the latest-of-many read and the deletion of older snapshots."""

    # the table name is the recorder's own (eventsourcing names it), never input

    def select_latest_of(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """The latest snapshot of each aggregate that has one, in one query."""
        if not originator_ids:
            return []
        marks = ",".join("?" * len(originator_ids))
        query = (
            f"SELECT originator_id, MAX(originator_version), topic, state FROM {self.events_table_name} "
            f"WHERE originator_id IN ({marks}) GROUP BY originator_id"  # SQLite: the row of the MAX
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, [i.hex for i in originator_ids])
            return [StoredEvent(UUID(row[0]), row[1], row[2], bytes(row[3])) for row in curs.fetchall()]

    def delete_before(self, originator_id: UUID, version: int) -> None:
        """Delete the aggregate's snapshots older than ``version``."""
        query = f"DELETE FROM {self.events_table_name} WHERE originator_id = ? AND originator_version < ?"
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(query, (originator_id.hex, version))


class PostgresFactory(LibraryPostgresFactory):
    """eventsourcing's PostgreSQL factory whose aggregate recorders (the snapshot store's) are the above."""

    aggregate_recorder_class = PostgresSnapshotRecorder


class SQLiteFactory(LibrarySQLiteFactory):
    """eventsourcing's SQLite factory whose aggregate recorders (the snapshot store's) are the above."""

    aggregate_recorder_class = SQLiteSnapshotRecorder
