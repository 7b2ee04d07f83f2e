"""Audit log benchmark: rebuild rate of the audit read model next to the bare read of the log, query
latency for typical filters, and CSV export rate with its memory, on PostgreSQL (and SQLite).

The store is filled like a running installation's: tenants through the application's own commands,
then ``--events`` events bulk-inserted as real encoded events (the application's mapper), half usage
records (aggregated per key, model and hour: few rows) and half audit exports (one row each),
spread over the tenants. Then, in the same run:

- bare read: every notification read through the library and decoded by the mapper (what every
  tracked reader paid before), events/s; and the tracked readers' own read now (id ranges, binary
  rows, nothing decoded), events/s;
- rebuild: what ``ownllm projections rebuild audit`` runs, in this process (read, decode what is needed,
  describe, insert, then the secondary indexes built), events/s; and the command itself in a process of its
  own, start-up included (``--parts cli``);
- the audit log and the integrity ledger from scratch, caught up by the runner one after the other,
  then together (one shared read, and decode, per batch), events of the log per second;
- queries: a page of 100 rows plus its count, for five typical filters, p50/p99 over ``--queries`` runs;
- export: one tenant's rows streamed as CSV, rows/s and the peak Python memory while streaming.

    PYTHONPATH=. .venv/bin/python bench/audit_log.py [--events 2000000] [--stores postgres,sqlite]
        [--parts together,queries,export,http] [--keep NAME]

``--keep NAME`` fills the store once and keeps it (PostgreSQL: database ``ownllm_bench_NAME``; SQLite:
under the temp dir); later runs with the same name reuse it (the fill is then not timed again).

Prints a markdown table; asserts nothing (targets: rebuild >= 50,000 events/s on PostgreSQL at 1M
events, query p99 <= 10 ms, export >= 100,000 rows/s with flat memory).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventsourcing.persistence import StoredEvent  # noqa: E402

from api.audit_export import csv_export  # noqa: E402
from api.audit_names import Names  # noqa: E402
from api.services import Services, build_services  # noqa: E402
from api.settings import Settings  # noqa: E402
from bench.startup import add_tenants, bulk_usage, kept_store, msgspec_replace, store, usage_templates  # noqa: E402
from domain.application import OwnLLM  # noqa: E402
from domain.audit_export import AuditExport  # noqa: E402
from projections.audit_log import AuditFilter  # noqa: E402
from projections.log import NotificationLog  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from projections.runner import BATCH, TRACKED_BATCH, ProjectionRunner  # noqa: E402

TARGETS = {"rebuild": 50_000, "query_p99_ms": 10.0, "export": 100_000}


def tenancy_templates(app: OwnLLM, tenancy: list[tuple[Any, list[Any], list[Any]]], count: int) -> list[StoredEvent]:
    """Real audit-worthy events of real tenants (audit exports by their keys: one row each, and no
    other read model keeps them, so a bulk of them leaves the in-memory directory as it is)."""
    templates = []
    for n in range(count):
        tenant_id, _, keys = tenancy[(n * 7919) % len(tenancy)]
        export = AuditExport(tenant_id=tenant_id, format=("csv", "jsonl")[n % 2], filters=f"action=api_key.%2A&n={n}",
                             actor=f"key:{keys[n % len(keys)]}", request_id=f"req-{uuid.uuid4().hex}")  # fmt: skip
        templates.append(app.mapper.to_stored_event(export.collect_events()[0]))
    return templates


def fill(settings: Settings, tenants: int, events: int) -> tuple[int, list[Any]]:
    """Tenants by commands, then ``events`` bulk events (half usage, half tenancy); the log's head."""
    services = build_services(msgspec_replace(settings, run_projections=False), start_runner=False)
    try:
        tenancy = add_tenants(services.app, 0, tenants)
        bulk_usage(services, usage_templates(services.app, tenancy, 500), events // 2)
        bulk_usage(services, tenancy_templates(services.app, tenancy, 3000), events - events // 2)
        return NotificationLog(services.app.recorder).head(), tenancy
    finally:
        services.close()


def vacuum(settings: Settings) -> None:
    """What autovacuum does after a bulk load: statistics, and the visibility map index-only scans need."""
    if settings.persistence != "postgres":
        return
    import psycopg

    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(f'VACUUM (ANALYZE) "{settings.postgres_schema}".ownllm_audit_log')


def bare_read(services: Services) -> float:
    """Events per second to read and decode the whole log (the floor of any rebuild)."""
    log, decode = services.runner.log, services.app.mapper.to_domain_event
    head, after, count = log.head(), 0, 0
    started = time.perf_counter()
    while after < head:
        batch = log.read(after, head, (), BATCH)
        for notification in batch:
            decode(notification)
        count += len(batch)
        if len(batch) < BATCH:
            break
        after = batch[-1].id
    return count / (time.perf_counter() - started)


def range_read(services: Services) -> float:
    """Events per second of the tracked readers' own read (id ranges, binary, no decode): their floor now."""
    log, decode = services.runner.log, services.app.mapper.to_domain_event
    head, after, count = log.head(), 0, 0
    started = time.perf_counter()
    while after < head:
        records, after = log.records(after, head, (), TRACKED_BATCH, decode)
        count += len(records)
    return count / (time.perf_counter() - started)


def together(services: Services) -> tuple[float, float]:
    """Events/s of the audit log and the ledger caught up from scratch by the runner one after the other
    (two reads of the log), and together (one read, and decode, per batch for both); the log's events
    over the time. Both as the runner does it in steady state (the audit's indexes kept up row by row)."""
    ledger = services.ledger
    assert ledger is not None
    head = services.runner.log.head()

    def caught_up(models: list[Any]) -> float:
        for model in models:
            model.clear()
        runner = ProjectionRunner(services.app, [], models)
        started = time.perf_counter()
        runner.catch_up()
        assert all(model.position == head for model in models)
        return time.perf_counter() - started

    apart = head / (caught_up([services.audit]) + caught_up([ledger]))
    shared = head / caught_up([services.audit, ledger])
    return apart, shared


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def queries(
    services: Services, tenant_id: Any, users: list[Any], keys: list[Any], runs: int
) -> dict[str, tuple[float, float, float, float]]:
    """p50/p99 of a page of 100 rows alone, then with its count, for typical filters."""
    audit = services.audit
    newest = audit.page(AuditFilter(tenant_id), limit=1).rows[0]
    middle = newest.entry.time.replace(minute=0, second=0, microsecond=0)
    filters = {
        "newest page": AuditFilter(tenant_id),
        "action = api_key.revoked (rare)": AuditFilter(tenant_id, action="api_key.revoked"),
        "action = audit.* (common)": AuditFilter(tenant_id, action_prefix="audit."),
        "actor = one key": AuditFilter(tenant_id, actors=(f"key:{keys[0]}",)),
        "subject history": AuditFilter(tenant_id, involves=users[-1], involves_actors=(f"user:{users[-1]}",)),
        "since an hour": AuditFilter(tenant_id, since=middle),
    }

    def page(where: AuditFilter) -> Callable[[], Any]:
        return lambda: audit.page(where, limit=100)

    def counted(where: AuditFilter) -> Callable[[], Any]:
        return lambda: (audit.page(where, limit=100), audit.count(where))

    return {name: (*timed(page(where), runs), *timed(counted(where), runs)) for name, where in filters.items()}


def export(services: Services, tenant_id: Any) -> tuple[int, float, float]:
    """Rows, rows/s and peak traced MiB of one tenant's CSV export: timed in one pass, memory traced in a
    second (tracemalloc slows every allocation, so a traced pass would understate the rate)."""

    def one_pass() -> int:
        rows = 0
        for chunk in csv_export(services.audit, AuditFilter(tenant_id), Names(services.directory, tenant_id)):
            rows += chunk.count(b"\n")  # CRLF row by row, LF from PostgreSQL's COPY; no field holds a newline
        return rows - 1

    started = time.perf_counter()
    rows = one_pass()
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    one_pass()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return rows, rows / elapsed, peak


def served(settings: Settings, services: Services, tenant_id: Any, runs: int) -> dict[str, Any]:
    """The same reads as users make them: HTTP against the real ``ownllm serve`` on this store (the
    audit API, its auth and DI, its projector child running), with an admin key of the tenant."""
    import httpx

    from api.projector import settings_env
    from domain.context import SYSTEM, Ctx
    from tests.support.nats import free_port

    admin = services.directory.tenants[tenant_id].admin_user_id
    secret = services.app.issue_api_key(Ctx(SYSTEM, tenant_id, "bench"), user_id=admin, name="bench",
                                        scopes=["admin:read", "audit:read"]).secret  # fmt: skip
    port = free_port()
    env = {**os.environ, **settings_env(msgspec_replace(settings, inference=False, run_projections=True)),
           "OWNLLM_PORT": str(port), "OWNLLM_LOG_LEVEL": "warning"}  # fmt: skip
    server = subprocess.Popen([str(Path(sys.executable).parent / "ownllm"), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {secret}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/api/v1/audit", params={"limit": 1}).status_code == 200:
                        break
                time.sleep(0.2)

            def page(query: dict[str, str]) -> Callable[[], Any]:
                return lambda: client.get("/api/v1/audit", params=query).raise_for_status()

            head = services.runner.log.head()  # the projector catches the other read models up first (a new store)
            while any(m.stored_position() < head for m in services.read_models.tracked.values()):
                time.sleep(0.5)
            queries: tuple[tuple[str, dict[str, str]], ...] = (
                ("newest page", {}),
                ("action = audit.*", {"action": "audit.*"}),
            )
            pages = {name: timed(page(query), runs) for name, query in queries}
            started, lines = time.perf_counter(), 0
            with client.stream("GET", "/api/v1/audit/export", params={"format": "csv"}) as answer:
                for chunk in answer.iter_bytes():
                    lines += chunk.count(b"\n")
            rate = (lines - 1) / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(20)
    return {"pages": pages, "export_rows": lines - 1, "export_rate": rate}


def kept_tenancy(services: Services, tenants: int) -> list[tuple[Any, list[Any], list[Any]]]:
    """(tenant id, user ids, key ids) of the first ``tenants`` tenants, oldest first, from the directory."""
    directory = services.directory
    return [(t, [u.id for u in directory.tenant_users(t)], [k.id for k in directory.tenant_keys(t)])
            for t in list(directory.tenants)[:tenants]]  # fmt: skip


def measure(kind: str, events: int, tenants: int, runs: int, keep: str | None, parts: set[str]) -> dict[str, Any]:
    with store(kind, None) if keep is None else kept_store(kind, keep, False) as settings:
        quiet = msgspec_replace(settings, run_projections=False)
        services = build_services(quiet, start_runner=False)
        head = services.runner.log.head()
        services.close()
        filled_s = -1.0  # built by an earlier run (--keep)
        if head < events:
            if head:
                raise SystemExit(f"the kept store {keep!r} holds {head:,} events, not {events:,}: drop it first")
            print(f"{kind}: filling {events:,} events over {tenants} tenants ...", flush=True)
            started = time.perf_counter()
            head, _ = fill(settings, tenants, events)
            filled_s = time.perf_counter() - started
        services = build_services(quiet, start_runner=False)
        result: dict[str, Any] = {"kind": kind, "events": head, "filled_s": filled_s}
        try:
            tenancy = kept_tenancy(services, tenants)
            result["bare"], result["ranges"] = bare_read(services), range_read(services)
            print(f"  bare read {result['bare']:,.0f} events/s; rebuilding the audit log ...", flush=True)
            started = time.perf_counter()
            replayed, _ = rebuild(services.audit, services.runner.log, services.app.mapper.to_domain_event)
            result["rebuild"] = replayed / (time.perf_counter() - started)
            if "cli" in parts:
                print("  the same through `ownllm projections rebuild audit` ...", flush=True)
                result["cli"] = cli_rebuild(settings, head)
            if "together" in parts:
                print("  audit log and ledger: apart, then together ...", flush=True)
                result["apart"], result["shared"] = together(services)
            vacuum(settings)
            tenant_id, users, keys = tenancy[0]
            result["tenant_rows"] = services.audit.count(AuditFilter(tenant_id))[0]
            if "queries" in parts:
                result["queries"] = queries(services, tenant_id, users, keys, runs)
            if "export" in parts:
                result["exported"], result["export_rate"], result["peak_mib"] = export(services, tenant_id)
            if "http" in parts:
                result["http"] = served(settings, services, tenant_id, runs)
        finally:
            services.close()
    return result


def cli_rebuild(settings: Settings, events: int) -> float:
    """Events per second of the command an operator runs, ``ownllm projections rebuild audit`` on this
    store (a process of its own: its start-up, the services it builds and the progress bar included)."""
    from api.projector import settings_env

    env = {**os.environ, **settings_env(msgspec_replace(settings, inference=False)), "OWNLLM_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "ownllm"), "projections", "rebuild", "audit"], env=env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return events / (time.perf_counter() - started)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| store | events | library read + full decode (baseline) | tracked readers' range read, no decode "
        "| audit rebuild | `ownllm projections rebuild audit` (start-up included) | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        filled = f"filled in {r['filled_s']:.0f} s" if r["filled_s"] >= 0 else "kept from an earlier run"
        cli = f"{r['cli']:,.0f} events/s" if "cli" in r else "not run"
        lines.append(f"| {r['kind']} | {r['events']:,} ({filled}) | {r['bare']:,.0f} events/s "
                     f"| {r['ranges']:,.0f} events/s | {r['rebuild']:,.0f} events/s | {cli} "
                     f"| ≥ {TARGETS['rebuild']:,} |")  # fmt: skip
    lines += [
        "",
        "| store | audit log + integrity ledger from scratch | events/s |",
        "| --- | --- | ---: |",
    ]
    for r in [r for r in results if "apart" in r]:
        lines.append(f"| {r['kind']} | one after the other (runner catch-up each: two reads) | {r['apart']:,.0f} |")
        lines.append(f"| {r['kind']} | together (the runner's catch-up: one read per batch) | {r['shared']:,.0f} |")
    lines += [
        "",
        "| store | filter | page of 100: p50 ms | p99 ms | page + X-Total-Count: p50 ms | p99 ms | target p99 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in [r for r in results if "queries" in r]:
        for name, (p50, p99, c50, c99) in r["queries"].items():
            rows, target = r["tenant_rows"], TARGETS["query_p99_ms"]
            lines.append(
                f"| {r['kind']} | {name} (tenant of {rows:,} rows) | {p50:.2f} | {p99:.2f} | {c50:.2f} | {c99:.2f} "
                f"| ≤ {target} |"
            )
    lines += [
        "",
        "| store | CSV export | rows/s | peak Python memory | target |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in [r for r in results if "exported" in r]:
        lines.append(f"| {r['kind']} | {r['exported']:,} rows | {r['export_rate']:,.0f} | {r['peak_mib']:.1f} MiB | "
                     f"≥ {TARGETS['export']:,} rows/s, flat |")  # fmt: skip
    lines += [
        "",
        "Through the real `ownllm serve` (HTTP, key auth, projector child running), next to the direct calls above:",
        "| store | request | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in [r for r in results if "http" in r]:
        for name, (p50, p99) in r["http"]["pages"].items():
            lines.append(f"| {r['kind']} | GET /api/v1/audit, {name} (page of 100 + count) | {p50:.2f} | {p99:.2f} |")
        lines.append(f"| {r['kind']} | GET /api/v1/audit/export?format=csv: {r['http']['export_rows']:,} rows | "
                     f"{r['http']['export_rate']:,.0f} rows/s | |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--keep", default=None, help="keep the filled store under this name and reuse it")
    parser.add_argument("--parts", default="cli,together,queries,export,http",
                        help="what to measure besides the reads and the rebuild (comma-separated)")  # fmt: skip
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results = [measure(kind, args.events, args.tenants, args.queries, args.keep, parts)
               for kind in args.stores.split(",")]  # fmt: skip
    print()
    print(table(results))


if __name__ == "__main__":
    main()
