"""Reading the notification log by topic, with an index that makes the read independent of the rest.

Read models name the event classes they need (:func:`topics_of`), and :class:`NotificationLog`
returns only those notifications, in notification order, never touching the others: usage records
are most of the log, and the directory must not pay for them (see ``projections/runner.py``).

eventsourcing 9.5.6's ``select_notifications(..., topics=...)`` filters by topic but asks for
``topic IN (...) ORDER BY notification_id LIMIT n``. With several topics neither SQLite nor
PostgreSQL can read an index on ``(topic, id)`` in id order, so it either walks the id index and
filters (visiting every usage row in the range) or collects *every* matching row of the range and
sorts it, batch after batch. So this module issues its own query: per topic, the next ``limit``
ids from the ``(topic, id)`` index (an index-only range scan), the first ``limit`` of their union,
then those rows. A batch reads at most ``len(topics) * limit`` index entries and ``limit`` rows,
whatever else the log holds. A short range (at most ``SHORT_RANGE`` ids: what a reader following the
log finds at each poll) is read by id instead, its topics kept by the query: one range scan of a few
rows costs less than a probe per topic (74 probes for the directory, which found nothing after most
requests: the usage record in the range is not one of its topics; 1.8 ms of CPU each on SQLite, on the
proxy's core, delayed streaming replies). ``topics=()`` means every event: the library's id-range read. The
plans are pinned (SQLite: ``INDEXED BY``; PostgreSQL: see :func:`postgres_query`) and checked with
EXPLAIN in tests/projections/test_log.py.

The index is created idempotently by ``ensure_index`` (the runner calls it at start; a first read
by topic does otherwise): on SQLite an index on ``topic`` (SQLite appends the rowid, which is the
notification id, to every index entry); on PostgreSQL on ``(topic, notification_id)``, built
``CONCURRENTLY`` when the table is already large so that writers are not blocked meanwhile, under
an advisory lock so that API processes starting together build it once. On an existing large
store the first start after the upgrade pays for the build once (bench/startup.py measures it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier, Literal

from projections.log_decode import fast_decode
from projections.log_ranges import RANGE_CHUNK, ranges_postgres, ranges_sqlite
from projections.log_records import Recorded, recorded

__all__ = ["RANGE_CHUNK", "NotificationLog", "Recorded", "recorded", "topics_of"]

SQLITE_INDEX = "ownllm_stored_events_topic"
POSTGRES_INDEX_SUFFIX = "_topic_id_idx"
SHORT_RANGE = 256  # ids: a range this short is read by id (see above)
CONCURRENT_BUILD_ABOVE = 100_000  # rows: below this a plain build blocks writers for a fraction of a second


def topics_of(classes: Iterable[type]) -> tuple[str, ...]:
    """The eventsourcing topics (``module:Qual.Name``) of event classes, sorted, without repeats."""
    return tuple(sorted({get_topic(cls) for cls in classes}))


class NotificationLog:
    """The application's notification log, read by topic; ``head`` and ``read`` are thread-safe."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder
        self._sqlite_queries: dict[tuple[int, bool], str] = {}  # (topics, short) -> query
        self._lock = threading.Lock()
        self._indexed = False

    def ensure_index(self) -> None:
        """Create the topic index if it is missing (idempotent; done once per process, at its first read)."""
        with self._lock:
            if not self._indexed:
                self._create_index()
                self._indexed = True

    def _create_index(self) -> None:
        if isinstance(self.recorder, SQLiteApplicationRecorder):
            with self.recorder.datastore.transaction(commit=True) as c:
                c.execute(f"CREATE INDEX IF NOT EXISTS {SQLITE_INDEX} ON {self.recorder.events_table_name} (topic)")
        elif isinstance(self.recorder, PostgresApplicationRecorder):
            _ensure_postgres_index(self.recorder)

    @property
    def reads_alongside(self) -> bool:
        """Whether a read may run in another thread while this process writes (a server's pool, not one file)."""
        return isinstance(self.recorder, PostgresApplicationRecorder)

    def head(self) -> int:
        """The last notification id recorded (0 for an empty log)."""
        return self.recorder.max_notification_id() or 0

    def read(self, after: int, stop: int, topics: Sequence[str], limit: int) -> Sequence[Notification]:
        """The first ``limit`` notifications with an id in ``(after, stop]`` and one of ``topics``
        (every topic when empty), in notification order."""
        if after >= stop:
            return []
        if not topics:
            return self.recorder.select_notifications(after + 1, limit, stop=stop)
        if not self._indexed:
            self.ensure_index()
        if isinstance(self.recorder, SQLiteApplicationRecorder):
            return self._read_sqlite(self.recorder, after, stop, topics, limit)
        if isinstance(self.recorder, PostgresApplicationRecorder):
            return _read_postgres(self.recorder, after, stop, topics, limit)
        return self.recorder.select_notifications(after + 1, limit, stop=stop, topics=topics)

    def records(
        self, after: int, stop: int, topics: Sequence[str], limit: int, decode: Callable[[Notification], Any]
    ) -> tuple[list[Recorded], int]:
        """About ``limit`` stored records with an id in ``(after, stop]`` and one of ``topics`` (every topic
        when empty), in notification order, and the position they complete (every such record up to it
        is in the list: the reader's next position).

        Every topic: read by id ranges of ``RANGE_CHUNK`` ids, as tuples, PostgreSQL's in binary (no
        hex-escaped bytea, no dict per row, no UUID built before a reader decodes): about three times
        the library's ``select_notifications``. A range is bounded by ids, not by ``LIMIT``, so the plan
        is an index range scan whatever the statistics say (with a large ``LIMIT`` and stale statistics
        PostgreSQL sorted the whole rest of the log).
        """
        if after >= stop:
            return [], after
        decode = fast_decode(decode)
        if topics or not isinstance(self.recorder, (PostgresApplicationRecorder, SQLiteApplicationRecorder)):
            batch = self.read(after, stop, topics, limit)
            return [Recorded(n, decode) for n in batch], (stop if len(batch) < limit else batch[-1].id)
        if isinstance(self.recorder, PostgresApplicationRecorder):
            return ranges_postgres(self.recorder, after, stop, limit, decode)
        return ranges_sqlite(self.recorder, after, stop, limit, decode)

    def _read_sqlite(
        self, recorder: SQLiteApplicationRecorder, after: int, stop: int, topics: Sequence[str], limit: int
    ) -> Sequence[Notification]:
        short = stop - after <= SHORT_RANGE
        with self._lock:
            query = self._sqlite_queries.get((len(topics), short))
            if query is None:
                make = sqlite_short_query if short else sqlite_query
                query = self._sqlite_queries[(len(topics), short)] = make(recorder.events_table_name, len(topics))
        params: list[Any] = []
        if short:
            params += [after, stop, *topics]
        else:
            for topic in topics:
                params += [topic, after, stop, limit]
        params.append(limit)
        with recorder.datastore.transaction(commit=False) as c:
            c.execute(query, params)
            return [
                Notification(
                    id=row["rowid"],
                    originator_id=recorder.convert_originator_id(row["originator_id"]),
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
                for row in c.fetchall()
            ]


def sqlite_query(table: str, topics: int) -> str:
    """Per topic the next ids from the topic index, the first ``limit`` of them, then their rows."""
    per_topic = (
        f"SELECT id FROM (SELECT rowid AS id FROM {table} INDEXED BY {SQLITE_INDEX} "
        "WHERE topic = ? AND rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?)"
    )
    ids = " UNION ALL ".join([per_topic] * topics) + " ORDER BY id LIMIT ?"
    return (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
        f"WHERE rowid IN ({ids}) ORDER BY rowid"
    )


def sqlite_short_query(table: str, topics: int) -> str:
    """The rows of an id range with one of the topics (``NOT INDEXED``: by rowid, never the topic index)."""
    marks = ", ".join(["?"] * topics)
    return (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} NOT INDEXED "
        f"WHERE rowid > ? AND rowid <= ? AND topic IN ({marks}) ORDER BY rowid LIMIT ?"
    )


