"""Start-up benchmark: how long ``build_services(settings)`` (what ``ownllm serve`` does before it serves)
takes against a store of ``--usage-events`` usage records (default 10M) and ``--tenants`` tenants, on
SQLite and PostgreSQL, against the old full-decode read measured in the same run.

The store is filled like a long-running installation's: the tenancy through the application's own
commands (per tenant: signup, two invites accepted, one more key, one key revoked: about 14 events,
three users), in two halves with half of the usage between them and half after. Usage rows are
bulk-inserted with raw SQL (PostgreSQL COPY, SQLite ``executemany`` in one transaction) as real
encoded events: ``--templates`` ``UsageRecord.Recorded`` events encoded by the application's mapper,
cycled with fresh originator ids. The usage view's tracking record is then set to the head (it has
"processed" the traffic: a restart, not a new view), PostgreSQL's table is vacuumed and analyzed
(what autovacuum does), and the topic index is dropped so that the first start is the upgrade.

Each start runs in a fresh Python process (``build_services`` timed alone, imports excluded; the
operating system's page cache is warm from the fill): first the upgrade start, which builds the
topic index, then ``--restarts`` starts with the index present (the median is reported). The
baseline is the old runner's read, every notification decoded and folded into a Directory, timed
over the first ``--slice`` events of the same log and extrapolated to all of it. Prints a markdown
table and the query plans of the directory's read at this size; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/startup.py [--usage-events 10000000] [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from eventsourcing.persistence import StoredEvent, Tracking  # noqa: E402
from eventsourcing.postgres import PostgresApplicationRecorder  # noqa: E402
from psycopg.sql import SQL, Identifier, Literal  # noqa: E402

from api.services import Services, build_services  # noqa: E402
from api.settings import Settings, load_settings  # noqa: E402
from api.stores import eventsourcing_env, key_store, pepper  # noqa: E402
from domain.adapters.credentials import bcrypt_hash  # noqa: E402
from domain.application import OwnLLM  # noqa: E402
from domain.context import SYSTEM, Ctx  # noqa: E402
from domain.usage import UsageRecord  # noqa: E402
from projections.directory import Directory  # noqa: E402
from projections.log import SQLITE_INDEX, NotificationLog, postgres_index_name, postgres_query, sqlite_query  # noqa: E402
from projections.usage_view import TRACKING_NAME  # noqa: E402
from tests.support.postgres import create_schema, server_dsn, throwaway_database  # noqa: E402

TARGET_S = 5.0
MODELS = ("llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "smollm2-135m")
STATUSES = ("ok",) * 17 + ("error", "cancelled", "timeout")


# -- filling the store ---------------------------------------------------------------------------


def add_tenants(app: OwnLLM, first: int, count: int) -> list[tuple[Any, list[Any], list[Any]]]:
    """``count`` tenants through the real commands; returns (tenant id, user ids, key ids) per tenant."""
    made = []
    for n in range(first, first + count):
        slug = f"tenant-{n:05d}"
        signed = app.signup(slug=slug, name=f"Tenant {n}", admin_name=f"Admin {n}",
                            admin_email=f"admin@{slug}.example", request_id=f"b-{n}")  # fmt: skip
        ctx = Ctx(actor=SYSTEM, tenant_id=signed.tenant_id, request_id=f"b-{n}")
        users, keys = [signed.admin_user_id], [signed.admin_key.id]
        for member in range(2):
            invite = app.invite_user(ctx, email=f"user{member}@{slug}.example", role="member")
            joined = app.accept_invite(token=invite.secret, name=f"User {member}", request_id=f"b-{n}-{member}")
            users.append(joined.user_id)
            keys.append(joined.api_key.id)
        extra = app.issue_api_key(ctx, user_id=signed.admin_user_id, name="ci", scopes=["inference"])
        app.revoke_api_key(ctx, extra.id, "rotated")
        made.append((signed.tenant_id, users, keys))
    return made


def usage_templates(app: OwnLLM, tenancy: list[tuple[Any, list[Any], list[Any]]], count: int) -> list[StoredEvent]:
    """Real usage events of real tenants, encoded by the application's mapper."""
    templates = []
    for n in range(count):
        tenant_id, users, keys = tenancy[(n * 7919) % len(tenancy)]
        record = UsageRecord(
            id=uuid.uuid4(), tenant_id=tenant_id, user_id=users[n % len(users)], key_id=keys[n % len(keys)],
            agent_id=uuid.uuid4(), model=MODELS[n % len(MODELS)], endpoint="/v1/chat/completions",
            stream=bool(n % 2), status=STATUSES[n % len(STATUSES)], prompt_tokens=200 + n * 37 % 3000,
            completion_tokens=50 + n * 13 % 800, ttft_ms=80 + n % 400, duration_ms=900 + n * 11 % 9000,
            actor=f"key:{keys[n % len(keys)]}", request_id=f"req-{uuid.uuid4().hex}",
        )  # fmt: skip
        templates.append(app.mapper.to_stored_event(record.collect_events()[0]))
    return templates


