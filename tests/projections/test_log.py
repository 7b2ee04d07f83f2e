"""Reading the notification log by topic: the same answer as filtering the whole log, through an index."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL, Literal

from api.services import Services, build_services
from api.settings import Settings
from domain.usage import UsageRecord
from projections.directory import Directory
from projections.log import (
    SHORT_RANGE,
    SQLITE_INDEX,
    NotificationLog,
    postgres_index_name,
    postgres_query,
    postgres_short_query,
    sqlite_query,
    sqlite_short_query,
    topics_of,
)

TOPICS = ("a:A", "b:B", "c:C", "d:D")


def fill(recorder: ApplicationRecorder, topics: list[str]) -> None:
    """One stored event per topic, in this order, one save each (so ids follow the list)."""
    for n, topic in enumerate(topics):
        recorder.insert_events([StoredEvent(uuid.uuid4(), 1, topic, f"state {n}".encode())])


def check_equals_filtering(log: NotificationLog) -> None:
    everything = list(log.recorder.select_notifications(1, 10_000))
    head = log.head()
    assert head == everything[-1].id

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        topics=st.lists(st.sampled_from(TOPICS), unique=True, max_size=4),
        after=st.integers(0, head + 2),
        span=st.integers(0, head + 2),
        limit=st.integers(1, 12),
    )
    def same_answer(topics: list[str], after: int, span: int, limit: int) -> None:
        stop = after + span
        expected = [n for n in everything if after < n.id <= stop and (not topics or n.topic in topics)][:limit]
        got = list(log.read(after, stop, topics, limit))
        assert [(n.id, n.topic, n.state, n.originator_id) for n in got] == [
            (n.id, n.topic, n.state, n.originator_id) for n in expected
        ]

    same_answer()


@pytest.mark.parametrize("short_range", [0, 10, 10**6], ids=["by-topic", "both", "by-id"])
def test_reading_by_topic_is_filtering_the_whole_log(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, short_range: int
) -> None:
    """Ranges up to ``SHORT_RANGE`` ids are read by id, longer ones per topic: each is the same answer."""
    monkeypatch.setattr("projections.log.SHORT_RANGE", short_range)
    services = build_services(make_settings(), start_runner=False)
    try:
        fill(services.app.recorder, [TOPICS[(n * n + n // 3) % 3] if n % 11 else "d:D" for n in range(45)])
        check_equals_filtering(NotificationLog(services.app.recorder))
    finally:
        services.close()


def test_reading_by_topic_in_memory_too() -> None:
    recorder = POPOApplicationRecorder()
    fill(recorder, [TOPICS[n % 3] for n in range(20)])
    check_equals_filtering(NotificationLog(recorder))


def test_the_topic_index_is_created_once_whatever_the_number_of_processes(
    make_settings: Callable[..., Settings],
) -> None:
    settings_ = make_settings()
    first = build_services(settings_, start_runner=False)
    second = build_services(settings_, start_runner=False)  # another process on the same store
    try:
        for services in (first, second, first):
            log = NotificationLog(services.app.recorder)
            log.ensure_index()
            log.ensure_index()
        assert topic_indexes(first) == 1
        drop_topic_index(first)
        assert topic_indexes(first) == 0
        fresh = NotificationLog(second.app.recorder)  # a first read by topic creates it where it is missing
        assert list(fresh.read(0, 10, ["a:A"], 5)) == []
        assert topic_indexes(second) == 1
    finally:
        first.close()
        second.close()


def drop_topic_index(services: Services) -> None:
    recorder = services.app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        with psycopg.connect(services.settings.postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP INDEX "{services.settings.postgres_schema}"."{postgres_index_name(recorder)}"')
    else:
        with recorder.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            c.execute(f"DROP INDEX {SQLITE_INDEX}")


def topic_indexes(services: Services) -> int:
    recorder = services.app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        with psycopg.connect(services.settings.postgres_dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                (services.settings.postgres_schema, postgres_index_name(recorder)),
            ).fetchone()
            return int(row[0]) if row else 0
    with recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
        c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?", (SQLITE_INDEX,))
        return int(c.fetchone()[0])


@pytest.fixture
def postgres_services(make_settings: Callable[..., Settings]) -> Iterator[Services]:
    services = build_services(make_settings(), start_runner=False)
    NotificationLog(services.app.recorder).ensure_index()
    yield services
    services.close()


@pytest.mark.parametrize("persistence", ["postgres"])
def test_an_interrupted_concurrent_build_is_repaired(postgres_services: Services) -> None:
    recorder = postgres_services.app.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    name = postgres_index_name(recorder)
    with psycopg.connect(postgres_services.settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
            "(SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s)",
            (postgres_services.settings.postgres_schema, name),
        )
        log = NotificationLog(recorder)
        log.ensure_index()
        valid = conn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (postgres_services.settings.postgres_schema, name),
        ).fetchone()
    assert valid == (True,)


DIRECTORY_TOPICS = list(Directory.topics)
USAGE_TOPICS = list(topics_of([UsageRecord.Recorded]))


@pytest.mark.parametrize("persistence", ["postgres"])
@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_postgres_reads_a_topic_through_the_index_never_the_usage_rows(
    postgres_services: Services, plan_cache_mode: str
) -> None:
    """A reader far behind: per topic, the next ids from the topic index, never a usage row."""
    with prepared(postgres_services, postgres_query, plan_cache_mode) as (conn, table, topic_index):
        for topics, after in ((DIRECTORY_TOPICS, 0), (DIRECTORY_TOPICS, 59_000), (USAGE_TOPICS, 30_000)):
            plan = explain(conn, topics, after)
            nodes = list(walk(plan["Plan"]))
            scans = [n for n in nodes if n.get("Relation Name") == table]
            assert scans, plan
            assert all(n["Node Type"] in {"Index Only Scan", "Index Scan"} for n in scans), plan
            by_topic = [n for n in scans if n.get("Index Name") == topic_index]
            assert by_topic and all(n["Node Type"] == "Index Only Scan" for n in by_topic), plan
            assert all("Filter" not in n for n in scans), plan  # no row is read only to be thrown away
            read = sum(n["Actual Rows"] * n["Actual Loops"] for n in by_topic)
            assert read <= len(topics) * 100, plan  # at most ``limit`` index entries per topic


@pytest.mark.parametrize("persistence", ["postgres"])
@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_postgres_reads_a_short_range_by_id_never_through_the_topic_index(
    postgres_services: Services, plan_cache_mode: str
) -> None:
    """What a reader following the log asks at each poll: a few new ids, the directory's many topics."""
    with prepared(postgres_services, postgres_short_query, plan_cache_mode) as (conn, table, topic_index):
        head = 60_000
        for topics, after in ((DIRECTORY_TOPICS, head - 40), (DIRECTORY_TOPICS, head - SHORT_RANGE), (USAGE_TOPICS, 0)):
            plan = explain(conn, topics, after, min(after + SHORT_RANGE, head))
            scans = [n for n in walk(plan["Plan"]) if n.get("Relation Name") == table]
            assert scans and all(n["Node Type"] in {"Index Scan", "Bitmap Heap Scan"} for n in scans), plan
            assert not any(n.get("Index Name") == topic_index for n in walk(plan["Plan"])), plan
            assert sum(n["Actual Rows"] * n["Actual Loops"] for n in scans) <= SHORT_RANGE, plan


