"""Billing benchmark: what the prepaid-credit check adds to the proxy, how fast usage debits credits, and what
ledger snapshots save a restart.

Each table has its baseline measured in the same run:

- ``proxy``: the REAL composition (``ownllm serve``, SQLite, embedded NATS, echo agents paired through
  the API). Two tenants in the same server: one on its plan (billing off: the check is one dict
  lookup), one on prepaid credits (billing on: price lookup, reserve, settle). Non-stream cells
  alternate off/on; the server process's CPU per request (from /proc) for each, and the difference.
  Then the check alone in-process (``CreditGate.hold`` + release, the exact code the proxy runs),
  per request, next to a plan tenant's lookup.
- ``debits``: the real ``ownllm serve`` on PostgreSQL running (its projector too) while ``--events`` usage
  records are written at once, as its usage writer writes them, over one tenant and over 1,000: the seconds
  until its ``credit-debits`` reaction has debited them all (the writing included), hence events/s; beside
  it the same reaction in-process (the runner and batch transaction the composition uses) and the bare
  read + decode of the same events (the floor).
- ``restart``: the real ``ownllm serve`` restarted on a tenant with ``--history`` debits and one request
  waiting, until its balance shows it debited: with the ledger's latest snapshot, and with its snapshots
  deleted first (the whole history read, as before snapshots), taken in turns (``--baseline-tree``: another
  tree's server beside them). Beside it, the same ledger in-process: loading it, buying credits and the
  debit path after a restart, reading the whole history (snapshots off) against the latest snapshot.

    PYTHONPATH=. .venv/bin/python bench/billing.py [--seconds 2] [--concurrency 1,16] [--events 20000]
        [--parts proxy,debits,restart] [--history 50000] [--rounds 2] [--postgres-dsn DSN]

Prints markdown tables; asserts nothing (targets: <= 0.05 ms CPU per request for the check, >= 5,000
debited events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proxy import Composition, RawHTTP, run_cell  # noqa: E402

MILLION = 1_000_000
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PRICE = (100 * MILLION, 200 * MILLION)  # $1 / $2 per million prompt / completion tokens


# ---------------------------------------------------------------- proxy: billing off vs on


def _credits_on(var: str, tenant_ids: list[uuid.UUID]) -> None:
    """From outside the server (same SQLite store): price the echo model, put a tenant on credits with $1,000."""
    from api.services import build_services
    from api.settings import load_settings
    from tests.support.clock import ManualClock

    now = datetime.now(UTC)
    settings = load_settings({}, var_dir=var, inference=False, nats_public_url="tls://nats.bench:4222")
    services = build_services(settings, start_runner=False, clock=ManualClock(now - timedelta(days=31)))
    try:
        app = services.app
        app.schedule_price_change("echo", *PRICE, now - timedelta(hours=1))
        for tenant in tenant_ids:
            app.set_billing_mode(tenant, "credits")
            app.purchase_credits(tenant, 100_000, f"pi_bench_{tenant}", now - timedelta(days=1))
    finally:
        services.close()


def _tenants_in_order(var: str) -> list[uuid.UUID]:
    from api.services import build_services
    from api.settings import load_settings

    settings = load_settings({}, var_dir=var, inference=False, nats_public_url="tls://nats.bench:4222")
    services = build_services(settings, start_runner=False)
    try:
        return [t.id for t in sorted(services.directory.tenants.values(), key=lambda t: t.registered_at)]
    finally:
        services.close()


async def proxy_part(seconds: float, levels: list[int], rounds: int) -> list[tuple[int, str, float, int]]:
    """(concurrency, mode, CPU ms per request, requests) per cell, off and on alternating."""
    composition = Composition("sqlite", False, "")
    cells: list[tuple[int, str, float, int]] = []
    try:
        composition.start()
        keys_off = iter(composition.tenant(max(levels)))
        off_keys = list(keys_off)
        agent_off = composition.agent
        on_keys = composition.tenant(max(levels))
        _, tenant_on = _tenants_in_order(composition.var)
        _credits_on(composition.var, [tenant_on])
        time.sleep(1.0)  # the server's in-memory credit model polls the log every 0.1 s
        assert composition.server is not None
        for _ in range(rounds):
            for level in levels:
                for mode, keys in (("off", off_keys), ("on", on_keys)):
                    pool = iter(keys)

                    async def make(pool: Any = pool) -> object:
                        client = RawHTTP(composition.port, False, next(pool))
                        await client.connect()
                        return client.one

                    samples = await run_cell(make, level, seconds, False, composition.server.pid, True)
                    if samples.errors:
                        raise RuntimeError(f"{samples.errors} errors in the {mode} cell (credits spent?)")
                    cells.append((level, mode, samples.cpu_s * 1000 / max(1, samples.requests), samples.requests))
        if agent_off is not None and agent_off.poll() is None:
            agent_off.terminate()
    finally:
        composition.stop()
        composition.drop()
    return cells


def gate_alone(iterations: int) -> tuple[float, float]:
    """Microseconds the check adds per request in-process over the limiter alone: (plan tenant, credits tenant)."""
    from agent.protocol import Sampling
    from api.proxy.balance import CreditGate
    from api.proxy.limits import Limiter
    from api.proxy.translate import ChatMessage, Generation
    from domain.credit_ledger import CreditLedger
    from domain.price_book import PriceBook
    from policies.limits import PlanLimits, RateLimits
    from projections.credit_balances import CreditBalances

    now = datetime.now(UTC)
    balances = CreditBalances()
    on, off = uuid.uuid4(), uuid.uuid4()
    lot = uuid.uuid4()
    event = CreditLedger.LotPurchased
    balances.process(_event(PriceBook.PriceChangeScheduled, version=1, model="echo", input_per_million=PRICE[0],
                            output_per_million=PRICE[1], effective_at=now - timedelta(days=1)))  # fmt: skip
    balances.process(_event(CreditLedger.BillingModeSet, tenant_id=on, mode="credits"))
    balances.process(_event(event, tenant_id=on, lot_id=lot, amount_cents=10**9, expires_at=now + timedelta(days=300)))
    huge = RateLimits(10**9, 10**12, 10**6)
    gate, limiter = CreditGate(balances), Limiter(plans=lambda _: PlanLimits(huge, huge))
    generation = Generation("chat", "echo", Sampling(max_tokens=64), False, False, (ChatMessage("user", "w " * 16),))

    class Meter:
        request_id, prompt_tokens, completion_tokens = "r", 16, 16

    def loop(tenant: uuid.UUID | None) -> float:
        key = uuid.uuid4()
        start = time.perf_counter()
        for n in range(iterations):
            grant = limiter.admit("bench", tenant or off, key)
            if tenant is not None:
                Meter.request_id = str(n)
                grant = gate.hold(grant, tenant, generation, Meter(), 2048)  # type: ignore[arg-type]
            grant.release(32)  # type: ignore[union-attr]
        return (time.perf_counter() - start) * 1e6 / iterations

    loop(on)  # warm
    baseline, plan, credits = loop(None), loop(off), loop(on)
    return plan - baseline, credits - baseline


def _event(cls: type, **fields: Any) -> Any:
    """A bare event object with the fields the read model reads."""
    event = cls.__new__(cls)
    object.__setattr__(event, "__dict__", fields)
    return event


# ---------------------------------------------------------------- debits on PostgreSQL


@contextlib.contextmanager
def _tenants_on_credits(dsn: str, tenants: int, cents: int) -> Iterator[tuple[Any, list[uuid.UUID], datetime]]:
    """(services, tenant ids, now) on a fresh PostgreSQL schema: model "m" priced, each tenant on credits
    with one lot of ``cents``, the reactions past the set-up; the schema is dropped after. The admins'
    keys are in ``services.bench_admin_keys``."""
    import psycopg

    from api.services import build_services
    from api.settings import load_settings
    from tests.support.clock import ManualClock

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    now = datetime.now(UTC)
    var = Path(os.environ.get("TMPDIR", "/tmp")) / f"ownllm-bench-billing-{schema}"
    settings = load_settings({}, var_dir=str(var), inference=False, nats_public_url="tls://nats.bench:4222",
                             persistence="postgres", postgres_dsn=dsn, postgres_schema=schema)  # fmt: skip
    services = build_services(settings, start_runner=False, clock=ManualClock(now - timedelta(days=31)))
    try:
        app = services.app
        app.schedule_price_change("m", *PRICE, now - timedelta(hours=1))
        ids, services.bench_admin_keys = [], []
        for n in range(tenants):
            signed = app.signup(slug=f"t{n:05d}", name="T", admin_name="A", admin_email=f"a@t{n}.example",
                                request_id=f"s{n}")  # fmt: skip
            tenant = signed.tenant_id
            services.bench_admin_keys.append(signed.admin_key.secret)
            app.set_billing_mode(tenant, "credits")
            app.purchase_credits(tenant, cents, f"pi_{n}", now - timedelta(days=1))
            ids.append(tenant)
        services.reactions.run_once()  # the reaction is past the set-up
        yield services, ids, now
    finally:
        services.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _usage_record(tenant: uuid.UUID, request_id: str) -> dict[str, Any]:
    """One request's usage, as the proxy records it."""
    return {"tenant_id": tenant, "user_id": tenant, "key_id": tenant, "agent_id": None, "model": "m",
            "endpoint": "/v1/chat/completions", "stream": False, "status": "ok", "prompt_tokens": 100,
            "completion_tokens": 50, "ttft_ms": 1, "duration_ms": 5, "request_id": request_id}  # fmt: skip