def bulk_usage(services: Services, templates: list[StoredEvent], count: int) -> None:
    """``count`` usage rows straight into the events table (not through the application's save)."""
    recorder = services.app.recorder
    table = recorder.events_table_name  # type: ignore[attr-defined]
    rows = ((uuid.uuid4(), 1, templates[n % len(templates)]) for n in range(count))
    if isinstance(recorder, PostgresApplicationRecorder):
        copy_sql = SQL("COPY {}.{} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)")
        target = copy_sql.format(Identifier(services.settings.postgres_schema), Identifier(table))
        with psycopg.connect(services.settings.postgres_dsn) as conn, conn.cursor() as curs, curs.copy(target) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for originator_id, version, template in rows:
                copy.write_row((originator_id, version, template.topic, template.state))
        return
    db = sqlite3.connect(services.settings.sqlite_file)
    try:
        with db:
            db.executemany(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                ((i.hex, v, t.topic, t.state) for i, v, t in rows),
            )
    finally:
        db.close()


def drop_topic_index(services: Services) -> None:
    recorder = services.app.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        with psycopg.connect(services.settings.postgres_dsn, autocommit=True) as conn:
            index = Identifier(services.settings.postgres_schema, postgres_index_name(recorder))
            conn.execute(SQL("DROP INDEX IF EXISTS {}").format(index))
    else:
        with recorder.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            c.execute(f"DROP INDEX IF EXISTS {SQLITE_INDEX}")