@contextmanager
def prepared(
    services: Services, query_of: Callable[[PostgresApplicationRecorder, int], Any], plan_cache_mode: str
) -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """60,000 usage rows with a directory event every 500, fresh statistics, then the query (limit 100)
    prepared as ``by_topic`` (as the runner's prepared statement) under ``plan_cache_mode``; yields the
    connection, the events table's name and the topic index's."""
    recorder = services.app.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    schema, table = services.settings.postgres_schema, recorder.events_table_name
    with psycopg.connect(services.settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}"."{table}" (originator_id, originator_version, topic, state) '
            "SELECT gen_random_uuid(), 1, CASE WHEN g %% 500 = 0 THEN %s ELSE %s END, '\\x00'::bytea "
            "FROM generate_series(1, 60000) g",
            (DIRECTORY_TOPICS[0], USAGE_TOPICS[0]),
        )
        conn.execute(f'ANALYZE "{schema}"."{table}"')
        conn.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        text = query_of(recorder, 100).as_string(conn)
        for n, name in enumerate(("topics", "after", "stop"), start=1):
            text = text.replace(f"%({name})s", f"${n}")
        conn.execute(f"PREPARE by_topic(text[], bigint, bigint) AS {text}")
        yield conn, table, postgres_index_name(recorder)


def explain(conn: psycopg.Connection[Any], topics: list[str], after: int, stop: int = 10**9) -> Any:
    query = SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE by_topic({}, {}, {})").format(
        Literal(topics), Literal(after), Literal(stop)
    )
    row = conn.execute(query).fetchone()
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return document[0]


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_sqlite_reads_a_topic_through_the_covering_index(make_settings: Callable[..., Settings]) -> None:
    services = build_services(make_settings(), start_runner=False)
    NotificationLog(services.app.recorder).ensure_index()
    try:
        with services.app.recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            for topics in (DIRECTORY_TOPICS, USAGE_TOPICS):
                params: list[Any] = []
                for topic in topics:
                    params += [topic, 0, 10**9, 100]
                c.execute("EXPLAIN QUERY PLAN " + sqlite_query("stored_events", len(topics)), [*params, 100])
                steps = [row[3] for row in c.fetchall()]
                touching = [s for s in steps if "stored_events" in s]
                assert touching, steps
                assert not any(s.startswith("SCAN stored_events") for s in touching), steps
                for step in touching:
                    assert step in {
                        f"SEARCH stored_events USING COVERING INDEX {SQLITE_INDEX} (topic=? AND rowid>? AND rowid<?)",
                        "SEARCH stored_events USING INTEGER PRIMARY KEY (rowid=?)",
                    }, steps
                c.execute(
                    "EXPLAIN QUERY PLAN " + sqlite_short_query("stored_events", len(topics)), [0, 200, *topics, 100]
                )
                steps = [row[3] for row in c.fetchall()]
                assert steps == ["SEARCH stored_events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"], steps
    finally:
        services.close()


@pytest.mark.parametrize("persistence", ["postgres"])
def test_a_large_table_gets_its_index_built_concurrently(
    postgres_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = postgres_services.app.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    fill(recorder, ["a:A", "b:B", "a:A"])
    drop_topic_index(postgres_services)
    statements: list[str] = []
    monkeypatch.setattr("projections.log.CONCURRENT_BUILD_ABOVE", 2)  # "large" from 3 rows on
    original = psycopg.Connection.execute

    def recording(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(query.as_string(self) if hasattr(query, "as_string") else str(query))
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recording)
    log = NotificationLog(recorder)
    log.ensure_index()
    assert any(s.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS") for s in statements), statements
    assert topic_indexes(postgres_services) == 1
    assert [n.id for n in log.read(0, 10, ["a:A"], 10)] == [1, 3]