def _record_usage(app: Any, ids: list[uuid.UUID], events: int, prefix: str = "u") -> int:
    """Record ``events`` usage records over the tenants in turn; the log's head after them."""
    records = [_usage_record(ids[n % len(ids)], f"{prefix}{n}") for n in range(events)]
    for start in range(0, events, 500):
        app.record_usage_batch(records[start : start + 500])
    return int(app.recorder.max_notification_id() or 0)


def _debit_all(services: Any, head: int) -> float:
    """Run the debit reaction up to ``head``; the seconds it took."""
    started = time.perf_counter()
    while services.reactions.position("credit-debits") < head:
        services.reactions.run_once()
    return time.perf_counter() - started


def debits_part(dsn: str, events: int, tenants: int, rounds: int) -> tuple[float, float, float, float]:
    """For ``events`` usage events over ``tenants`` tenants: (in-process debited events/s, bare read+decode
    events/s), then on the same store the real server's (seconds written, seconds debited: :func:`served_debits`)."""
    from projections.log import NotificationLog

    with _tenants_on_credits(dsn, tenants, 1_000_000) as (services, ids, _):
        app = services.app
        head = _record_usage(app, ids, events)
        log = NotificationLog(app.recorder)
        topics = ("domain.usage:UsageRecord.Recorded",)
        started, after = time.perf_counter(), 0
        while after < head:
            batch = log.read(after, head, topics, 1000)
            if not batch:
                break
            for notification in batch:
                app.mapper.to_domain_event(notification)
            after = batch[-1].id
        bare = events / (time.perf_counter() - started)
        profile = _profiler()
        debited = events / _debit_all(services, head)
        _report(profile)
        ledger = app.credit_ledger(ids[-1])
        assert ledger is not None and ledger.totals["debited"] > 0, "nothing was debited"
        return debited, bare, *served_debits(services, dsn, ids, events, rounds)


