"""The audit log read model: every event has its row, rebuilt equals incremental, a crash loses nothing."""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from eventsourcing.domain import Aggregate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL, Identifier

import domain
from api.services import Services, build_services
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from domain.errors import DomainError
from domain.operator import Operator
from domain.price_book import PriceBook
from domain.terms import Publication
from domain.usage import UsageRecord
from projections import log_ranges, runner
from projections.audit_entries import DESCRIBE, NOT_ROWS, USAGE_ACTION
from projections.audit_log import AuditFilter, AuditProjection, AuditRow
from projections.log import NotificationLog
from projections.rebuild import rebuild
from tests.support.clock import ManualClock


def _domain_events() -> set[type]:
    """Every event class of every aggregate in the domain package."""
    import importlib
    import pkgutil

    found: set[type] = set()
    for module_info in pkgutil.iter_modules(domain.__path__):
        module = importlib.import_module(f"domain.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Aggregate) and cls.__module__ == module.__name__:
                found |= {v for name, v in vars(cls).items() if isinstance(v, type) and issubclass(v, Aggregate.Event)
                          and name not in ("Event", "Created")}  # fmt: skip
    return found


def test_every_domain_event_is_described_or_aggregated() -> None:
    events = _domain_events()
    assert len(events) >= 20
    no_tenant = {  # events of no tenant: in the integrity ledger and replay, in no tenant's audit log
        Operator.Registered, Operator.TokenIssued, Operator.TokenRevoked, Publication.Published,
        PriceBook.Opened, PriceBook.PriceChangeScheduled,
    }  # fmt: skip
    assert events - set(DESCRIBE) - no_tenant - set(NOT_ROWS) == {UsageRecord.Recorded}


@pytest.fixture
def quiet(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Services]:
    """Services whose runner moves only when a test says so."""
    built = build_services(make_settings(), start_runner=False, clock=clock)
    yield built
    built.close()


def _rows(services: Services, tenant_id: uuid.UUID) -> list[AuditRow]:
    return list(services.audit.scan(AuditFilter(tenant_id), batch=7))


class Story:
    """A tenant to whom random things happen."""

    def __init__(self, services: Services, clock: ManualClock) -> None:
        self.services, self.clock = services, clock
        signed = services.app.signup(slug=f"t-{uuid.uuid4().hex[:12]}", name="T", admin_name="A",
                                     admin_email="a@t.example", request_id="r0")  # fmt: skip
        self.tenant_id = signed.tenant_id
        self.ctx = Ctx(SYSTEM, self.tenant_id, "r")
        self.users: list[uuid.UUID] = [signed.admin_user_id]
        self.keys: list[uuid.UUID] = [signed.admin_key.id]

    def act(self, kind: str, pick: int) -> None:
        app, ctx = self.services.app, self.ctx
        try:
            if kind == "join":
                invite = app.invite_user(ctx, email=f"{uuid.uuid4().hex[:8]}@t.example", role="member")
                self.users.append(app.accept_invite(token=invite.secret, name="U", request_id="r").user_id)
            elif kind == "key":
                user = self.users[pick % len(self.users)]
                self.keys.append(app.issue_api_key(ctx, user_id=user, name="k", scopes=["inference"]).id)
            elif kind == "revoke":
                app.revoke_api_key(ctx, self.keys[pick % len(self.keys)], "")
            elif kind == "role":
                app.change_role(ctx, self.users[pick % len(self.users)], "billing", "")
            elif kind == "usage":
                key = self.keys[pick % len(self.keys)]
                app.record_usage(
                    tenant_id=self.tenant_id, user_id=self.users[0], key_id=key, agent_id=None, model=f"m{pick % 2}",
                    endpoint="chat", stream=False, status="ok", prompt_tokens=pick, completion_tokens=1, ttft_ms=1,
                    duration_ms=1, request_id=str(uuid.uuid4()),
                )  # fmt: skip
            elif kind == "hour":
                self.clock.advance(minutes=25)
        except DomainError:
            pass  # refused (revoking twice, the last admin): refusals write nothing


KINDS = st.sampled_from(["join", "key", "revoke", "role", "usage", "usage", "hour"])
steps = st.lists(st.tuples(KINDS, st.integers(0, 50), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_rebuilt_equals_incremental(quiet: Services, clock: ManualClock, steps: list[tuple[str, int, bool]]) -> None:
    story = Story(quiet, clock)
    for kind, pick, catch_up in steps:
        story.act(kind, pick)
        if catch_up:  # random batch boundaries, usage hours split across batches
            quiet.runner.catch_up()
    quiet.runner.catch_up()
    incremental = _rows(quiet, story.tenant_id)

    _check_counts(quiet, story, incremental)

    app = quiet.app
    rebuild(quiet.audit, NotificationLog(app.recorder), app.mapper.to_domain_event)
    assert _rows(quiet, story.tenant_id) == incremental
    _check_counts(quiet, story, incremental)

    usage = [r for r in incremental if r.entry.action == USAGE_ACTION]
    assert sum(r.requests for r in usage) == sum(1 for kind, _, _ in steps if kind == "usage")
    assert len({(r.entry.subject_id, r.entry.summary, r.entry.time) for r in usage}) == len(usage)  # one per hour


def _check_counts(services: Services, story: Story, rows: list[AuditRow]) -> None:
    """Every count from the counts table equals the rows that match, counted here."""
    tenant = story.tenant_id
    actors = [f"key:{k}" for k in story.keys[:2]] + [f"user:{story.users[0]}"]
    filters = [
        (AuditFilter(tenant), lambda r: True),
        (AuditFilter(tenant, action_prefix="usage."), lambda r: r.entry.action.startswith("usage.")),
        (AuditFilter(tenant, action_prefix="api_k"), lambda r: r.entry.action.startswith("api_k")),
        (AuditFilter(tenant, action="api_key.issued"), lambda r: r.entry.action == "api_key.issued"),
        (AuditFilter(tenant, actors=(actors[0],)), lambda r: r.entry.actor == actors[0]),
        (AuditFilter(tenant, actors=tuple(actors), action_prefix="api_key."),
         lambda r: r.entry.actor in actors and r.entry.action.startswith("api_key.")),
    ]  # fmt: skip
    for where, matches in filters:
        assert services.audit.count(where) == (sum(1 for r in rows if matches(r)), True), where


def test_a_store_from_before_the_counts_table_sums_its_rows_when_opened(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    made = make_settings()
    services = build_services(made, start_runner=False, clock=clock)
    story = Story(services, clock)
    for n, kind in enumerate(["join", "key", "usage", "usage", "revoke", "hour", "usage", "role"]):
        story.act(kind, n)
    services.runner.catch_up()
    rows = _rows(services, story.tenant_id)
    table: Any = services.audit.table
    with table.datastore.transaction(commit=True) as c:
        c.execute("DROP TABLE audit_counts" if table.sqlite else SQL("DROP TABLE {}").format(table.counts))
    services.close()
    reopened = build_services(made, start_runner=False, clock=clock)
    try:
        _check_counts(reopened, story, rows)
        reopened.runner.catch_up()  # nothing new: counted once
        _check_counts(reopened, story, rows)
        story.services = reopened
        story.act("usage", 1)  # a new hour's row, then one more request in the same hour's row
        story.act("usage", 1)
        reopened.runner.catch_up()
        _check_counts(reopened, story, _rows(reopened, story.tenant_id))
    finally:
        reopened.close()


def test_a_crash_between_rows_and_position_loses_and_duplicates_nothing(
    quiet: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = Story(quiet, clock)
    quiet.runner.catch_up()
    before = _rows(quiet, story.tenant_id)
    position = quiet.audit.stored_position()
    for kind in ("key", "usage", "usage", "join"):
        story.act(kind, 3)

    table = type(quiet.audit.table)

    def crash(*_: Any) -> None:
        raise OSError("killed before the tracking record")

    monkeypatch.setattr(table, "_insert_tracking", crash)
    quiet.runner.catch_up()
    assert _rows(quiet, story.tenant_id) == before  # the rows went with the failed transaction
    assert quiet.audit.stored_position() == position

    monkeypatch.undo()
    quiet.runner.catch_up()
    after = _rows(quiet, story.tenant_id)
    assert [r.entry.action for r in after[len(before) :]] == [
        "api_key.issued", "usage.hourly", "invite.issued", "invite.accepted", "user.joined", "api_key.issued",
    ]  # fmt: skip
    assert sum(r.requests for r in after if r.entry.action == USAGE_ACTION) == 2


def test_a_rebuild_in_many_batches_reads_each_next_batch_while_applying_one_and_equals_incremental(
    quiet: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = Story(quiet, clock)
    for n, kind in enumerate(["join", "key", "usage", "hour", "usage", "revoke", "role", "usage", "key"] * 3):
        story.act(kind, n)
    quiet.runner.catch_up()
    incremental = _rows(quiet, story.tenant_id)
    monkeypatch.setattr(runner, "TRACKED_BATCH", 4)
    monkeypatch.setattr(log_ranges, "RANGE_CHUNK", 3)  # ids per query: batches of a few events
    threads: list[str] = []
    read = NotificationLog.records

    def watched(self: NotificationLog, *args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return read(self, *args)

    monkeypatch.setattr(NotificationLog, "records", watched)
    writers: list[str] = []
    write = AuditProjection.write

    def written(self: AuditProjection, *args: Any) -> None:
        writers.append(threading.current_thread().name)
        write(self, *args)

    monkeypatch.setattr(AuditProjection, "write", written)
    replayed, head = rebuild(quiet.audit, NotificationLog(quiet.app.recorder), quiet.app.mapper.to_domain_event)
    assert replayed == head and len(threads) > 5
    if quiet.settings.persistence == "postgres":  # the next batch read in the reading thread
        assert all(name.startswith("rebuild-read") for name in threads[1:])
    assert len(writers) == len(threads) and all(name.startswith("rebuild-write") for name in writers)
    assert _rows(quiet, story.tenant_id) == incremental
    _check_counts(quiet, story, incremental)


def _indexes(services: Services) -> set[str]:
    table: Any = services.audit.table
    if table.sqlite:
        with table.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log'")
            return {r[0] for r in c.fetchall()}
    with table.datastore.transaction(commit=False) as curs:
        curs.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                     (table.datastore.schema, table.name))  # fmt: skip
        return {r["indexname"] for r in curs.fetchall()}


def test_a_rebuild_builds_its_indexes_after_the_rows_and_again_when_it_fails(
    quiet: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = Story(quiet, clock)
    for kind in ["join", "key", "usage", "revoke"]:
        story.act(kind, 1)
    quiet.runner.catch_up()
    indexes, rows = _indexes(quiet), _rows(quiet, story.tenant_id)
    assert len(indexes) >= 8
    seen: list[set[str]] = []
    apply = type(quiet.audit.table).apply

    def watching(self: Any, *args: Any) -> None:
        seen.append(_indexes(quiet))
        apply(self, *args)

    monkeypatch.setattr(type(quiet.audit.table), "apply", watching)
    log = NotificationLog(quiet.app.recorder)
    rebuild(quiet.audit, log, quiet.app.mapper.to_domain_event)
    assert seen and all(len(found) <= 3 for found in seen)  # rows went in with the primary key and bucket only
    assert _indexes(quiet) == indexes and _rows(quiet, story.tenant_id) == rows

    def killed(self: Any, *args: Any) -> None:
        raise OSError("killed mid-rebuild")

    monkeypatch.setattr(type(quiet.audit.table), "apply", killed)
    with pytest.raises(OSError):
        rebuild(quiet.audit, log, quiet.app.mapper.to_domain_event)
    assert _indexes(quiet) == indexes


def test_a_rebuild_whose_write_fails_stops_at_the_last_batch_written_and_the_next_one_completes(
    quiet: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are worked out ahead of their writes; a write that fails ends the rebuild with its error,
    the table as the batches before it left it (rows and position together), nothing of later ones."""
    story = Story(quiet, clock)
    for n, kind in enumerate(["join", "key", "usage", "hour", "revoke", "role", "usage", "key"] * 2):
        story.act(kind, n)
    quiet.runner.catch_up()
    incremental = _rows(quiet, story.tenant_id)
    monkeypatch.setattr(runner, "TRACKED_BATCH", 5)
    monkeypatch.setattr(log_ranges, "RANGE_CHUNK", 5)
    apply, calls = type(quiet.audit.table).apply, []

    def third_fails(self: Any, expected: int, tracking: Any, *args: Any) -> None:
        calls.append(tracking.notification_id)
        if len(calls) == 3:
            raise OSError("disk full")
        apply(self, expected, tracking, *args)

    monkeypatch.setattr(type(quiet.audit.table), "apply", third_fails)
    log = NotificationLog(quiet.app.recorder)
    with pytest.raises(OSError, match="disk full"):
        rebuild(quiet.audit, log, quiet.app.mapper.to_domain_event)
    assert len(calls) == 3 and quiet.audit.stored_position() == calls[1]
    partial = _rows(quiet, story.tenant_id)
    assert partial and all(r.position <= calls[1] for r in partial)
    tenancy = [r for r in incremental if r.position <= calls[1] and r.entry.action != USAGE_ACTION]
    assert [r for r in partial if r.entry.action != USAGE_ACTION] == tenancy  # hourly usage: counted so far
    monkeypatch.setattr(type(quiet.audit.table), "apply", apply)
    replayed, head = rebuild(quiet.audit, log, quiet.app.mapper.to_domain_event)
    assert replayed == head and _rows(quiet, story.tenant_id) == incremental


def test_a_page_since_a_time_is_the_same_whichever_index_it_walks(quiet: Services, clock: ManualClock) -> None:
    story = Story(quiet, clock)
    for n in range(40):
        story.act("key" if n % 3 else "hour", n)
    quiet.runner.catch_up()
    everything = _rows(quiet, story.tenant_id)
    for row in everything[:: max(1, len(everything) // 6)]:
        since = row.entry.time
        expected = sorted((r for r in everything if r.entry.time >= since), key=lambda r: -r.position)
        for limit in (2, 5, 100):  # few rows (the time index) or many (the positions walked back, on SQLite)
            page = quiet.audit.page(AuditFilter(story.tenant_id, since=since), limit=limit)
            assert page.rows == expected[:limit]
            if len(expected) > limit:
                older = quiet.audit.page(AuditFilter(story.tenant_id, since=since), before=page.rows[-1].position,
                                         limit=limit)  # fmt: skip
                assert older.rows == expected[limit : 2 * limit]


@pytest.mark.parametrize("persistence", ["postgres"])
def test_a_process_opening_the_table_while_another_writes_a_batch_waits_for_it(quiet: Services) -> None:
    """Opening takes the table, then the counts (as a batch does), so the two never wait on each other.

    It had locked the counts first and the table at its ``CREATE INDEX IF NOT EXISTS``: a batch holding
    the table and then writing its counts was a deadlock (seen in CI when a second process opened).
    """
    table: Any = quiet.audit.table
    dsn = quiet.settings.postgres_dsn
    row = (uuid.uuid4(), "user:x", "user.joined", "user", uuid.uuid4(), "joined", "r", "user")
    with ThreadPoolExecutor(1) as another, psycopg.connect(dsn) as writer:  # a batch in flight: row in, counts not
        writer.execute(SQL("SET search_path TO {}").format(Identifier(quiet.settings.postgres_schema)))
        columns = "position, tenant_id, time, actor, action, subject_kind, subject_id, summary, request_id, action_kind"
        writer.execute(
            f"INSERT INTO ownllm_audit_log ({columns}) VALUES (1, %s, now(), %s, %s, %s, %s, %s, %s, %s)", row
        )
        opened: Future[None] = another.submit(table.create_table)  # another process opening the table
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(dsn) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting_on_a_lock(dsn), "the opening did not wait for the batch"
        writer.execute("INSERT INTO ownllm_audit_counts VALUES (%s, %s, %s, %s, 1)", (row[0], row[2], row[1], row[7]))
        writer.commit()  # before the fix: deadlock detected, in one of the two
    opened.result(timeout=10)
    assert quiet.audit.count(AuditFilter(row[0])) == (1, True)


def _waiting_on_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                             "AND datname = current_database()").fetchone()  # fmt: skip
    return bool(found and found[0])