def fill(settings: Settings, tenants: int, usage: int, templates: int) -> dict[str, Any]:
    """Fill the store (see the module docstring); returns what is in it and how long it took."""
    started = time.perf_counter()
    services = build_services(msgspec_replace(settings, run_projections=False), start_runner=False)
    try:
        drop_topic_index(services)  # created at build on the empty table; the load goes faster without it
        app = services.app
        halves = (tenants // 2, tenants - tenants // 2)
        tenancy = add_tenants(app, 0, halves[0])
        encoded = usage_templates(app, tenancy, templates)
        print(f"  {halves[0]} tenants, then {usage // 2:,} usage rows ...", flush=True)
        bulk_usage(services, encoded, usage // 2)
        tenancy += add_tenants(app, halves[0], halves[1])
        print(f"  {halves[1]} tenants, then {usage - usage // 2:,} usage rows ...", flush=True)
        bulk_usage(services, encoded, usage - usage // 2)
        head = NotificationLog(app.recorder).head()
        services.usage.view.apply(services.usage.position, Tracking(TRACKING_NAME, head), [])  # a restart
        drop_topic_index(services)
        if isinstance(app.recorder, PostgresApplicationRecorder):
            print("  VACUUM ANALYZE ...", flush=True)
            with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
                conn.execute(
                    SQL("VACUUM (ANALYZE) {}").format(
                        Identifier(settings.postgres_schema, app.recorder.events_table_name)
                    )
                )
    finally:
        services.close()
    return {"head": head, "usage": usage, "tenancy": head - usage, "seconds": time.perf_counter() - started}


def msgspec_replace(settings: Settings, **changes: Any) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


# -- measuring, each in a fresh process ------------------------------------------------------------


def child(kind: str, settings: Settings, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``kind`` in a fresh interpreter; returns its JSON answer."""
    payload = json.dumps({"kind": kind, "settings": _settings_fields(settings), **(extra or {})})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, "--child", payload], capture_output=True, text=True, env=env,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _settings_fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}


def run_child(payload: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings({}, **payload["settings"])
    if payload["kind"] == "start":
        return measure_start(settings)
    if payload["kind"] == "full-decode":
        return measure_full_decode(settings, payload["slice"])
    raise ValueError(payload["kind"])


def measure_start(settings: Settings) -> dict[str, Any]:
    """``build_services(settings)`` as ``ownllm serve`` calls it, with its decodes counted by topic."""
    from domain.sealing import SealingMapper

    decoded: Counter[str] = Counter()
    decode = SealingMapper.to_domain_event

    def counting(self: SealingMapper, stored: Any) -> Any:
        decoded[stored.topic] += 1
        return decode(self, stored)

    index_s = [0.0]
    create_index = NotificationLog._create_index

    def timed_index(self: NotificationLog) -> None:
        started = time.perf_counter()
        create_index(self)
        index_s[0] += time.perf_counter() - started

    SealingMapper.to_domain_event = counting  # type: ignore[method-assign,assignment]
    NotificationLog._create_index = timed_index  # type: ignore[method-assign]
    started = time.perf_counter()
    services = build_services(settings)
    elapsed = time.perf_counter() - started
    try:
        directory = services.directory
        usage_topic = "domain.usage:UsageRecord.Recorded"
        return {
            "seconds": elapsed,
            "index_s": index_s[0],
            "decoded_usage": decoded[usage_topic],
            "decoded_other": sum(decoded.values()) - decoded[usage_topic],
            "tenants": len(directory.tenants),
            "users": len(directory.users),
            "keys": len(directory.keys),
            "position": services.runner.position,
        }
    finally:
        services.close()


def measure_full_decode(settings: Settings, slice_: int) -> dict[str, Any]:
    """The old runner's read: every notification from the start, decoded and folded into a Directory."""
    app = OwnLLM(
        eventsourcing_env(settings), keys=key_store(settings), pepper=pepper(settings), hash_credential=bcrypt_hash
    )
    directory = Directory()
    head = app.recorder.max_notification_id() or 0
    position = read = 0
    started = time.perf_counter()
    while read < slice_:
        batch = app.recorder.select_notifications(position + 1, 1000)
        if not batch:
            break
        for notification in batch:
            directory.process(app.mapper.to_domain_event(notification))
        position = batch[-1].id
        read += len(batch)
    elapsed = time.perf_counter() - started
    app.close()
    return {"read": read, "seconds": elapsed, "head": head}


# -- plans ---------------------------------------------------------------------------------------------


def plans(settings: Settings) -> str:
    """The directory's first read and a usage read, as the database plans them at this size."""
    services = build_services(msgspec_replace(settings, run_projections=False), start_runner=False)
    recorder = services.app.recorder
    try:
        out = []
        usage = ["domain.usage:UsageRecord.Recorded"]
        head = NotificationLog(recorder).head()
        if isinstance(recorder, PostgresApplicationRecorder):
            with psycopg.connect(settings.postgres_dsn) as conn:
                conn.execute("SET plan_cache_mode = force_generic_plan")
                text = postgres_query(recorder, 1000).as_string(conn)
                for n, name in enumerate(("topics", "after", "stop"), start=1):
                    text = text.replace(f"%({name})s", f"${n}")
                conn.execute(f"PREPARE by_topic(text[], bigint, bigint) AS {text}")
                for label, topics, after in (("directory, from 0", list(Directory.topics), 0),
                                             ("usage, from the middle", usage, head // 2)):  # fmt: skip
                    rows = conn.execute(
                        SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE by_topic({}, {}, {})").format(
                            Literal(topics), Literal(after), Literal(head)
                        )
                    ).fetchall()
                    out.append(f"PostgreSQL, {label} (generic plan):\n" + "\n".join(r[0] for r in rows))
        else:
            with recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
                for label, topics in (("directory", list(Directory.topics)), ("usage", usage)):
                    params: list[Any] = []
                    for topic in topics:
                        params += [topic, 0, head, 1000]
                    c.execute("EXPLAIN QUERY PLAN " + sqlite_query(recorder.events_table_name, len(topics)),  # type: ignore[attr-defined]
                              [*params, 1000])  # fmt: skip
                    steps = Counter(row[3] for row in c.fetchall() if recorder.events_table_name in row[3])  # type: ignore[attr-defined]
                    out.append(f"SQLite, {label} (steps that touch the table):\n"
                               + "\n".join(f"  {n} x {step}" for step, n in sorted(steps.items())))  # fmt: skip
        return sizes(services) + "\n\n" + "\n\n".join(out)
    finally:
        services.close()


def sizes(services: Services) -> str:
    """What the topic index costs on disk, next to the events table."""
    recorder = services.app.recorder
    table = recorder.events_table_name  # type: ignore[attr-defined]
    if isinstance(recorder, PostgresApplicationRecorder):
        with psycopg.connect(services.settings.postgres_dsn) as conn:
            schema = services.settings.postgres_schema
            row = conn.execute(
                "SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
                (f'"{schema}"."{table}"', f'"{schema}"."{postgres_index_name(recorder)}"'),
            ).fetchone()
            assert row is not None
            total, index = int(row[0]), int(row[1])
        label = "PostgreSQL events table with its indexes"
    else:
        with recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            by_name = {row[0]: int(row[1]) for row in c.fetchall()}
        total, index = sum(by_name.values()), by_name.get(SQLITE_INDEX, 0)
        label = "SQLite file"
    return f"{label}: {total / 2**30:.2f} GiB, of which the topic index {index / 2**30:.2f} GiB"


# -- stores and the table --------------------------------------------------------------------------


@contextlib.contextmanager
def store(kind: str, base: str | None) -> Iterator[Settings]:
    if kind == "sqlite":
        var_dir = tempfile.mkdtemp(prefix="ownllm-startup-", dir=base)
        try:
            yield load_settings({}, var_dir=var_dir, inference=False)
        finally:
            shutil.rmtree(var_dir, ignore_errors=True)
        return
    var_dir = tempfile.mkdtemp(prefix="ownllm-startup-", dir=base)  # the pepper and the subject keys' table
    try:
        with server_dsn() as server, throwaway_database(server) as dsn:
            yield load_settings({}, persistence="postgres", postgres_dsn=dsn, postgres_schema=create_schema(dsn),
                                var_dir=var_dir, inference=False)  # fmt: skip
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


@contextlib.contextmanager
def kept_store(kind: str, name: str, drop: bool) -> Iterator[Settings]:
    """A store kept between runs under ``name`` (built by the first), removed afterwards when ``drop``."""
    var_dir = Path(tempfile.gettempdir()) / f"ownllm-bench-{name}-{kind}"
    var_dir.mkdir(exist_ok=True)
    database = f"ownllm_bench_{name}"
    server = os.environ.get("OWNLLM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    dsn = server.rsplit("/", 1)[0] + f"/{database}"
    if kind == "postgres":
        with psycopg.connect(server, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                conn.execute(SQL("CREATE DATABASE {}").format(Identifier(database)))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        settings = load_settings({}, persistence="postgres", postgres_dsn=dsn, postgres_schema="bench",
                                 var_dir=str(var_dir), inference=False)  # fmt: skip
    else:
        settings = load_settings({}, var_dir=str(var_dir), inference=False)
    try:
        yield settings
    finally:
        if drop:
            if kind == "postgres":
                with psycopg.connect(server, autocommit=True) as conn:
                    conn.execute(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(database)))
            shutil.rmtree(var_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--usage-events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--templates", type=int, default=256, help="distinct encoded usage events to cycle")
    parser.add_argument("--slice", type=int, default=200_000, help="events of the old full-decode read, timed")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--dir", default=None, help="where the SQLite store and var dirs go (default: the temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    results, plan_texts = [], []
    for kind in args.stores.split(","):
        with store(kind, args.dir) as settings:
            print(f"{kind}: filling {args.tenants} tenants and {args.usage_events:,} usage events ...", flush=True)
            filled = fill(settings, args.tenants, args.usage_events, args.templates)
            print(f"  filled in {filled['seconds']:.0f} s; first start (builds the topic index) ...", flush=True)
            first = child("start", settings)
            starts = [child("start", settings) for _ in range(args.restarts)]
            print("  old full-decode read ...", flush=True)
            old = child("full-decode", settings, {"slice": args.slice})
            plan_texts.append(plans(settings))
            results.append((kind, filled, first, starts, old))
    print()
    print(table(results, args.slice))
    print()
    print("Query plans of the read by topic at this size:\n")
    print("\n\n".join(plan_texts))


def table(results: list[Any], slice_: int) -> str:
    lines = [
        "| store | events in the log (usage + tenancy) | start-up, `build_services` (median of restarts) "
        f"| target ≤ {TARGET_S:.0f} s | events decoded at start (usage / tenancy) | directory (tenants / users / keys) "
        "| first start after the upgrade (of which topic index build) "
        f"| old full-decode read (timed over {slice_:,} events, **extrapolated** to the log) | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, filled, first, starts, old in results:
        median = statistics.median(s["seconds"] for s in starts)
        last = starts[-1]
        per_event = old["seconds"] / max(1, old["read"])
        extrapolated = per_event * old["head"]
        each = ", ".join(f"{s['seconds']:.2f}" for s in starts)
        lines.append(
            f"| {kind} | {filled['head']:,} ({filled['usage']:,} + {filled['tenancy']:,}) "
            f"| {median:.2f} s ({each}) "
            f"| {'met' if median <= TARGET_S else 'MISSED'} "
            f"| {last['decoded_usage']:,} / {last['decoded_other']:,} "
            f"| {last['tenants']:,} / {last['users']:,} / {last['keys']:,} "
            f"| {first['seconds']:.1f} s ({first['index_s']:.1f} s) "
            f"| {extrapolated:.0f} s = {extrapolated / 60:.1f} min ({per_event * 1e6:.0f} µs/event) "
            f"| {extrapolated / median:,.0f} times |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
