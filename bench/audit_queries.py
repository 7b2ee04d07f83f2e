"""Audit query benchmark at scale: page and page + count latency for typical filters over ``--rows``
audit rows (default 10M), written straight into the audit table in bulk, on PostgreSQL (and SQLite).

Replaying 10M events through the projection takes most of an hour on this machine, so the rows are
generated and bulk-loaded instead (PostgreSQL: binary ``COPY``; SQLite: ``executemany`` in one
transaction), with the secondary indexes dropped during the load and built once after it, as a
rebuild does (``bulk_load``), then ``VACUUM (ANALYZE)`` (what autovacuum does after a load). The
build time is reported. The rows have the shape the projection writes: ``--tenants`` tenants of 3
users and 4 keys each, positions and times increasing together over two years; per tenant, one row
in five an hourly usage row of a key, most others audit exports by a key, one in 1,000 a user
action by the admin about a member, one in 50,000 a key revoked.

Measured per store with the product's own read path (``AuditProjection.page`` and ``.count``, what
``GET /api/v1/audit`` calls), over the first tenant's rows: p50/p99 of a page of 100 rows alone, and
of the page with its ``X-Total-Count`` (exact up to 100,000, then an estimate), for the filters of
``bench/audit_log.py``. Baseline in the same run: ``SELECT 1`` round trips through the same store.

    PYTHONPATH=. .venv/bin/python bench/audit_queries.py [--rows 10000000] [--stores postgres,sqlite] [--keep NAME]

``--keep NAME`` builds the store once and keeps it (PostgreSQL: database ``ownllm_bench_NAME`` on the
local server; SQLite: under the temp dir): a later run with the same name and ``--rows`` queries it
without loading again (``--drop`` removes it after the run).

Prints a markdown table; asserts nothing (target: p99 <= 10 ms).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.sql import SQL, Identifier  # noqa: E402

from api.services import Services, build_services  # noqa: E402
from bench.audit_log import queries, timed  # noqa: E402
from bench.startup import kept_store, msgspec_replace, store  # noqa: E402
from projections.audit_postgres import COPY_TYPES  # noqa: E402
from projections.audit_queries import STORED, TIME_FORMAT  # noqa: E402

SPAN = timedelta(days=730)
START = datetime(2024, 1, 1, tzinfo=UTC)


def tenancy(tenants: int) -> list[tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]]:
    """(tenant id, 3 user ids, 4 key ids) per tenant, fixed by the seed."""
    rng = random.Random(7)

    def new() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    return [(new(), [new() for _ in range(3)], [new() for _ in range(4)]) for _ in range(tenants)]


def rows(count: int, tenancy: list[tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]]) -> Iterator[tuple[Any, ...]]:
    """The stored values (``STORED`` order) of ``count`` rows spread over the tenants."""
    step = SPAN / count
    subjects = [uuid.UUID(int=random.Random(n).getrandbits(128), version=4) for n in range(4096)]
    kinds = len(tenancy)
    for n in range(count):
        tenant, users, keys = tenancy[n % kinds]
        k = n // kinds  # the row's place in its tenant
        time_ = START + step * n
        key = keys[k % 4]
        if k % 50_000 == 49_999:
            values = (f"user:{users[0]}", "api_key.revoked", "api_key", keys[3], "key ab12 revoked: rotated", None)
        elif k % 1000 == 999:
            values = (f"user:{users[0]}", "user.role_changed", "user", users[1 + k % 2], "role member -> admin", None)
        elif k % 5 == 0:
            bucket = uuid.UUID(int=(n << 8) | 1, version=4)
            values = (f"key:{key}", "usage.hourly", "api_key", key, "llama-3.1-8b-instruct", bucket)
        else:
            values = (f"key:{key}", "audit.exported", "audit_export", subjects[n % 4096],
                      "audit log exported as csv: action=api_key.%2A", None)  # fmt: skip
        actor, action, kind, subject, summary, bucket = values
        counts = (k % 7 + 1, 300, 80) if bucket else (0, 0, 0)
        yield (n + 1, tenant, time_, actor, action, kind, subject, summary, f"req-{n:012x}", bucket, *counts,
               action.partition(".")[0])  # fmt: skip


def load_postgres(services: Services, count: int, people: list[Any]) -> None:
    table = services.audit.table  # type: ignore[attr-defined]
    target = SQL("COPY {} (" + STORED + ") FROM STDIN (FORMAT BINARY)").format(table.table)
    with (
        table.bulk_load(),
        psycopg.connect(services.settings.postgres_dsn) as conn,
        conn.cursor() as curs,
        curs.copy(target) as copy,
    ):
        copy.set_types(COPY_TYPES)
        for values in rows(count, people):
            copy.write_row(values)
    with psycopg.connect(services.settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(SQL("VACUUM (ANALYZE) {}.{}").format(Identifier(services.settings.postgres_schema),
                                                         Identifier("ownllm_audit_log")))  # fmt: skip


def load_sqlite(services: Services, count: int, people: list[Any]) -> None:
    table = services.audit.table  # type: ignore[attr-defined]
    with table.bulk_load():
        db = sqlite3.connect(services.settings.sqlite_file)
        try:
            with db:
                db.executemany(
                    f"INSERT INTO audit_log ({STORED}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    ((p, str(t), m.strftime(TIME_FORMAT), a, act, kind, str(s), summ, r, str(b) if b else None, *rest)
                     for p, t, m, a, act, kind, s, summ, r, b, *rest in rows(count, people)),
                )  # fmt: skip
            db.execute("ANALYZE audit_log")
        finally:
            db.close()


def stored_rows(services: Services) -> int:
    """The audit table's highest position (0: empty): what a kept store already holds."""
    table = services.audit.table  # type: ignore[attr-defined]
    return int(table._select("SELECT coalesce(max(position), 0) FROM " + table.table_sql, [])[0][0])


