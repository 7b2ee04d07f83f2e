"""Sweeper passes over many due items: erasures and export expiries, batched against one at a time.

Each round sets up ``n`` due items in a fresh tenant of the same store (written in bulk through the
domain's own aggregates, then projected), moves the clock to their due instant and times one full
``Sweeper.run_once`` (every task ``ownllm serve``'s sweeper has) with the task's batch size set: the
product's default, and ``1`` (one item per command, transaction and catch-up, through the same batched
code) as the baseline measured in the same run. Only the sweeper runs while a pass is timed: the
tracked read models (serve's projector child) and the reactions are brought to the head before it and
are idle during it, so a pass in ``ownllm serve`` shares the machine and the store with them.
Erasures are users with an API key and a pending deletion (per item: key revoked, user removed,
``SubjectErased``, subject key destroyed); export expiries are completed exports whose 24 h link ends
(per item: ``DataExport.Expired`` and the file's unlink).

    PYTHONPATH=. .venv/bin/python bench/lifecycle_sweep.py [--erasures 1000,10000] [--exports 1000000]
        [--baseline-erasures 1000] [--baseline-exports 10000] [--stores sqlite,postgres]

Prints a markdown table; asserts only that every item was handled.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.services import Services, build_services  # noqa: E402
from api.sweep_tasks import BATCH, EXPORT_BATCH, build_sweeper  # noqa: E402
from bench.startup import msgspec_replace, store  # noqa: E402
from domain.context import SYSTEM, Ctx  # noqa: E402
from domain.data_export import DataExport  # noqa: E402
from domain.deletion import Deletion  # noqa: E402
from domain.sealing import PersonalData  # noqa: E402
from domain.user import User  # noqa: E402
from policies.lifecycle import DELETION_WINDOW, EXPORT_LINK_LIFETIME  # noqa: E402
from tests.support.clock import ManualClock  # noqa: E402

CHUNK = 1000  # aggregates per bulk save while setting up
Row = dict[str, Any]


def _tenant(services: Services) -> Any:
    signed = services.app.signup(slug=f"due-{uuid.uuid4().hex[:10]}", name="Due Ltd", admin_name="A",
                                 admin_email="a@due.example", request_id=str(uuid.uuid4()))  # fmt: skip
    return signed.tenant_id


def due_erasures(services: Services, clock: ManualClock, n: int) -> None:
    """``n`` members of a fresh tenant, each with an API key and a deletion due ``DELETION_WINDOW`` from now."""
    app, tenant_id, now = services.app, _tenant(services), clock()
    ctx = Ctx(SYSTEM, tenant_id, "bench-due")
    for start in range(0, n, CHUNK):
        batch: list[Any] = []
        for i in range(start, min(n, start + CHUNK)):
            user_id = uuid.uuid4()
            user = User(id=user_id, tenant_id=tenant_id, name=PersonalData(user_id, f"Due Person {i}"),
                        email=PersonalData(user_id, f"p{i}@due.example"), role="member", invite_id=None,
                        actor=SYSTEM, request_id=f"bench-{i}")  # fmt: skip
            key, _ = app._new_api_key(ctx, user, f"key {i}", ["inference"], None)
            deletion = Deletion(subject_id=user_id, sequence=0, tenant_id=tenant_id, subject_kind="user",
                                cause="admin", requested_at=now, due_at=now + DELETION_WINDOW, actor=SYSTEM,
                                request_id=f"bench-{i}")  # fmt: skip
            batch += [user, key, deletion]
        app.save(*batch)
    services.runner.catch_up()
    clock.now = clock.now + DELETION_WINDOW


def due_exports(services: Services, clock: ManualClock, n: int) -> None:
    """``n`` completed exports of a fresh tenant whose links end ``EXPORT_LINK_LIFETIME`` from now."""
    app, tenant_id, now = services.app, _tenant(services), clock()
    ctx = Ctx(SYSTEM, tenant_id, "bench-exports")
    for start in range(0, n, CHUNK):
        batch = []
        for _ in range(start, min(n, start + CHUNK)):
            export = DataExport(tenant_id=tenant_id, scope="tenant", subject_id=None, requested_by=None,
                                requested_at=now, actor=SYSTEM, request_id=f"bench-{uuid.uuid4()}")  # fmt: skip
            export.complete(ctx, 10, 1000, "0" * 64, now)
            batch.append(export)
        app.save(*batch)
    services.runner.catch_up()
    clock.now = clock.now + EXPORT_LINK_LIFETIME


def one_pass(services: Services, clock: ManualClock, what: str, n: int, batch: int) -> Row:
    """Set up ``n`` due items, then time one sweeper pass with the task's batch size ``batch``."""
    started = time.perf_counter()
    (due_erasures if what == "erasures" else due_exports)(services, clock, n)
    setup_s = time.perf_counter() - started
    task_name = "deletions-due" if what == "erasures" else "exports-expired"
    task = next(t for t in services.sweeper.tasks if t.name == task_name)
    task.batch = batch  # type: ignore[attr-defined]
    started = time.perf_counter()
    emitted = services.sweeper.run_once()
    pass_s = time.perf_counter() - started
    per_item = 3 if what == "erasures" else 1
    assert emitted[task_name] == per_item * n, emitted
    return {"what": what, "n": n, "batch": batch, "setup_s": setup_s, "pass_s": pass_s, "items_s": n / pass_s}


