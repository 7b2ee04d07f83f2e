"""Usage reaches the real event store in batches, each request id once, through outages (issue 13).

Every test runs on SQLite and PostgreSQL (the ``persistence`` fixture); the outage of a real
PostgreSQL server (connection refused) runs on a throwaway cluster that the test stops and starts.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from api.proxy.usage import UsageWriter
from api.proxy.usage_spool import Spool
from api.services import Services, build_services
from api.settings import Settings, load_settings
from api.stores import eventsourcing_env
from api.usage_store import SPOOL_DIR, batch_sink, usage_writer
from domain.adapters.credentials import bcrypt_hash
from domain.adapters.key_stores import SQLiteKeyStore
from domain.application import OwnLLM
from domain.usage import RejectionTally, UsageRecord
from tests.support import postgres as pg

USAGE_TOPIC = f"{UsageRecord.Recorded.__module__}:{UsageRecord.Recorded.__qualname__}"
TALLY_TOPIC = f"{RejectionTally.Counted.__module__}:{RejectionTally.Counted.__qualname__}"


def fields(tenant: uuid.UUID, request_id: str, status: str = "ok") -> dict[str, Any]:
    return {
        "tenant_id": tenant, "user_id": tenant, "key_id": tenant, "agent_id": None, "model": "m",
        "endpoint": "/v1/chat/completions", "stream": False, "status": status, "prompt_tokens": 2,
        "completion_tokens": 3, "ttft_ms": 1, "duration_ms": 4, "request_id": request_id,
    }  # fmt: skip


def stored_request_ids(app: OwnLLM, tenant: uuid.UUID) -> list[str]:
    """The request id of every usage event of ``tenant``, one per event (so a double shows twice)."""
    events = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 10**7, topics=[USAGE_TOPIC])]
    return [e.request_id for e in events if e.tenant_id == tenant]


@pytest.fixture
def services(make_settings: Callable[..., Settings]) -> Iterator[Services]:
    built = build_services(make_settings(), start_runner=False)
    yield built
    built.close()


def test_a_batch_is_one_event_per_request_id_and_duplicates_never_drop_the_rest(services: Services) -> None:
    tenant = uuid.uuid4()
    app = services.app
    assert app.record_usage_batch([fields(tenant, "a"), fields(tenant, "b")]) == 2
    batch = [fields(tenant, "b"), fields(tenant, "c"), fields(tenant, "c", "error"), fields(tenant, "d")]
    assert app.record_usage_batch(batch) == 2  # b is stored, c repeats in the batch: c and d are new
    assert sorted(stored_request_ids(app, tenant)) == ["a", "b", "c", "d"]
    assert app.record_usage_batch(batch) == 0  # all stored: nothing raised, nothing added
    assert app.repository.get(app.record_usage(**fields(tenant, "c", "error"))).status == "ok"  # the first c
    assert sorted(stored_request_ids(app, tenant)) == ["a", "b", "c", "d"]


def test_a_batch_is_one_transaction(services: Services) -> None:
    tenant = uuid.uuid4()
    before = services.app.recorder.max_notification_id() or 0
    services.app.record_usage_batch([fields(tenant, f"r{n}") for n in range(300)])
    notifications = services.app.recorder.select_notifications(before + 1, 1000)
    assert len(notifications) == 300  # and the writer's batches each cost one commit (see bench/proxy.py)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
@given(
    batches=st.lists(st.lists(st.integers(0, 30), max_size=12), min_size=1, max_size=8),
    failing=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_stored_request_ids_are_the_put_ones_through_failures(
    make_settings: Callable[..., Settings], batches: list[list[int]], failing: list[bool]
) -> None:
    """Batches with repeats, some refused by the store mid-way: what is stored is each put id, once."""
    services = build_services(make_settings(var_dir=f"/tmp/ownllm-usage-{uuid.uuid4().hex}"), start_runner=False)
    tenant, sink = uuid.uuid4(), batch_sink(services.app)
    attempts = iter(failing)

    def flaky(batch: list[dict[str, Any]]) -> None:
        if next(attempts, False):
            sink(batch[: len(batch) // 2])  # half stored, then the connection is lost
            raise ConnectionResetError
        sink(batch)

    try:
        usage = UsageWriter(flaky, spool=Spool(Path(services.settings.var_dir) / SPOOL_DIR), batch_size=5,
                            clock=lambda: 10.0**9)  # fmt: skip
        for batch in batches:
            for n in batch:
                usage.put(fields(tenant, f"{tenant}-{n}"))  # PostgreSQL: the schema outlives one example
            usage.step()
        usage.stop()  # what is left is written now or spooled
        UsageWriter(sink, spool=Spool(Path(services.settings.var_dir) / SPOOL_DIR)).step()  # the next start
        stored = stored_request_ids(services.app, tenant)
        assert sorted(stored) == sorted({f"{tenant}-{n}" for batch in batches for n in batch})
    finally:
        services.close()


def test_the_store_failing_while_requests_keep_coming_loses_and_doubles_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    """The sink raises for a while (both stores), the process stops, restarts: counts equal requests."""
    settings_ = make_settings(usage_buffer_bound=7, usage_batch_size=4)
    services = build_services(settings_, start_runner=False)
    tenant, down = uuid.uuid4(), [False]
    real = batch_sink(services.app)

    def sink(batch: list[dict[str, Any]]) -> None:
        if down[0]:
            raise ConnectionRefusedError("store down")
        real(batch)

    usage = usage_writer(settings_, services.app)
    usage._sink = sink
    for n in range(10):
        usage.put(fields(tenant, f"before-{n}"))
    usage.step()
    down[0] = True
    for n in range(40):
        usage.put(fields(tenant, f"during-{n}"))
        if n % 10 == 0:
            usage.step()
    assert usage.spilled > 0 and usage.backlog() <= 7 + 4  # bounded: the rest went to the spool
    usage.stop()
    services.close()

    restarted = build_services(settings_, start_runner=False)
    try:
        again = usage_writer(settings_, restarted.app)
        again.start()
        for n in range(5):
            again.put(fields(tenant, f"after-{n}"))
        again.stop()
        stored = stored_request_ids(restarted.app, tenant)
        assert len(stored) == len(set(stored)) == 55
        restarted.runner.catch_up()
        assert sum(r.requests for r in restarted.usage.query(tenant)) == 55  # projected, each once
    finally:
        restarted.close()


def test_a_rejection_tally_is_one_event_and_projected_as_rejected(services: Services) -> None:
    tenant, key = uuid.uuid4(), uuid.uuid4()
    usage = UsageWriter(batch_sink(services.app), clock=lambda: 0.0)
    for _ in range(1000):
        usage.refused(429, "rate_limit_exceeded", tenant, key, key)
    usage.refused(403, "insufficient_scope", tenant, key, key)
    usage.stop()  # tallies what is counted
    tallies = services.app.recorder.select_notifications(1, 10**7, topics=[TALLY_TOPIC])
    mine = [services.app.mapper.to_domain_event(n) for n in tallies]
    assert len([t for t in mine if t.tenant_id == tenant]) == 1
    services.runner.catch_up()
    rows = services.usage.query(tenant)
    assert [(r.key_id, r.requests, r.by_status) for r in rows] == [(key, 1001, {"rejected": 1001})]
    since = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(2):  # a replayed tally is stored once
        counts = [{"user_id": key, "key_id": key, "reason": "429 x", "count": 2}]
        services.app.record_rejections(
            tally_id=f"t-{tenant}", tenant_id=tenant, since=since, until=since, counts=counts
        )
    assert len(services.app.recorder.select_notifications(1, 10**7, topics=[TALLY_TOPIC])) == len(tallies) + 1


# -- a real PostgreSQL outage ---------------------------------------------------------------------


def pg_ctl(dsn: str, action: str) -> None:
    """Stop (fast: connections cut) or start again a throwaway cluster, on its own port."""
    data = pg._CLUSTER_DATA[dsn]
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = dsn.rsplit(":", 1)[1].split("/")[0]
    options = f"-p {port} -k {data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
    extra = ["-m", "fast"] if action == "stop" else ["-o", options, "-l", str(data.parent / "log")]
    subprocess.run([*as_postgres, pg._pg_bin("pg_ctl"), "-D", str(data), "-w", action, *extra],
                   check=True, capture_output=True)  # fmt: skip


def app_on(settings_: Settings, tmp_path: Path) -> OwnLLM:
    """The application on PostgreSQL, failing fast while the server is gone (1 s, not 30)."""
    env = {**eventsourcing_env(settings_), "POSTGRES_CONNECT_TIMEOUT": "1", "POSTGRES_POOL_SIZE": "2"}
    keys = SQLiteKeyStore(str(tmp_path / f"keys-{uuid.uuid4().hex}.sqlite"))
    return OwnLLM(env, keys=keys, pepper=b"p" * 32, hash_credential=bcrypt_hash)


def test_postgresql_refusing_connections_loses_and_doubles_nothing(tmp_path: Path) -> None:
    with pg.throwaway_cluster() as dsn:
        settings_ = load_settings({}, persistence="postgres", postgres_dsn=dsn, var_dir=str(tmp_path / "var"),
                                  usage_buffer_bound=5)  # fmt: skip
        app, tenant = app_on(settings_, tmp_path), uuid.uuid4()
        usage = usage_writer(settings_, app)
        usage.start()
        for n in range(20):
            usage.put(fields(tenant, f"before-{n}"))
        deadline = time.monotonic() + 30
        while usage.written < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert usage.written == 20
        pg_ctl(dsn, "stop")  # every connection cut; new ones refused
        for n in range(30):
            usage.put(fields(tenant, f"during-{n}"))  # requests keep coming
        deadline = time.monotonic() + 30
        while usage.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert usage.failures > 0 and usage.spilled > 0
        thread = usage._thread
        usage.stop(timeout_s=0.5)  # shutdown with the store down: whatever is not stored is spooled
        pg_ctl(dsn, "start")
        if thread is not None:
            thread.join(60)  # the old writer may still store its last batch: the replay dedupes it
        app.close()

        restarted = app_on(settings_, tmp_path)
        try:
            again = usage_writer(settings_, restarted)
            again.start()
            again.stop()
            stored = stored_request_ids(restarted, tenant)
            assert len(stored) == len(set(stored)) == 50
            assert again.spool is not None and again.spool.count() == 0
        finally:
            restarted.close()
