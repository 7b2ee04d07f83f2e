"""The tracked usage view: every usage event counted exactly once, across restarts and racing runners."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import OperationalError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.app import _usage_sink
from api.cli_projections import quarantine_lines
from api.services import Services, build_services
from api.settings import Settings
from domain.usage import UsageRecord
from projections.usage_view import MAX_RECORD_VALUE

STATUSES = ("ok", "error", "cancelled", "timeout", "rejected")


def record(services: Services, tenant: uuid.UUID, user: uuid.UUID, key: uuid.UUID, status: str, tokens: int) -> None:
    services.app.record_usage(
        tenant_id=tenant, user_id=user, key_id=key, agent_id=None, model="m", endpoint="chat", stream=False,
        status=status, prompt_tokens=tokens, completion_tokens=2 * tokens, ttft_ms=1, duration_ms=10,
        request_id=str(uuid.uuid4()),
    )  # fmt: skip


def totals(services: Services, tenant: uuid.UUID) -> tuple[int, int, dict[str, int]]:
    rows = services.usage.query(tenant)
    by_status: dict[str, int] = {}
    for row in rows:
        for status, count in row.by_status.items():
            by_status[status] = by_status.get(status, 0) + count
    return sum(r.requests for r in rows), sum(r.prompt_tokens for r in rows), by_status


def test_the_view_resumes_where_it_stopped_and_never_counts_twice(make_settings: Callable[..., Settings]) -> None:
    settings_ = make_settings()
    tenant, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = build_services(settings_, start_runner=False)
    for n in range(5):
        record(first, tenant, user, key, "ok", n)
    first.runner.catch_up()
    assert totals(first, tenant) == (5, 10, {"ok": 5})
    position = first.usage.position
    first.close()

    second = build_services(settings_, start_runner=False)  # a restart: replays the log for the directory
    try:
        assert second.usage.position == position  # ...but the usage view resumes from its tracking record
        assert totals(second, tenant) == (5, 10, {"ok": 5})
        record(second, tenant, user, key, "error", 7)
        second.runner.catch_up()
        assert totals(second, tenant) == (6, 17, {"ok": 5, "error": 1})
    finally:
        second.close()


def catch_up_retrying(services: Services) -> None:
    """What the runner's poll loop does: a busy database is retried on the next poll."""
    for _ in range(50):
        try:
            services.runner.catch_up()
            return
        except OperationalError:  # SQLite: another connection holds the write lock
            time.sleep(0.01)
    raise AssertionError("the database stayed locked")


def test_two_racing_runners_count_each_event_once(make_settings: Callable[..., Settings]) -> None:
    settings_ = make_settings()
    tenant, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    writer = build_services(settings_, start_runner=False)
    runners = [build_services(settings_, start_runner=False) for _ in range(2)]
    try:
        for n in range(60):
            record(writer, tenant, user, key, STATUSES[n % 5], 1)
            if n % 7 == 0:
                threads = [threading.Thread(target=catch_up_retrying, args=(r,)) for r in runners]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        for r in runners:
            r.runner.catch_up()
        assert totals(writer, tenant) == (60, 60, {s: 12 for s in STATUSES})
    finally:
        for services in [writer, *runners]:
            services.close()


def test_rebuild_starts_from_nothing_and_arrives_at_the_same_totals(make_settings: Callable[..., Settings]) -> None:
    services = build_services(make_settings(), start_runner=False)
    tenant = uuid.uuid4()
    try:
        for n in range(8):
            record(services, tenant, uuid.uuid4(), uuid.uuid4(), "ok", n)
        services.runner.catch_up()
        before = totals(services, tenant)
        events = [
            (n.id, services.app.mapper.to_domain_event(n)) for n in services.app.recorder.select_notifications(1, 100)
        ]
        services.usage.rebuild(events)
        assert totals(services, tenant) == before == (8, 28, {"ok": 8})
    finally:
        services.close()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    requests=st.lists(st.tuples(st.sampled_from(STATUSES), st.integers(0, 1000), st.integers(0, 2)), max_size=25),
    batch=st.integers(1, 7),
)
def test_totals_equal_the_recorded_events_whatever_the_batching(
    make_settings: Callable[..., Settings], requests: list[tuple[str, int, int]], batch: int
) -> None:
    services = build_services(make_settings(var_dir=f"/tmp/ownllm-prop-{uuid.uuid4().hex}"), start_runner=False)
    tenant = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(3)]
    try:
        for status, tokens, who in requests:
            record(services, tenant, users[who], users[who], status, tokens)
        stored: list[tuple[int, Any]] = [
            (n.id, services.app.mapper.to_domain_event(n)) for n in services.app.recorder.select_notifications(1, 1000)
        ]
        services.usage.rebuild([])
        for start in range(0, len(stored), batch):  # feed in arbitrary slices, some twice
            services.usage.process_batch(stored[start : start + batch])
            services.usage.process_batch(stored[max(0, start - 1) : start + batch])
        expected = {s: sum(1 for r in requests if r[0] == s) for s in STATUSES}
        requests_total, prompt_total, by_status = totals(services, tenant)
        assert requests_total == len(requests)
        assert prompt_total == sum(r[1] for r in requests)
        assert by_status == {s: c for s, c in expected.items() if c}
        assert all(isinstance(e, UsageRecord.Recorded) for _, e in stored)
    finally:
        services.close()


