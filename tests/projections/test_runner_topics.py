"""The runner reads each read model's own topics: start-up and polls never decode usage for the directory."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
import pytest
from eventsourcing.persistence import Notification, OperationalError

from api.services import Services, build_services
from api.settings import Settings
from domain.sealing import SealingMapper
from domain.usage import UsageRecord
from projections.billing_ledger import BillingLedger
from projections.billing_view import BillingView
from projections.credit_balances import CreditBalances
from projections.credit_view import CreditProjection
from projections.directory import Directory
from projections.enforcement import Enforcement
from projections.lifecycle import ErasureFollower, LifecycleView
from projections.log import NotificationLog, Recorded, topics_of
from projections.retention import RetentionView
from projections.status import Failures
from projections.usage_view import UsageProjection
from tests.support.terms import TERMS

USAGE = topics_of([UsageRecord.Recorded])[0]
# the in-memory read models' topics (directory, enforcement, lifecycle, erasures, billing, credit balances,
# retention): never usage
IN_MEMORY = tuple(
    sorted(
        {
            *Directory.topics,
            *Enforcement.topics,
            *LifecycleView.topics,
            *ErasureFollower.topics,
            *BillingView.topics,
            *CreditBalances.topics,
            *RetentionView.topics,
        }
    )
)


def record(services: Services, tenant: uuid.UUID, tokens: int = 1) -> None:
    services.app.record_usage(
        tenant_id=tenant, user_id=uuid.uuid4(), key_id=uuid.uuid4(), agent_id=None, model="m", endpoint="chat",
        stream=False, status="ok", prompt_tokens=tokens, completion_tokens=tokens, ttft_ms=1, duration_ms=10,
        request_id=str(uuid.uuid4()),
    )  # fmt: skip


def signup(services: Services, slug: str) -> Any:
    return services.command(
        services.app.signup, slug=slug, name=slug.title(), admin_name="Ada", admin_email=f"ada@{slug}.example",
        request_id=f"r-{slug}", accept_terms=TERMS,  # else the first request records acceptance by use
    )  # fmt: skip


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every event the application's mapper decodes from now on, counted by topic."""
    counts: Counter[str] = Counter()
    original = SealingMapper.to_domain_event

    def counting(self: SealingMapper, stored: Any) -> Any:
        counts[stored.topic] += 1
        return original(self, stored)

    monkeypatch.setattr(SealingMapper, "to_domain_event", counting)
    return counts


@pytest.fixture
def history(make_settings: Callable[..., Settings]) -> Iterator[tuple[Settings, list[Any]]]:
    """A store holding tenants and 150 usage records among them, the usage view up to date."""
    settings_ = make_settings()
    writer = build_services(settings_, start_runner=False)
    tenants = []
    for n in range(3):
        tenants.append(signup(writer, f"tenant-{n}"))
        for _ in range(50):
            record(writer, tenants[-1].tenant_id)
    writer.runner.catch_up()
    while writer.reactions.run_once():  # reactions too (credit debits read usage): history fully handled
        pass
    assert writer.usage.position == writer.runner.log.head()
    writer.close()
    yield settings_, tenants


@pytest.mark.parametrize("run_projections", [False, True])
def test_a_process_starts_and_polls_without_decoding_one_usage_event(
    history: tuple[Settings, list[Any]], decoded: Counter[str], run_projections: bool
) -> None:
    settings_, tenants = history
    services = build_services(msgspec.structs.replace(settings_, run_projections=run_projections))
    try:
        assert decoded[USAGE] == 0
        assert sum(decoded.values()) > 0 and set(decoded) <= set(IN_MEMORY)
        for tenant in tenants:  # ...and the directory is whole: every admin key authenticates
            assert services.authenticator.authenticate(tenant.admin_key.secret).tenant_id == tenant.tenant_id
        assert services.runner.position == services.runner.log.head()
        decoded.clear()
        services.runner.catch_up()
        assert decoded == Counter()  # a poll with nothing new decodes nothing
    finally:
        services.close()


def test_the_in_memory_read_asks_only_for_the_directory_topics(
    history: tuple[Settings, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, ...]] = []
    original = NotificationLog.read

    def spying(self: NotificationLog, after: int, stop: int, topics: Sequence[str], limit: int) -> Any:
        asked.append(tuple(topics))
        return original(self, after, stop, topics, limit)

    monkeypatch.setattr(NotificationLog, "read", spying)
    original_records = NotificationLog.records

    def spying_records(self: NotificationLog, after: int, stop: int, topics: Sequence[str], *args: Any) -> Any:
        if not topics:  # a read by topics goes through ``read`` (spied above)
            asked.append(())
        return original_records(self, after, stop, topics, *args)

    monkeypatch.setattr(NotificationLog, "records", spying_records)
    settings_, _ = history
    services = build_services(settings_, start_runner=False)
    try:
        assert asked and set(asked) == {IN_MEMORY}  # the usage view was already at the head
        record(services, uuid.uuid4())
        asked.clear()
        services.runner.catch_up()
        # usage records and refusal tallies; the audit log and the integrity ledger read every event,
        # standing at the same position: one read for both; then the billing ledger and the credit view
        assert asked == [IN_MEMORY, UsageProjection.topics, (), BillingLedger.topics, CreditProjection.topics]
    finally:
        services.close()


def test_every_reader_reaches_the_head_whatever_its_topics(make_settings: Callable[..., Settings]) -> None:
    services = build_services(make_settings(), start_runner=False)
    try:
        signup(services, "acme")
        head = services.runner.log.head()
        assert services.runner.position == services.usage.position == head  # no usage at all yet
        for _ in range(3):
            record(services, uuid.uuid4())
        services.runner.catch_up()  # the directory read nothing, yet it is at the new head too
        head = services.runner.log.head()
        assert services.runner.position == services.usage.position == services.runner.tracked_position == head
        assert services.usage.stored_position() == head
    finally:
        services.close()