def history_ops(services: Any, tenant: uuid.UUID, now: datetime) -> list[tuple[str, float, float]]:
    """In-process, on a long ledger: (operation, ms reading the whole history, ms from the latest snapshot) for
    what loads it, median of five each."""
    from domain.credit_ledger import ledger_id_for

    app = services.app
    snapshots, ledger_id = app.snapshots, ledger_id_for(tenant)
    payments = iter(range(10**6))

    def both(operation: Any) -> tuple[float, float]:
        """Median ms of five runs without snapshots (the whole history) and five with."""
        timings: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(5):
            for use in (False, True):
                app.snapshots = snapshots if use else None
                app.forget_cached_ledgers()
                started = time.perf_counter()
                operation()
                timings[use].append((time.perf_counter() - started) * 1000)
        app.snapshots = snapshots
        return statistics.median(timings[False]), statistics.median(timings[True])

    rows = [
        ("load the ledger (`credit_ledger`)", *both(lambda: app.credit_ledger(tenant))),
        ("buy credits (`purchase_credits`)",
         *both(lambda: app.purchase_credits(tenant, 100, f"pi_{next(payments)}", now))),
        ("debit path after a restart (`_cached_ledgers`)", *both(lambda: app._cached_ledgers([tenant]))),
    ]  # fmt: skip
    assert snapshots is not None and list(snapshots.get(ledger_id, desc=True, limit=1)), "no snapshot taken"
    return rows


