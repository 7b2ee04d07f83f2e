"""Billing benchmark: what the prepaid-credit check adds to the proxy, and how fast usage debits credits.

Two tables, each with its baseline measured in the same run:

- ``proxy``: the REAL composition (``ownllm serve``, SQLite, embedded NATS, echo agents paired through
  the API). Two tenants in the same server: one on its plan (billing off: the check is one dict
  lookup), one on prepaid credits (billing on: price lookup, reserve, settle). Non-stream cells
  alternate off/on; the server process's CPU per request (from /proc) for each, and the difference.
  Then the check alone in-process (``CreditGate.hold`` + release, the exact code the proxy runs),
  per request, next to a plan tenant's lookup.
- ``history``: one tenant's ledger after ``--history`` debits: loading it, buying credits and the debit
  path after a restart, reading the whole history (snapshots off) against the latest snapshot.
- ``debits``: usage events on PostgreSQL debited by the ``credit-debits`` reaction (the same runner
  and batch transaction as the composition), events/s, for one tenant and for 1,000 tenants, next
  to the bare read + decode of the same usage events (the floor any reaction pays).

    PYTHONPATH=. .venv/bin/python bench/billing.py [--seconds 2] [--concurrency 1,16] [--events 20000]
        [--parts proxy,debits,history] [--history 50000] [--postgres-dsn DSN]

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


def _record_usage(app: Any, ids: list[uuid.UUID], events: int) -> int:
    """Record ``events`` usage records over the tenants in turn; the log's head after them."""
    records = [_usage_record(ids[n % len(ids)], f"u{n}") for n in range(events)]
    for start in range(0, events, 500):
        app.record_usage_batch(records[start : start + 500])
    return int(app.recorder.max_notification_id() or 0)


def _debit_all(services: Any, head: int) -> float:
    """Run the debit reaction up to ``head``; the seconds it took."""
    started = time.perf_counter()
    while services.reactions.position("credit-debits") < head:
        services.reactions.run_once()
    return time.perf_counter() - started


def debits_part(dsn: str, events: int, tenants: int) -> tuple[float, float]:
    """(debited events/s, bare read+decode events/s) for ``events`` usage events over ``tenants`` tenants."""
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
        return debited, bare


def history_part(dsn: str, events: int) -> tuple[float, list[tuple[str, float, float]]]:
    """One tenant with ``events`` debits on PostgreSQL: (debited events/s, snapshots taken all along), then
    (operation, ms reading the whole history, ms from the latest snapshot) for what loads its ledger."""
    from domain.credit_ledger import ledger_id_for

    with _tenants_on_credits(dsn, 1, 10_000_000) as (services, ids, now):
        app, tenant = services.app, ids[0]
        debited = events / _debit_all(services, _record_usage(app, ids, events))
        snapshots, repository, ledger_id = app.snapshots, app.repository, ledger_id_for(tenant)
        payments = iter(range(10**6))

        def both(operation: Any) -> tuple[float, float]:
            """Median ms of five runs without snapshots (the whole history) and five with."""
            timings: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(5):
                for use in (False, True):
                    app.snapshots = repository.snapshot_store = snapshots if use else None
                    app.forget_cached_ledgers()
                    started = time.perf_counter()
                    operation()
                    timings[use].append((time.perf_counter() - started) * 1000)
            app.snapshots = repository.snapshot_store = snapshots
            return statistics.median(timings[False]), statistics.median(timings[True])

        rows = [
            ("load the ledger (`credit_ledger`)", *both(lambda: app.credit_ledger(tenant))),
            ("buy credits (`purchase_credits`)",
             *both(lambda: app.purchase_credits(tenant, 100, f"pi_{next(payments)}", now))),
            ("debit path after a restart (`_cached_ledgers`)", *both(lambda: app._cached_ledgers([tenant]))),
        ]  # fmt: skip
        assert snapshots is not None and list(snapshots.get(ledger_id, desc=True, limit=1)), "no snapshot taken"
        return debited, rows


