"""Data lifecycle benchmark: export rate and memory, erasure time against the log's size, sweeper passes.

In one run, on SQLite (and PostgreSQL with ``--stores sqlite,postgres``):

- export: one tenant whose audit log holds ``--rows`` rows (bulk-inserted real events, then the audit
  projection rebuilt) and whose usage is ``--usage`` records. The data export (the zip builder, what
  the sweeper runs) in rows/s and its peak Python memory (tracemalloc), at half and at the full size:
  flat memory means the same peak. Baseline in the same run: the audit CSV export of the same rows.
- erasure: one subject erased (the sweeper's pass at the due instant) in a log of ``--small`` and of
  ``--events`` events; baseline in the same run: one ordinary command (revoking a key).
- sweeper: a pass at a time nothing is due over ``--pending`` pending deletions (the read model's
  scan, injected), and a pass erasing ``--due`` real due subjects (items/s).
- due (``--parts due``): sweeper passes over many due items, erasures and export expiries, batched
  against one at a time in the same run: ``bench/lifecycle_sweep.py`` (its own module for size; run it
  directly for its sizes and flags).

    PYTHONPATH=. .venv/bin/python bench/lifecycle.py [--rows 100000] [--usage 1000000] [--events 1000000]

Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.audit_export import csv_export  # noqa: E402
from api.audit_names import Names  # noqa: E402
from api.services import Services, build_services  # noqa: E402
from api.sweep_tasks import build_sweeper, export_builder  # noqa: E402
from bench.audit_log import tenancy_templates  # noqa: E402
from bench.lifecycle_sweep import sweeping  # noqa: E402
from bench.startup import add_tenants, bulk_usage, msgspec_replace, usage_templates  # noqa: E402
from domain.context import SYSTEM, Ctx  # noqa: E402
from projections.audit_log import AuditFilter  # noqa: E402
from projections.lifecycle import DeletionView  # noqa: E402
from projections.rebuild import rebuild  # noqa: E402
from tests.support.clock import ManualClock  # noqa: E402

Row = dict[str, Any]


def peak(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak MiB of Python allocations) of ``fn``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn()
        return result, time.perf_counter() - started, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def one_tenant(services: Services, rows: int, usage: int) -> tuple[Any, list[Any], list[Any]]:
    """A tenant with ``rows`` audit-worthy events and ``usage`` usage records, projected."""
    tenancy = add_tenants(services.app, 0, 1)
    bulk_usage(services, tenancy_templates(services.app, tenancy, 500), rows)
    bulk_usage(services, usage_templates(services.app, tenancy, 200), usage)
    project(services)
    return tenancy[0]


def project(services: Services) -> None:
    """Bring the tracked read models (audit, usage, ledger) to the head, as the projector would."""
    for model in services.read_models.tracked.values():
        rebuild(model, services.runner.log, services.app.mapper.to_domain_event)
    services.runner.catch_up()


def export_rows(services: Services, tenant_id: Any) -> Row:
    """The data export and the audit CSV baseline over the tenant as it is now."""
    audit_rows = services.audit.count(AuditFilter(tenant_id))[0]
    names = Names(services.directory, tenant_id)

    def baseline() -> int:
        return sum(len(chunk) for chunk in csv_export(services.audit, AuditFilter(tenant_id), names))

    _, base_s, base_mib = peak(baseline)
    export_id = services.command(services.app.request_export, Ctx(SYSTEM, tenant_id, str(uuid.uuid4())),
                                 scope="tenant", subject_id=None)  # fmt: skip
    builder = export_builder(services)
    built, export_s, export_mib = peak(lambda: builder.build(services.lifecycle.exports[export_id],
                                                              services.app.clock()))  # fmt: skip
    builder.files.delete(export_id)
    return {"rows": audit_rows, "export_rows_s": audit_rows / export_s, "export_mib": export_mib,
            "zip_mb": built.size / 1e6, "csv_rows_s": audit_rows / base_s, "csv_mib": base_mib}  # fmt: skip


def erasure_time(
    services: Services, clock: ManualClock, tenant: tuple[Any, list[Any], list[Any]], runs: int = 7
) -> Row:
    """Median milliseconds to erase one member at the due instant, and to run one plain command."""
    tenant_id = tenant[0]
    ctx = Ctx(SYSTEM, tenant_id, str(uuid.uuid4()))
    erase, plain = [], []
    for _ in range(runs):
        invite = services.command(services.app.invite_user, ctx, email=f"e{uuid.uuid4().hex[:8]}@x.example",
                                  role="member")  # fmt: skip
        joined = services.command(services.app.accept_invite, token=invite.secret, name="Erased", request_id="e")
        extra = services.command(services.app.issue_api_key, ctx, user_id=joined.user_id, name="k",
                                 scopes=["inference"])  # fmt: skip
        started = time.perf_counter()
        services.command(services.app.revoke_api_key, ctx, extra.id, "baseline")
        plain.append(time.perf_counter() - started)
        deletion = services.command(services.app.request_deletion, ctx, joined.user_id, "admin")
        clock.advance(days=30)
        started = time.perf_counter()
        erased = services.command(services.app.erase_subject, deletion.id, now=clock(), request_id="bench")
        erase.append(time.perf_counter() - started)
        assert erased.events >= 3, erased
    return {"events": services.runner.log.head(), "erase_ms": statistics.median(erase) * 1000,
            "command_ms": statistics.median(plain) * 1000}  # fmt: skip


def sweeps(services: Services, clock: ManualClock, pending: int, due: int) -> Row:
    """A pass over ``pending`` injected pending deletions (none due), and one erasing ``due`` real subjects."""
    lifecycle = services.lifecycle
    project(services)  # as the projector of `ownllm serve` would: exports wait for the read models (SETTLE_S)
    services.sweeper.run_once()  # what was due already (the exports above are built or expire): out of the way
    later = clock() + timedelta(days=3650)
    for _ in range(pending):
        view = DeletionView(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "user", "admin", clock(), later)
        lifecycle.deletions[view.id] = view
        lifecycle.pending[view.subject_id] = view.id
        lifecycle._push_due(view)
    started = time.perf_counter()
    assert sum(services.sweeper.run_once().values()) == 0
    idle_s = time.perf_counter() - started
    signed = services.command(services.app.signup, slug=f"due-{uuid.uuid4().hex[:8]}", name="Due", admin_name="A",
                              admin_email="a@due.example", request_id="d")  # fmt: skip
    ctx = Ctx(SYSTEM, signed.tenant_id, "d")
    for n in range(due):
        invite = services.app.invite_user(ctx, email=f"u{n}@due.example", role="member")
        joined = services.app.accept_invite(token=invite.secret, name=f"U{n}", request_id=f"d{n}")
        services.runner.catch_up()
        services.app.request_deletion(ctx, joined.user_id, "admin")
    project(services)
    clock.advance(days=30)
    started = time.perf_counter()
    emitted = services.sweeper.run_once()
    due_s = time.perf_counter() - started
    for view_id in list(lifecycle.pending.values()):  # the injected ones leave again
        if lifecycle.deletions[view_id].due_at == later:
            del lifecycle.pending[lifecycle.deletions.pop(view_id).subject_id]
    return {"pending": pending, "idle_ms": idle_s * 1000, "due": due, "due_s": due_s,
            "due_per_s": due / due_s, "emitted": emitted["deletions-due"]}  # fmt: skip


def measure(kind: str, args: argparse.Namespace) -> Row:
    result: Row = {"store": kind}
    parts = set(args.parts.split(","))
    with sweeping(kind) as (settings, services, clock):
        tenant = one_tenant(services, args.rows // 2, args.usage // 2) if parts & {"export", "erase"} else None
        if "export" in parts and tenant is not None:
            result["export_half"] = export_rows(services, tenant[0])
        if tenant is not None:
            bulk_usage(services, tenancy_templates(services.app, [tenant], 500), args.rows - args.rows // 2)
            bulk_usage(services, usage_templates(services.app, [tenant], 200), args.usage - args.usage // 2)
            project(services)
        if "export" in parts and tenant is not None:
            result["export_full"] = export_rows(services, tenant[0])
        if "erase" in parts and tenant is not None:
            result["erase_big"] = erasure_time(services, clock, tenant)
        if "sweep" in parts:
            result["sweep"] = sweeps(services, clock, args.pending, args.due)
        if "erase" in parts:  # a log of its own, beside this one
            result["erase_small"] = small_erasure(settings, args.small)
    return result


def small_erasure(settings: Any, events: int) -> Row:
    """The erasure measure on a log of ``events`` events."""
    small_clock = ManualClock()
    small_settings = msgspec_replace(settings, var_dir=str(Path(settings.var_dir) / "small"),
                                     postgres_schema=_fresh_schema(settings))  # fmt: skip
    small = build_services(small_settings, start_runner=False, clock=small_clock)
    small.sweeper = build_sweeper(small)
    try:
        tenant = add_tenants(small.app, 0, 1)[0]
        bulk_usage(small, usage_templates(small.app, [tenant], 50), events)
        small.runner.catch_up()
        return erasure_time(small, small_clock, tenant)
    finally:
        small.close()


def _fresh_schema(settings: Any) -> str:
    if settings.persistence != "postgres":
        return str(settings.postgres_schema)
    from tests.support.postgres import create_schema

    return create_schema(settings.postgres_dsn)


def table(results: list[Row]) -> str:
    lines = ["| store | measure | value | baseline (same run) |", "| --- | --- | --- | --- |"]
    for r in results:
        for size in ("export_half", "export_full"):
            if size not in r:
                continue
            e = r[size]
            lines.append(f"| {r['store']} | data export, {e['rows']:,} audit rows | {e['export_rows_s']:,.0f} rows/s, "
                         f"peak {e['export_mib']:.1f} MiB, zip {e['zip_mb']:.1f} MB | audit CSV export "
                         f"{e['csv_rows_s']:,.0f} rows/s, peak {e['csv_mib']:.1f} MiB |")  # fmt: skip
        for size in ("erase_small", "erase_big"):
            if size not in r:
                continue
            e = r[size]
            lines.append(f"| {r['store']} | erase one subject (median of 7), log of {e['events']:,} events "
                         f"| {e['erase_ms']:.1f} ms | one command (revoke a key), "
                         f"median {e['command_ms']:.1f} ms |")  # fmt: skip
        if "sweep" not in r:
            continue
        s = r["sweep"]
        lines.append(f"| {r['store']} | sweeper pass, {s['pending']:,} pending, none due | {s['idle_ms']:.1f} ms | |")
        lines.append(f"| {r['store']} | sweeper pass erasing {s['due']:,} due subjects | {s['due_s']:.2f} s "
                     f"({s['due_per_s']:,.0f} subjects/s, {s['emitted']:,} events) | |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="audit-worthy events of the exported tenant")
    parser.add_argument("--usage", type=int, default=1_000_000, help="usage records of the exported tenant")
    parser.add_argument("--small", type=int, default=1_000, help="events of the small log (erasure)")
    parser.add_argument("--pending", type=int, default=1_000_000, help="pending deletions the idle pass scans")
    parser.add_argument("--due", type=int, default=200, help="due subjects one pass erases")
    parser.add_argument("--stores", default="sqlite")
    parser.add_argument("--parts", default="export,erase,sweep", help="which measures to run (and: due)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results = [measure(kind, args) for kind in args.stores.split(",")] if parts - {"due"} else []
    print()
    print(table(results))
    if "due" in parts:
        from bench import lifecycle_sweep

        due_args = argparse.Namespace(erasures="1000,10000", baseline_erasures="1000", exports="10000,100000",
                                      baseline_exports="2000", erasure_batch=lifecycle_sweep.BATCH,
                                      export_batch=lifecycle_sweep.EXPORT_BATCH)  # fmt: skip
        rows = [row for kind in args.stores.split(",") for row in lifecycle_sweep.measure(kind, due_args)]
        print(lifecycle_sweep.table(rows))


if __name__ == "__main__":
    main()