def _serve_until(settings: Any, dsn: str, done: Any, root: Path = ROOT) -> float:
    """Start the real ``ownllm serve`` (``root``'s sources, PostgreSQL, projections running) on the store of
    ``settings``; seconds from the start until ``done(server)`` holds."""
    server = Composition("postgres", False, dsn, root, var=settings.var_dir, schema=settings.postgres_schema)
    started = time.perf_counter()
    try:
        server.start()
        while not done(server):
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"`ownllm serve` did not get there in 600 s (its log: {server.var}/server.log)")
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        server.stop()


def restart_part(
    dsn: str, events: int, rounds: int, baseline: Path | None
) -> tuple[float, list[tuple[str, float, float]], dict[str, list[float]]]:
    """One tenant's ledger of ``events`` debits (debited in-process: the events/s), the in-process loads of it
    (:func:`history_ops`), then the real ``ownllm serve`` started on it with one new usage record waiting:
    seconds from the start until the tenant's balance shows that request debited. ``kept``: with its
    snapshot; ``removed``: its snapshots deleted first (an upgraded store; the server snapshots it again);
    ``base``: the ``baseline`` tree, when given. Taken in turns, ``rounds`` times."""
    import httpx

    from api.services import build_services
    from domain.credit_ledger import ledger_id_for

    with _tenants_on_credits(dsn, 1, 10_000_000) as (services, ids, now):
        settings, key = services.settings, services.bench_admin_keys[0]
        debited = events / _debit_all(services, _record_usage(services.app, ids, events))
        rows = history_ops(services, ids[0], now)
        services.runner.catch_up()  # the read models current: the restart has only the new request to do
        services.close()  # its reactions' locks are the server's now
        variants = ["removed", *(["base"] if baseline is not None else []), "kept"]  # kept: after a re-snapshot
        seconds: dict[str, list[float]] = {variant: [] for variant in variants}
        for turn in range(rounds):
            for variant in variants:
                waiting = build_services(settings, start_runner=False)
                before = waiting.credit_view.balance(ids[0], datetime.now(UTC))  # the last turn's debit projected
                waiting.app.record_usage_batch([_usage_record(ids[0], f"after-restart-{turn}-{variant}")])
                if variant == "removed":
                    assert waiting.app.snapshots is not None
                    waiting.app.snapshots.recorder.delete_before(ledger_id_for(ids[0]), 2**62)  # every one
                waiting.close()

                def shows_debit(server: Any, before: int = before) -> bool:
                    answer = httpx.get(server.base + "/api/v1/billing/credits/", timeout=30,
                                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
                    return answer.status_code == 200 and answer.json()["balance_micro_cents"] < before

                root = baseline if variant == "base" and baseline is not None else ROOT
                seconds[variant].append(_serve_until(settings, dsn, shows_debit, root))
        return debited, rows, seconds


def served_debits(services: Any, dsn: str, ids: list[uuid.UUID], events: int, rounds: int) -> tuple[float, float]:
    """The real ``ownllm serve`` (PostgreSQL, its projector running) up on this store, then ``events`` usage
    records written at once over ``ids``, as its usage writer writes them: median seconds until they are
    written, and until its ``credit-debits`` reaction has debited them all (the writing included)."""
    from api.services import build_services

    settings = services.settings
    services.runner.catch_up()
    services.close()  # its reactions' locks are the server's now
    server = Composition("postgres", False, dsn, var=settings.var_dir, schema=settings.postgres_schema)
    writer = build_services(settings, start_runner=False)
    written, debited = [], []
    try:
        server.start()
        for turn in range(rounds):
            started = time.perf_counter()
            head = _record_usage(writer.app, ids, events, f"b{turn}-")
            written.append(time.perf_counter() - started)
            while writer.reactions.position("credit-debits") < head:
                if time.perf_counter() - started > 600:
                    raise RuntimeError(f"not debited in 600 s (the server's log: {server.var}/server.log)")
                time.sleep(0.01)
            debited.append(time.perf_counter() - started)
    finally:
        writer.close()
        server.stop()
    return statistics.median(written), statistics.median(debited)


def _profiler() -> Any:
    if not os.environ.get("BENCH_PROFILE"):
        return None
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    return profile


def _report(profile: Any) -> None:
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--rounds", type=int, default=2, help="off/on alternations per concurrency")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--parts", default="proxy,debits,restart")
    parser.add_argument("--history", type=int, default=50_000, help="debits on the long-lived ledger")
    parser.add_argument("--baseline-tree", type=Path, help="another tree's server beside them, for --parts restart")
    parser.add_argument("--postgres-dsn", default=os.environ.get("OWNLLM_TEST_POSTGRES_DSN", DEFAULT_DSN))
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if "proxy" in parts:
        levels = [int(x) for x in args.concurrency.split(",")]
        cells = asyncio.run(proxy_part(args.seconds, levels, args.rounds))
        print("\nproxy CPU per request, real `ownllm serve` (SQLite), billing off (plan tenant) vs on (credits tenant)")
        print("| concurrency | off ms/req | on ms/req | on - off | requests off/on |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for level in levels:
            off = [c for c in cells if c[0] == level and c[1] == "off"]
            on = [c for c in cells if c[0] == level and c[1] == "on"]
            off_ms, on_ms = statistics.median(c[2] for c in off), statistics.median(c[2] for c in on)
            print(f"| {level} | {off_ms:.3f} | {on_ms:.3f} | {on_ms - off_ms:+.3f} | "
                  f"{sum(c[3] for c in off)}/{sum(c[3] for c in on)} |")  # fmt: skip
        plan_us, credit_us = gate_alone(50_000)
        print("\nthe check alone, in-process, per request, over the rate limiter's admit + release (50,000 requests)")
        print("| plan tenant (off) µs added | credits tenant (on) µs added | on, ms (target <= 0.05) |")
        print("| ---: | ---: | ---: |")
        print(f"| {plan_us:.2f} | {credit_us:.2f} | {credit_us / 1000:.4f} |")
    if "debits" in parts:
        print(f"\ncredit debits from usage events, PostgreSQL, {args.events:,} events (target >= 5,000 events/s)")
        print("| tenants | written, s | debited by `ownllm serve`, s | `ownllm serve` events/s | "
              "in-process reaction events/s | bare read + decode events/s |")  # fmt: skip
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for tenants in (1, 1000):
            debited, bare, written, served = debits_part(args.postgres_dsn, args.events, tenants, args.rounds)
            print(f"| {tenants} | {written:.2f} | {served:.2f} | {args.events / served:,.0f} | {debited:,.0f} | "
                  f"{bare:,.0f} |")  # fmt: skip
        print("(`ownllm serve`: the real server with its projector, running; the events written at once as its usage")
        print(" writer writes them, timed from the first write to the last debit: the writing is included)")
    if "restart" in parts:
        debited, rows, seconds = restart_part(args.postgres_dsn, args.history, args.rounds, args.baseline_tree)
        print("\nthe real `ownllm serve` (PostgreSQL, projections running) restarted on a tenant with "
              f"{args.history:,} debits and one request waiting: seconds until its balance shows it debited (median of "
              f"{args.rounds}, taken in turns)")  # fmt: skip
        print("| ledger | seconds | runs |")
        print("| --- | ---: | --- |")
        labels = {"removed": "its snapshots deleted first (the whole history read)", "kept": "its latest snapshot kept",
                  "base": "the --baseline-tree's server"}  # fmt: skip
        for variant, runs in seconds.items():
            listed = ", ".join(f"{x:.2f}" for x in runs)
            print(f"| {labels[variant]} | {statistics.median(runs):.2f} | {listed} |")
        print(f"\nbeside it, the same ledger in-process (debited at {debited:,.0f} events/s, a snapshot every 5,000 "
              "events); median of 5, ms")  # fmt: skip
        print("| operation | whole history (no snapshots) | from the latest snapshot |")
        print("| --- | ---: | ---: |")
        for operation, whole, snapshot in rows:
            print(f"| {operation} | {whole:,.1f} | {snapshot:,.1f} |")


if __name__ == "__main__":
    main()