def restart_part(dsn: str, events: int, baseline: Path, rounds: int) -> dict[str, list[float]]:
    """The real ``ownllm serve`` (PostgreSQL, projections running) started on one tenant's ledger of
    ``events`` debits with one new usage record waiting: seconds from the start until the tenant's
    balance shows that request debited, this tree against ``baseline`` (no snapshots), alternated."""
    import httpx

    from api.services import build_services
    from bench.proxy import Composition

    with _tenants_on_credits(dsn, 1, 10_000_000) as (services, ids, _):
        settings, key = services.settings, services.bench_admin_keys[0]
        _debit_all(services, _record_usage(services.app, ids, events))
        services.runner.catch_up()  # the read models current: the restart has only the new request to do
        services.close()  # its reactions' locks are the server's now
        seconds: dict[str, list[float]] = {"serve": [], "base": []}
        for turn in range(rounds * 2):
            path, root = ("serve", ROOT) if turn % 2 else ("base", baseline)
            waiting = build_services(settings, start_runner=False)
            before = waiting.credit_view.balance(ids[0], datetime.now(UTC))  # the last turn's debit projected
            waiting.app.record_usage_batch([_usage_record(ids[0], f"after-restart-{turn}")])
            waiting.close()
            server = Composition("postgres", pin=False, postgres_dsn=dsn, root=root)
            server.schema, server.var = settings.postgres_schema, settings.var_dir
            started = time.perf_counter()
            try:
                server.start()
                while time.perf_counter() - started < 600:
                    answer = httpx.get(server.base + "/api/v1/billing/credits/", timeout=30,
                                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
                    if answer.status_code == 200 and answer.json()["balance_micro_cents"] < before:
                        break
                    time.sleep(0.05)
                seconds[path].append(time.perf_counter() - started)
            finally:
                server.stop()
        return seconds


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
    parser.add_argument("--parts", default="proxy,debits,history")
    parser.add_argument("--history", type=int, default=50_000, help="debits on the long-lived ledger")
    parser.add_argument("--baseline-tree", type=Path, help="a tree without snapshots, for --parts restart")
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
        print(f"\ncredit debits from usage events, PostgreSQL, {args.events} events (target >= 5,000 events/s)")
        print("| tenants | debited events/s | bare read + decode events/s |")
        print("| ---: | ---: | ---: |")
        for tenants in (1, 1000):
            debited, bare = debits_part(args.postgres_dsn, args.events, tenants)
            print(f"| {tenants} | {debited:,.0f} | {bare:,.0f} |")
    if "restart" in parts:
        if args.baseline_tree is None:
            parser.error("--parts restart needs --baseline-tree (a tree without snapshots)")
        seconds = restart_part(args.postgres_dsn, args.history, args.baseline_tree, args.rounds)
        print("\nthe real `ownllm serve` (PostgreSQL, projections running) restarted on a tenant with "
              f"{args.history:,} debits and one request waiting: seconds until its balance shows it debited (median of "
              f"{args.rounds}, alternated)")  # fmt: skip
        print("| tree | seconds | runs |")
        print("| --- | ---: | --- |")
        for path, label in (("base", "baseline tree (no snapshots)"), ("serve", "this tree (snapshots)")):
            runs = ", ".join(f"{x:.2f}" for x in seconds[path])
            print(f"| {label} | {statistics.median(seconds[path]):.2f} | {runs} |")
    if "history" in parts:
        debited, rows = history_part(args.postgres_dsn, args.history)
        print(f"\none tenant's ledger after {args.history:,} debits, PostgreSQL (debited at {debited:,.0f} events/s, "
              "a snapshot every 5,000 events); median of 5, ms")  # fmt: skip
        print("| operation | whole history (no snapshots) | from the latest snapshot |")
        print("| --- | ---: | ---: |")
        for operation, whole, snapshot in rows:
            print(f"| {operation} | {whole:,.1f} | {snapshot:,.1f} |")


if __name__ == "__main__":
    main()
