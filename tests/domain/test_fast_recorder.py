"""The one-round-trip PostgreSQL recorder keeps eventsourcing's guarantees: gap-free ids in commit order
seen by a concurrent reader, each event stored once, atomic saves, version conflicts, NOTIFY, the lock.
eventsourcing's own application-recorder and non-interleaving test cases run against it too."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import resolve_topic
from psycopg.conninfo import conninfo_to_dict

from api.settings import load_settings
from api.stores import eventsourcing_env
from domain.adapters.postgres_recorder import OneTripPostgresApplicationRecorder, OneTripPostgresProcessRecorder
from tests.support.postgres import create_schema

WRITERS = 6
SAVES_PER_WRITER = 150
TOPIC = "tests.domain.test_fast_recorder:Thing.Happened"


class Counter(Aggregate):
    """A tiny aggregate for version conflicts."""

    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        """One more."""
        self.count += 1


class Ledger(Application[uuid.UUID]):
    """An application on the PostgreSQL env that OwnLLM uses."""

    name = "ledger"


@pytest.fixture
def env(postgres_dsn: str, tmp_path: Path) -> dict[str, str]:
    """OwnLLM's eventsourcing env for PostgreSQL, in a fresh schema."""
    settings = load_settings(
        {}, persistence="postgres", postgres_dsn=postgres_dsn, postgres_schema=create_schema(postgres_dsn),
        var_dir=str(tmp_path / "var"), inference=False,
    )  # fmt: skip
    return eventsourcing_env(settings)


@pytest.fixture
def ledger(env: dict[str, str]) -> Iterator[Ledger]:
    """A Ledger application with the recorder that OwnLLM's env selects."""
    app = Ledger(env)
    yield app
    app.close()


def stored(originator_id: uuid.UUID, version: int, size: int = 64) -> StoredEvent:
    """A stored event with a payload of ``size`` bytes."""
    return StoredEvent(originator_id, version, TOPIC, bytes([version % 256]) * size)


def test_the_postgres_env_selects_the_one_trip_recorder(env: dict[str, str], ledger: Ledger) -> None:
    assert resolve_topic(env["APPLICATION_RECORDER_TOPIC"]) is OneTripPostgresApplicationRecorder
    assert type(ledger.recorder) is OneTripPostgresApplicationRecorder
    assert "POSTGRES_ENABLE_DB_FUNCTIONS" not in env


def test_ownllm_uses_the_one_trip_process_recorder(env: dict[str, str]) -> None:
    assert resolve_topic(env["PROCESS_RECORDER_TOPIC"]) is OneTripPostgresProcessRecorder


def test_one_save_gets_consecutive_ids_in_event_order_and_reads_back_intact(ledger: Ledger) -> None:
    recorder = ledger.recorder
    events = [stored(uuid.uuid4(), 1, size=700) for _ in range(5)]
    ids = recorder.insert_events(events)
    assert ids is not None and list(ids) == list(range(ids[0], ids[0] + 5))
    notifications = recorder.select_notifications(start=ids[0], limit=10)
    assert [n.id for n in notifications] == list(ids)
    assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in notifications] == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in events
    ]


def test_reading_several_streams_at_once_equals_reading_each(ledger: Ledger) -> None:
    recorder = ledger.recorder
    assert isinstance(recorder, OneTripPostgresApplicationRecorder)
    streams = {uuid.uuid4(): n for n in (1, 3, 2)}
    for originator_id, versions in streams.items():
        recorder.insert_events([stored(originator_id, v) for v in range(1, versions + 1)])
    unrelated, missing = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events([stored(unrelated, 1)])
    wanted = [*streams, missing]
    together = recorder.select_events_of(wanted)
    each = [e for originator_id in sorted(wanted) for e in recorder.select_events(originator_id)]
    assert together == each
    assert len(together) == 6 and unrelated not in {e.originator_id for e in together}