def postgres_short_query(recorder: PostgresApplicationRecorder, limit: int) -> Any:
    """The rows of an id range with one of the topics: the range alone is materialized first, so only
    the id index can serve it (a generic plan cannot know the range is short)."""
    table = SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    return SQL(
        "WITH r AS MATERIALIZED (SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {table} WHERE notification_id > %(after)s AND notification_id <= %(stop)s) "
        "SELECT * FROM r WHERE topic = ANY(%(topics)s::text[]) ORDER BY notification_id LIMIT {limit}"
    ).format(table=table, limit=Literal(int(limit)))


def postgres_query(recorder: PostgresApplicationRecorder, limit: int) -> Any:
    """Per topic (a LATERAL over the topic array) the next ``limit`` ids from the topic index, the first
    ``limit`` of those, then their rows by id.

    Shaped for the planner, checked with EXPLAIN in tests/projections/test_log.py: the range is a row
    comparison on ``(topic, notification_id)`` (with ``topic = $1`` PostgreSQL may prefer walking the
    id index and filtering, which visits every usage row: a topic it has no statistics for is
    assumed to be common), and ``limit`` is a literal (with a parameter, a generic plan expects
    thousands of ids and hash-joins them against a full scan of the table).
    """
    table = SQL("{}.{}").format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    return SQL(
        "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state "
        "FROM (SELECT s.notification_id FROM unnest(%(topics)s::text[]) AS t(topic) "
        "CROSS JOIN LATERAL (SELECT notification_id FROM {table} "
        "WHERE (topic, notification_id) > (t.topic, %(after)s) AND (topic, notification_id) <= (t.topic, %(stop)s) "
        "ORDER BY topic, notification_id LIMIT {limit}) AS s "
        "ORDER BY s.notification_id LIMIT {limit}) AS ids "
        "JOIN {table} AS e ON e.notification_id = ids.notification_id "
        "ORDER BY e.notification_id"
    ).format(table=table, limit=Literal(int(limit)))