class Ledger:
    """A tracked read model of every event, as stored (what the integrity ledger will hash)."""

    name = "ledger"
    topics: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.position = 0
        self.records: list[Recorded] = []

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        self.records += [r for r in records if r.notification_id > self.position]
        self.position = through

    def stored_position(self) -> int:
        return self.position

    def clear(self) -> None:
        self.position, self.records = 0, []


def test_a_tracked_projection_of_every_event_receives_the_bytes_as_stored(
    make_settings: Callable[..., Settings],
) -> None:
    services = build_services(make_settings(), start_runner=False)
    ledger = Ledger()
    services.runner.tracked.append(ledger)
    try:
        signed_up = signup(services, "acme")
        record(services, signed_up.tenant_id)
        services.runner.catch_up()
        stored: list[Notification] = list(services.app.recorder.select_notifications(1, 1000))
        assert [r.notification_id for r in ledger.records] == [n.id for n in stored] == list(range(1, len(stored) + 1))
        for got, raw in zip(ledger.records, stored, strict=True):
            assert (got.originator_id, got.originator_version, got.topic, got.state) == (
                raw.originator_id, raw.originator_version, raw.topic, raw.state,
            )  # fmt: skip
            assert (
                got.event.originator_id == raw.originator_id and got.event.originator_version == raw.originator_version
            )
        joined = next(r for r in ledger.records if r.topic == "domain.user:User.Joined")
        assert b"ada@acme.example" not in joined.state  # sealed as stored...
        assert str(joined.event.email) == "ada@acme.example"  # ...and decoded for those who may read it
        assert ledger.position == services.runner.log.head()
    finally:
        services.close()


class Flaky(Ledger):
    """A tracked read model whose database refuses the next ``failures`` batches."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("database is locked")
        super().process_records(records, through)


def test_a_failing_tracked_projection_is_counted_where_other_processes_can_see_it(
    make_settings: Callable[..., Settings],
) -> None:
    settings_ = make_settings()
    services = build_services(settings_, start_runner=False)
    other = build_services(settings_, start_runner=False)  # another process: ``ownllm projections status``
    flaky = Flaky(failures=2)
    services.runner.tracked.append(flaky)
    try:
        signed_up = signup(services, "acme")  # first failure, in the command's catch-up
        assert services.authenticator.authenticate(signed_up.admin_key.secret).tenant_id == signed_up.tenant_id
        assert other.runner.failure_log is not None
        seen = other.runner.failure_log.load()["flaky"]
        assert (seen.failures, seen.last_error) == (1, "OperationalError") and seen.last_error_at is not None
        services.runner.catch_up()  # second failure: counted in memory, written at most every few seconds
        assert services.runner.tracked_position == 0 < services.runner.position
        services.runner.catch_up()
        assert flaky.position == services.runner.position == services.runner.tracked_position
        recovered = other.runner.failure_log.load()["flaky"]
        assert recovered == Failures(0, "OperationalError", seen.last_error_at)  # the last error stays on record
        assert other.runner.failure_log.load().get("usage") is None  # the usage view never failed
    finally:
        services.close()
        other.close()


class Gate(Ledger):
    """A tracked read model that blocks inside its first batch until released."""

    name = "gate"

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        self.entered.set()
        assert self.release.wait(30)
        super().process_records(records, through)


def in_thread(fn: Callable[[], object], timeout_s: float = 10) -> None:
    """Run ``fn``; fail (instead of hanging) when it does not return in time."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{fn} did not return within {timeout_s} s"
    if errors:
        raise errors[0]


def test_start_up_and_commands_never_wait_for_a_tracked_backlog(make_settings: Callable[..., Settings]) -> None:
    services = build_services(make_settings(), start_runner=False)
    gate = Gate()
    services.runner.tracked.append(gate)
    try:
        for _ in range(5):
            record(services, uuid.uuid4())
        in_thread(services.runner.start)  # the directory is ready; the polling thread takes the backlog...
        assert gate.entered.wait(10)  # ...and is now stuck in it
        signed_up: list[Any] = []
        in_thread(lambda: signed_up.append(signup(services, "acme")))  # its catch-up reads its own write
        assert services.authenticator.authenticate(signed_up[0].admin_key.secret).tenant_id == signed_up[0].tenant_id
        assert gate.position == 0
        gate.release.set()
        for _ in range(100):
            if gate.position == services.runner.log.head():
                break
            threading.Event().wait(0.05)
        assert gate.position == services.runner.log.head()
    finally:
        gate.release.set()
        services.close()


def test_a_view_cleared_by_another_process_is_replayed_whole_not_from_the_stale_position(
    make_settings: Callable[..., Settings],
) -> None:
    settings_ = make_settings()
    server = build_services(settings_, start_runner=False)
    operator = build_services(settings_, start_runner=False)  # e.g. ``ownllm projections rebuild usage``
    tenant = uuid.uuid4()
    try:
        for tokens in range(4):
            record(server, tenant, tokens)
        server.runner.catch_up()
        operator.usage.clear()  # the server still believes the view is at the head
        record(server, tenant, 10)
        server.runner.catch_up()
        rows = server.usage.query(tenant)
        assert (sum(r.requests for r in rows), sum(r.prompt_tokens for r in rows)) == (5, 16)
        assert server.usage.position == server.usage.stored_position() == server.runner.log.head()
    finally:
        server.close()
        operator.close()