def test_a_conflict_rolls_back_the_whole_save_and_the_connection_stays_usable(env: dict[str, str]) -> None:
    app = Ledger({**env, "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
    try:
        recorder = app.recorder
        taken = stored(uuid.uuid4(), 1)
        recorder.insert_events([taken])
        before = recorder.max_notification_id()
        assert before is not None
        fresh = [stored(uuid.uuid4(), 1), stored(uuid.uuid4(), 1)]
        with pytest.raises(IntegrityError):
            recorder.insert_events([*fresh, taken])
        assert recorder.max_notification_id() == before
        assert all(not recorder.select_events(e.originator_id) for e in fresh)
        ids = recorder.insert_events(fresh)  # the same (only) connection, back in a clean state
        assert ids is not None and len(ids) == 2 and ids[0] > before
    finally:
        app.close()


def test_aggregate_version_conflicts_still_raise_integrity_error(ledger: Ledger) -> None:
    counter = Counter()
    ledger.save(counter)
    first: Counter = ledger.repository.get(counter.id)
    second: Counter = ledger.repository.get(counter.id)
    first.increment()
    second.increment()
    ledger.save(first)
    with pytest.raises(IntegrityError):
        ledger.save(second)
    assert ledger.repository.get(counter.id).version == 2


def test_saves_still_notify_listeners(ledger: Ledger, postgres_dsn: str) -> None:
    recorder = ledger.recorder
    assert isinstance(recorder, OneTripPostgresApplicationRecorder)
    with psycopg.connect(postgres_dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "{recorder.channel_name}"')
        recorder.insert_events([stored(uuid.uuid4(), 1)])
        received = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in received] == [recorder.channel_name]


def test_a_save_waits_for_the_exclusive_table_lock(ledger: Ledger, postgres_dsn: str, env: dict[str, str]) -> None:
    recorder = ledger.recorder
    assert isinstance(recorder, OneTripPostgresApplicationRecorder)
    done = threading.Event()
    table = f'"{env["POSTGRES_SCHEMA"]}"."{recorder.events_table_name}"'

    def save() -> None:
        recorder.insert_events([stored(uuid.uuid4(), 1)])
        done.set()

    with psycopg.connect(postgres_dsn) as holder:
        holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        writer = threading.Thread(target=save)
        writer.start()
        assert not done.wait(0.5), "the save did not wait for the table lock"
        holder.rollback()
    assert done.wait(10)
    writer.join()


class TailingReader:
    """Reads the notification log while writers run; remembers every gap it was shown."""

    def __init__(self, ledger: Ledger) -> None:
        self.recorder = ledger.recorder
        self.seen: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        """Tail until stopped, then drain what is left."""
        while not self.stop.is_set():
            self.read_once()
        while self.read_once():
            pass

    def read_once(self) -> int:
        """Read the next page after the last id seen; a jump over a missing id is a gap. Returns the count."""
        start = self.seen[-1] + 1 if self.seen else None
        page = self.recorder.select_notifications(start=start, limit=500)
        for notification in page:
            if self.seen and notification.id != self.seen[-1] + 1:
                self.gaps.append((self.seen[-1], notification.id))
            self.seen.append(notification.id)
        return len(page)


def write(ledger: Ledger, writer: int, results: list[tuple[list[StoredEvent], list[int]]]) -> None:
    """One writer: saves of 1-3 events on fresh aggregates, keeping what each save returned."""
    for save in range(SAVES_PER_WRITER):
        events = [stored(uuid.uuid4(), 1, size=200) for _ in range(1 + (writer + save) % 3)]
        ids = ledger.recorder.insert_events(events)
        assert ids is not None
        results.append((events, list(ids)))


def test_concurrent_writers_never_show_a_reader_an_id_before_a_smaller_one(ledger: Ledger) -> None:
    results: list[tuple[list[StoredEvent], list[int]]] = []
    reader = TailingReader(ledger)
    reading = threading.Thread(target=reader.run)
    writers = [threading.Thread(target=write, args=(ledger, n, results)) for n in range(WRITERS)]
    reading.start()
    started = time.monotonic()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    reader.stop.set()
    reading.join()

    expected = sum(len(events) for events, _ in results)
    assert len(results) == WRITERS * SAVES_PER_WRITER
    assert reader.gaps == [], "a reader saw a later id before an earlier one became visible"
    assert reader.seen == list(range(1, expected + 1))  # gap-free, strictly increasing, nothing twice
    for events, ids in results:  # each save's ids are one consecutive block: no interleaving
        assert ids == list(range(ids[0], ids[0] + len(events)))
    by_id = {n.id: n for n in ledger.recorder.select_notifications(start=1, limit=expected + 10)}
    assert len(by_id) == expected
    for events, ids in results:  # every event stored exactly once, under the id it was given
        for stored_event, notification_id in zip(events, ids, strict=True):
            row = by_id[notification_id]
            assert (row.originator_id, row.originator_version, row.state) == (
                stored_event.originator_id, stored_event.originator_version, stored_event.state,
            )  # fmt: skip
    assert time.monotonic() - started < 60


def library_cases() -> Any:
    """``eventsourcing.tests.persistence``; it imports the pycryptodome cipher, not installed and not used here."""
    if importlib.util.find_spec("Crypto") is not None:
        return importlib.import_module("eventsourcing.tests.persistence")
    stub = ModuleType("eventsourcing.cipher")
    stub.AESCipher = object  # type: ignore[attr-defined]
    saved = sys.modules.get("eventsourcing.cipher")
    sys.modules["eventsourcing.cipher"] = stub
    try:
        return importlib.import_module("eventsourcing.tests.persistence")
    finally:
        del sys.modules["eventsourcing.cipher"]
        if saved is not None:
            sys.modules["eventsourcing.cipher"] = saved


cases = library_cases()


class LibraryCase:
    """Gives eventsourcing's unittest cases our recorder, each in a fresh schema of the test database."""

    dsn: str
    datastores: list[PostgresDatastore]

    @pytest.fixture(autouse=True)
    def _database(self, postgres_dsn: str) -> Iterator[None]:
        self.dsn, self.datastores = postgres_dsn, []
        yield
        for datastore in self.datastores:
            datastore.close()

    def create_recorder(self) -> OneTripPostgresApplicationRecorder:
        """A new recorder with its table, as the factory would make it."""
        params = conninfo_to_dict(self.dsn)
        datastore = PostgresDatastore(
            str(params["dbname"]), str(params.get("host", "127.0.0.1")), str(params.get("port", "5432")),
            str(params.get("user", "postgres")), str(params.get("password", "")),
            pool_size=4, max_overflow=12, schema=create_schema(self.dsn),
        )  # fmt: skip
        self.datastores.append(datastore)
        recorder = OneTripPostgresApplicationRecorder(datastore, events_table_name="stored_events")
        recorder.create_table()
        return recorder


class TestLibraryApplicationRecorderCases(LibraryCase, cases.ApplicationRecorderTestCase):  # type: ignore[misc,name-defined]
    """eventsourcing 9.5.6's ApplicationRecorderTestCase (insert/select, concurrency, throughput)."""


class TestLibraryNonInterleavingCase(LibraryCase, cases.NonInterleavingNotificationIDsBaseCase):  # type: ignore[misc,name-defined]
    """eventsourcing 9.5.6's check that two concurrent 1,000-event saves never interleave their ids."""