def baseline(services: Services, runs: int) -> tuple[float, float]:
    """p50/p99 ms of ``SELECT 1`` through the audit table's own read path (the floor of any query)."""
    table = services.audit.table  # type: ignore[attr-defined]
    return timed(lambda: table._select("SELECT 1", []), runs)


def measure(kind: str, count: int, tenants: int, runs: int, keep: str | None, drop: bool) -> dict[str, Any]:
    with store(kind, None) if keep is None else kept_store(kind, keep, drop) as settings:
        services = build_services(msgspec_replace(settings, run_projections=False), start_runner=False)
        try:
            people = tenancy(tenants)
            built = -1.0  # kept from an earlier run
            if stored_rows(services) != count:
                if stored_rows(services):
                    services.audit.clear()
                print(f"{kind}: loading {count:,} audit rows ...", flush=True)
                started = time.perf_counter()
                (load_postgres if kind == "postgres" else load_sqlite)(services, count, people)
                built = time.perf_counter() - started
            print(f"  built in {built:.0f} s; querying ...", flush=True)
            tenant_id, users, keys = people[0]
            latencies = queries(services, tenant_id, users, keys, runs)
            floor = baseline(services, runs)
        finally:
            services.close()
    return {"kind": kind, "rows": count, "tenant_rows": count // tenants, "built_s": built, "queries": latencies,
            "floor": floor}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--queries", type=int, default=500, help="runs per filter")
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--keep", default=None, help="keep the built store under this name (and reuse it)")
    parser.add_argument("--drop", action="store_true", help="with --keep: remove the store after the run")
    args = parser.parse_args()
    results = [measure(kind, args.rows, args.tenants, args.queries, args.keep, args.drop)
               for kind in args.stores.split(",")]  # fmt: skip
    print("\n| store | filter | page of 100: p50 ms | p99 ms | page + X-Total-Count: p50 ms | p99 ms | target p99 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        f50, f99 = r["floor"]
        print(f"| {r['kind']} | baseline: SELECT 1 through the same read path | {f50:.2f} | {f99:.2f} | | | |")
        for name, (p50, p99, c50, c99) in r["queries"].items():
            built = f"built in {r['built_s']:.0f} s" if r["built_s"] >= 0 else "built by an earlier run"
            print(f"| {r['kind']} | {name} (tenant of {r['tenant_rows']:,} of {r['rows']:,} rows, {built}) "
                  f"| {p50:.2f} | {p99:.2f} | {c50:.2f} | {c99:.2f} | ≤ 10 |")  # fmt: skip


if __name__ == "__main__":
    main()