@contextlib.contextmanager
def sweeping(kind: str) -> Iterator[tuple[Any, Services, ManualClock]]:
    """A fresh store of ``kind`` and services over it with a sweeper and a hand-moved clock; as in
    `ownllm serve`, the tracked read models run elsewhere (the projector), not after each command."""
    with store(kind, None) as base:
        settings = msgspec_replace(base, nats_public_url="tls://n:4222", run_projections=False)
        clock = ManualClock()
        services = build_services(settings, start_runner=False, clock=clock)
        services.sweeper = build_sweeper(services)
        try:
            yield settings, services, clock
        finally:
            services.close()


def measure(kind: str, args: argparse.Namespace) -> list[Row]:
    rows = []
    with sweeping(kind) as (_, services, clock):
        services.sweeper.run_once()
        plan = [("erasures", n, 1) for n in _sizes(args.baseline_erasures)]
        plan += [("erasures", n, args.erasure_batch) for n in _sizes(args.erasures)]
        plan += [("exports", n, 1) for n in _sizes(args.baseline_exports)]
        plan += [("exports", n, args.export_batch) for n in _sizes(args.exports)]
        for what, n, batch in plan:
            row = one_pass(services, clock, what, n, batch) | {"store": kind}
            print(row, flush=True)
            rows.append(row)
    return rows


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def table(rows: list[Row]) -> str:
    lines = ["| store | due items | batch | setup (bulk) | sweeper pass | items/s |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        mode = "1 (one at a time: baseline)" if r["batch"] == 1 else str(r["batch"])
        lines.append(f"| {r['store']} | {r['n']:,} {r['what']} | {mode} | {r['setup_s']:.1f} s | {r['pass_s']:.2f} s "
                     f"| {r['items_s']:,.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--erasures", default="1000,10000", help="due erasures per batched pass (sizes)")
    parser.add_argument("--baseline-erasures", default="1000", help="due erasures per one-at-a-time pass")
    parser.add_argument("--exports", default="10000,100000", help="due export expiries per batched pass")
    parser.add_argument("--baseline-exports", default="10000", help="due export expiries per one-at-a-time pass")
    parser.add_argument("--erasure-batch", type=int, default=BATCH)
    parser.add_argument("--export-batch", type=int, default=EXPORT_BATCH)
    parser.add_argument("--stores", default="sqlite")
    args = parser.parse_args()
    rows = [row for kind in args.stores.split(",") for row in measure(kind, args)]
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
