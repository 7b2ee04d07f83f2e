"""The usage writer never drops a record: batches, retries with backoff, a bounded buffer, a spool (issue 13).

These run the writer's passes by hand (``step``) with an injected clock, against sinks that keep
records by request id the way the event store does (a second write of an id is a no-op).
"""

from __future__ import annotations

import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.proxy.rejections import UNKNOWN, RejectionCounter
from api.proxy.usage import UsageWriter, is_tally
from api.proxy.usage_spool import LIVE, Spool

TENANT = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


class Store:
    """Stores records by request id (as the event store dedupes), failing on demand."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.calls: list[int] = []  # batch sizes
        self.down = False
        self.fail_after_commit = False  # store, then raise (a connection lost after COMMIT)
        self.tallies: dict[str, dict[str, Any]] = {}

    def __call__(self, batch: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionRefusedError("store down")
        self.calls.append(len(batch))
        for record in batch:
            if is_tally(record):
                self.tallies.setdefault(record["tally_id"], record)
            else:
                self.ids.setdefault(record["request_id"], len(self.ids))
        if self.fail_after_commit:
            raise ConnectionResetError("lost after commit")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rec(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "tenant_id": str(TENANT), "status": "ok", "prompt_tokens": 1}


def writer(store: Store, tmp_path: Path, clock: Clock, **options: Any) -> UsageWriter:
    return UsageWriter(store, spool=Spool(tmp_path / "spool"), clock=clock, **options)


def test_records_are_written_in_batches_of_at_most_batch_size(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock, batch_size=100)
    for n in range(250):
        usage.put(rec(f"r{n}"))
    usage.step()
    assert store.calls == [100, 100, 50]  # three transactions for 250 requests, not 250
    assert len(store.ids) == 250


def test_a_failing_store_loses_nothing_and_is_retried_with_backoff(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock, batch_size=10)
    store.down = True
    for n in range(25):
        usage.put(rec(f"r{n}"))
    usage.step()
    assert usage.failures == 1 and usage.backlog() == 25
    store.down = False
    usage.step()  # inside the backoff: no try
    assert store.ids == {} and usage.failures == 1
    clock.now += 0.1
    usage.step()
    assert len(store.ids) == 25 and usage.backlog() == 0


def test_the_backoff_doubles_up_to_its_ceiling(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock)
    store.down = True
    usage.put(rec("r"))
    delays = []
    for _ in range(9):
        before = clock.now
        usage.step()
        delays.append(round(usage._retry_at - before, 3))
        clock.now = usage._retry_at
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_past_the_bound_records_go_to_a_private_spool_and_come_back(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock, bound=5)
    store.down = True
    for n in range(12):
        usage.put(rec(f"r{n}"))
    assert usage.backlog() == 5 and usage.spilled == 7  # the buffer holds its bound, no more
    spool_dir = tmp_path / "spool"
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((spool_dir / LIVE).stat().st_mode) == 0o600
    assert len((spool_dir / LIVE).read_bytes().splitlines()) == 7  # one JSON line per record
    store.down = False
    clock.now += 1
    usage.step()  # the buffer, then the spool
    assert set(store.ids) == {f"r{n}" for n in range(12)}
    assert usage.spool is not None and usage.spool.count() == 0 and not usage.spool.has_records


def test_stopping_with_the_store_down_spools_everything_and_the_next_start_replays_it(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock)
    store.down = True
    for n in range(30):
        usage.put(rec(f"r{n}"))
    usage.step()  # fails: the store is down
    usage.stop()  # never started: stop() does the final pass itself
    assert usage.spool is not None and usage.spool.count() == 30 and store.ids == {}
    store.down = False
    again = writer(store, tmp_path, clock)  # the next start, same var dir
    assert again.spool is not None and again.spool.has_records
    again.start()
    again.stop()
    assert set(store.ids) == {f"r{n}" for n in range(30)}
    assert again.spool.count() == 0


def test_a_writer_stuck_in_the_store_at_stop_spools_its_batch_too(tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()
    store = Store()

    def stuck(batch: list[dict[str, Any]]) -> None:
        entered.set()
        release.wait(10)
        raise ConnectionRefusedError

    usage = UsageWriter(stuck, spool=Spool(tmp_path / "spool"), interval_s=0.001)
    usage.put(rec("in-flight"))
    usage.start()
    assert entered.wait(5)
    usage.put(rec("queued"))
    usage.stop(timeout_s=0.05)
    spool = Spool(tmp_path / "spool")
    assert {r["request_id"] for p in [*spool.files(), spool.directory / LIVE] if p.exists() for r in spool.read(p)} == {
        "in-flight",
        "queued",
    }
    release.set()
    usage._sink = store  # whatever the stuck thread does next, a replay dedupes by request id


def test_a_crash_in_the_middle_of_a_replay_doubles_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([rec(f"r{n}") for n in range(10)], sync=True)
    store, clock = Store(), Clock()
    calls = 0

    def dies_after_first_batch(batch: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise SystemExit("killed mid-replay")  # the process dies: the replay file stays
        store(batch)

    usage = UsageWriter(dies_after_first_batch, spool=spool, batch_size=4, clock=clock)
    with pytest.raises(SystemExit):
        usage.step()
    assert len(store.ids) == 4 and len(spool.files()) == 1
    restarted = UsageWriter(store, spool=Spool(tmp_path / "spool"), batch_size=4, clock=clock)
    restarted.step()
    assert set(store.ids) == {f"r{n}" for n in range(10)}  # each once: the store dedupes the first 4
    assert restarted.spool is not None and restarted.spool.files() == []


def test_a_torn_last_line_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([rec("a"), rec("b")], sync=True)
    with open(tmp_path / "spool" / LIVE, "ab") as handle:
        handle.write(b'{"request_id": "c", "tena')  # a power loss mid-write
    store = Store()
    UsageWriter(store, spool=Spool(tmp_path / "spool")).step()
    assert set(store.ids) == {"a", "b"}


# -- the invariant ----------------------------------------------------------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 40)),  # a request id (repeats: a retried record)
        st.tuples(st.just("down"), st.booleans()),
        st.tuples(st.just("lost_commit"), st.booleans()),
        st.tuples(st.just("step"), st.floats(0, 6)),
        st.tuples(st.just("restart"), st.booleans()),  # stop (spool what is left), start a new writer
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS, bound=st.integers(1, 8), batch=st.integers(1, 6))
def test_stored_request_ids_are_exactly_the_put_ones(
    tmp_path: Path, actions: list[Any], bound: int, batch: int
) -> None:
    directory = tmp_path / uuid.uuid4().hex
    store, clock = Store(), Clock()
    usage = UsageWriter(store, spool=Spool(directory), bound=bound, batch_size=batch, clock=clock)
    put: set[str] = set()
    for action, value in actions:
        if action == "put":
            put.add(f"r{value}")
            usage.put(rec(f"r{value}"))
        elif action == "down":
            store.down = value
        elif action == "lost_commit":
            store.fail_after_commit = value
        elif action == "step":
            clock.now += value
            usage.step()
        else:
            usage.stop()
            usage = UsageWriter(store, spool=Spool(directory), bound=bound, batch_size=batch, clock=clock)
    store.down = store.fail_after_commit = False
    usage.stop()
    final = UsageWriter(store, spool=Spool(directory), clock=clock)  # one more start replays any spool
    final.step()
    assert set(store.ids) == put
    assert final.spool is not None and final.spool.count() == 0


# -- refused requests ---------------------------------------------------------------------------


def test_a_flood_of_refusals_becomes_one_tally_per_tenant_per_interval(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock, tally_interval_s=60)
    other = uuid.uuid4()
    keys = [uuid.uuid4() for _ in range(3)]
    for n in range(10_000):
        usage.refused(429, "rate_limit_exceeded", TENANT, keys[0], keys[n % 3])
    usage.refused(403, "insufficient_scope", other, keys[1], keys[1])
    for _ in range(500):
        usage.refused(401, "invalid_api_key")  # no tenant: metrics only
    usage.step()
    assert store.tallies == {} and store.ids == {}  # nothing written per request
    clock.now += 60
    usage.step()
    tallies = list(store.tallies.values())
    assert sorted(t["tenant_id"] for t in tallies) == sorted([str(TENANT), str(other)])
    mine = next(t for t in tallies if t["tenant_id"] == str(TENANT))
    assert sum(c["count"] for c in mine["counts"]) == 10_000 and len(mine["counts"]) == 3
    assert usage.rejections.totals[(401, "invalid_api_key")] == 500
    assert usage.rejections.totals[(429, "rate_limit_exceeded")] == 10_000
    clock.now += 60
    usage.step()
    assert len(store.tallies) == 2  # a quiet interval writes nothing


def test_the_counters_are_bounded() -> None:
    counter = RejectionCounter(max_counters=4)
    for _ in range(3):
        for n in range(20):
            counter.count(429, "rate_limit_exceeded", uuid.UUID(int=n), uuid.UUID(int=n), uuid.UUID(int=n))
    assert counter.pending() <= 8  # twice the bound at most: per-key, then per-tenant unattributed
    tallies = counter.drain("p", *([__import__("datetime").datetime(2026, 1, 1)] * 2))
    counted = sum(c["count"] for t in tallies for c in t["counts"])
    assert counted + counter.uncounted == 60
    assert any(c["key_id"] == UNKNOWN for t in tallies for c in t["counts"])


def test_tallies_survive_an_outage_like_usage(tmp_path: Path) -> None:
    store, clock = Store(), Clock()
    usage = writer(store, tmp_path, clock, tally_interval_s=1)
    usage.refused(403, "insufficient_scope", TENANT, TENANT, TENANT)
    store.down = True
    usage.stop()  # tallied at stop, spooled with the store down
    store.down = False
    again = writer(store, tmp_path, clock)
    again.step()
    assert [sum(c["count"] for c in t["counts"]) for t in store.tallies.values()] == [1]


def test_spool_files_are_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        spool = Spool(tmp_path / "spool")
        spool.append([rec("x")])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "spool" / LIVE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