def _read_postgres(
    recorder: PostgresApplicationRecorder, after: int, stop: int, topics: Sequence[str], limit: int
) -> Sequence[Notification]:
    params = {"topics": list(topics), "after": after, "stop": stop}
    query = postgres_short_query if stop - after <= SHORT_RANGE else postgres_query
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query(recorder, limit), params, prepare=True)
        return [
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in curs.fetchall()
        ]


def postgres_index_name(recorder: PostgresApplicationRecorder) -> str:
    """The topic index's name (PostgreSQL truncates identifiers at 63 bytes; so do we, visibly)."""
    return (recorder.events_table_name + POSTGRES_INDEX_SUFFIX)[:63]


def _ensure_postgres_index(recorder: PostgresApplicationRecorder) -> None:
    schema, table = recorder.datastore.schema, recorder.events_table_name
    name = postgres_index_name(recorder)
    qualified = SQL("{}.{}").format(Identifier(schema), Identifier(table))
    with recorder.datastore.get_connection() as conn:
        assert conn.autocommit, "CREATE INDEX CONCURRENTLY needs an autocommit connection"
        lock = f"ownllm topic index {schema}.{table}"  # processes starting together build it once
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock,))
        try:
            found = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, name),
            ).fetchone()
            if found is not None and found["indisvalid"]:
                return
            if found is not None:  # a concurrent build was interrupted: it left an invalid index behind
                conn.execute(
                    SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(Identifier(schema), Identifier(name))
                )
            row = conn.execute(SQL("SELECT MAX(notification_id) AS head FROM {}").format(qualified)).fetchone()
            large = row is not None and (row["head"] or 0) > CONCURRENT_BUILD_ABOVE
            concurrently = SQL("CONCURRENTLY ") if large else SQL("")
            conn.execute(
                SQL("CREATE INDEX {}IF NOT EXISTS {} ON {} (topic, notification_id)").format(
                    concurrently, Identifier(name), qualified
                )
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock,))