class Failing:
    """A tracked projection whose database refuses the next ``failures`` batches."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def process_batch(self, events: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("database is locked")
        self.inner.process_batch(events)


def test_a_failing_usage_view_holds_back_neither_commands_nor_authentication(
    make_settings: Callable[..., Settings],
) -> None:
    services = build_services(make_settings(), start_runner=False)
    try:
        services.runner.tracked = [Failing(services.usage, failures=3)]
        tenant, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        for n in range(4):
            record(services, tenant, user, key, "ok", n)
        signed_up = services.command(
            services.app.signup, slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
            request_id="r1",
        )  # fmt: skip
        assert services.authenticator.authenticate(signed_up.admin_key.secret).tenant_id == signed_up.tenant_id
        assert services.runner.tracked_position < services.runner.position  # the view is behind, auth is not
        assert totals(services, tenant)[0] == 0
        for _ in range(3):
            services.runner.catch_up()
        assert services.runner.tracked_position == services.runner.position
        assert totals(services, tenant) == (4, 6, {"ok": 4})  # every record once, after the outage
    finally:
        services.close()


def test_a_malformed_agent_id_off_the_wire_never_loses_the_usage_record(make_settings: Callable[..., Settings]) -> None:
    services = build_services(make_settings(), start_runner=False)
    try:
        sink = _usage_sink(services)
        tenant = uuid.uuid4()
        for agent_id in ("agent-1", str(uuid.uuid4()), None):
            sink(
                tenant_id=tenant, user_id=uuid.uuid4(), key_id=uuid.uuid4(), agent_id=agent_id, model="m",
                endpoint="chat", stream=False, status="ok", prompt_tokens=1, completion_tokens=2, ttft_ms=1,
                duration_ms=10, request_id=str(uuid.uuid4()),
            )  # fmt: skip
        services.runner.catch_up()
        assert totals(services, tenant)[0] == 3
    finally:
        services.close()


NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)  # shrinking a slow store-backed example takes minutes
COUNTS = st.one_of(
    st.integers(0, 5000),  # normal
    st.integers(-(2**63), -1),  # negative: would under-bill
    st.integers(MAX_RECORD_VALUE + 1, 2**64 - 1),  # absurd, up to what raised OverflowError in SQLite
    st.sampled_from([0, MAX_RECORD_VALUE, 2**63 - 1, 2**63, 2**64 - 1, -1]),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINK)
@given(counts=st.lists(st.tuples(COUNTS, COUNTS), min_size=1, max_size=12), batch=st.integers(1, 5))
def test_a_record_out_of_range_is_quarantined_and_never_stops_the_view(
    make_settings: Callable[..., Settings], counts: list[tuple[int, int]], batch: int
) -> None:
    services = build_services(make_settings(var_dir=f"/tmp/ownllm-prop-{uuid.uuid4().hex}"), start_runner=False)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    try:
        for prompt, completion in counts:
            services.app.record_usage(
                tenant_id=tenant, user_id=user, key_id=user, agent_id=None, model="m", endpoint="chat",
                stream=False, status="ok", prompt_tokens=prompt, completion_tokens=completion, ttft_ms=1,
                duration_ms=10, request_id=str(uuid.uuid4()),
            )  # fmt: skip
        stored = [
            (n.id, services.app.mapper.to_domain_event(n)) for n in services.app.recorder.select_notifications(1, 10**6)
        ]  # (PostgreSQL: the schema holds the earlier examples' records too)
        mine = [n for n, e in stored if getattr(e, "tenant_id", None) == tenant]
        services.usage.rebuild([])
        for start in range(0, len(stored), batch):
            services.usage.process_batch(stored[start : start + batch])
        fit = [(p, c) for p, c in counts if 0 <= p <= MAX_RECORD_VALUE and 0 <= c <= MAX_RECORD_VALUE]
        rows = services.usage.query(tenant)
        assert services.usage.position == stored[-1][0]  # the view went past every record
        assert sum(r.requests for r in rows) == len(fit)
        assert sum(r.prompt_tokens for r in rows) == sum(p for p, _ in fit)
        assert sum(r.completion_tokens for r in rows) == sum(c for _, c in fit)
        unfit_ids = [n for n, (p, c) in zip(mine, counts, strict=True) if (p, c) not in fit]
        assert [n for n, _ in services.usage.quarantined() if n in mine] == unfit_ids
        lines = quarantine_lines({"usage": services.usage})
        assert bool(lines) == bool(services.usage.quarantined())
    finally:
        services.close()


def test_a_quarantined_record_does_not_hold_back_the_runner(make_settings: Callable[..., Settings]) -> None:
    services = build_services(make_settings(), start_runner=False)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    try:
        for prompt in (3, 2**64 - 1, -5, 4):
            services.app.record_usage(
                tenant_id=tenant, user_id=user, key_id=user, agent_id=None, model="m", endpoint="chat",
                stream=False, status="ok", prompt_tokens=prompt, completion_tokens=1, ttft_ms=1,
                duration_ms=10, request_id=str(uuid.uuid4()),
            )  # fmt: skip
        services.runner.catch_up()
        assert services.runner.tracked_position == services.runner.position
        assert totals(services, tenant)[:2] == (2, 7)
        assert [reason for _, reason in services.usage.quarantined()] == ["prompt_tokens out of range"] * 2
        record(services, tenant, user, user, "ok", 10)  # later events still count
        services.runner.catch_up()
        assert totals(services, tenant)[:2] == (3, 17)
    finally:
        services.close()


def test_the_corrected_flag_is_stored_and_older_records_read_as_uncorrected(
    make_settings: Callable[..., Settings],
) -> None:
    services = build_services(make_settings(), start_runner=False)
    try:
        sink = _usage_sink(services)
        ids = []
        for corrected in (True, None):
            fields = {} if corrected is None else {"counts_corrected": corrected}  # None: a proxy from before
            ids.append(
                sink(
                    tenant_id=uuid.uuid4(),
                    user_id=uuid.uuid4(),
                    key_id=uuid.uuid4(),
                    agent_id=None,
                    model="m",
                    endpoint="chat",
                    stream=False,
                    status="ok",
                    prompt_tokens=1,
                    completion_tokens=2,
                    ttft_ms=1,
                    duration_ms=10,
                    request_id=str(uuid.uuid4()),
                    **fields,
                )
            )
        flags = [services.app.repository.get(i).counts_corrected for i in ids]
        assert flags == [True, False]
        stored = [services.app.mapper.to_domain_event(n) for n in services.app.recorder.select_notifications(1, 10**6)]
        event = next(e for e in stored if isinstance(e, UsageRecord.Recorded) and e.originator_id == ids[0])
        del event.__dict__["counts_corrected"]  # as an event stored before the field existed decodes
        assert event.counts_corrected is False
    finally:
        services.close()


def test_the_same_request_id_recorded_twice_is_one_event_and_one_count(make_settings: Callable[..., Settings]) -> None:
    """A retried ``record_usage`` (a resent message, a second code path) must not bill a request twice."""
    tenant, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    services = build_services(make_settings(), start_runner=False)

    def once(tokens: int, status: str) -> uuid.UUID:
        return services.app.record_usage(
            tenant_id=tenant, user_id=user, key_id=key, agent_id=None, model="m", endpoint="chat", stream=True,
            status=status, prompt_tokens=tokens, completion_tokens=tokens, ttft_ms=1, duration_ms=10,
            request_id="req-twice",
        )  # fmt: skip

    try:
        first, second = once(3, "ok"), once(5, "error")
        assert first == second
        topic = f"{UsageRecord.Recorded.__module__}:{UsageRecord.Recorded.__qualname__}"
        recorded = [n for n in services.app.recorder.select_notifications(1, 10_000) if n.topic == topic]
        assert [n.originator_id for n in recorded] == [first]
        services.runner.catch_up()
        assert totals(services, tenant) == (1, 3, {"ok": 1})  # the first record stands
    finally:
        services.close()
