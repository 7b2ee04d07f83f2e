"""Write-path benchmark: ``issue API key`` commands and bare recorder saves against a bare INSERT of the
same row, on PostgreSQL (eventsourcing's recorder and ours) and SQLite, with 1 and 8 writer threads.

Each cell runs ``--seconds`` in a fresh schema (PostgreSQL: a throwaway database on the local server or
a throwaway cluster; SQLite: a temp var dir), after a short warm-up. The bare INSERT baseline is measured
in the same run twice per writer count (before and after that group's cells) and reported as the mean;
ratio = ops/s / bare INSERT/s at the same writer count. Prints a markdown table; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/append.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from eventsourcing.persistence import StoredEvent  # noqa: E402

from api.settings import Settings, load_settings  # noqa: E402
from api.stores import eventsourcing_env, key_store  # noqa: E402
from domain.adapters.credentials import bcrypt_hash  # noqa: E402
from domain.application import OwnLLM  # noqa: E402
from domain.context import Ctx  # noqa: E402
from domain.user import User  # noqa: E402
from projections.directory import Directory  # noqa: E402
from tests.support.postgres import create_schema, server_dsn, throwaway_database  # noqa: E402

WRITERS = (1, 8)
WARMUP_OPS = 20
LIBRARY = "eventsourcing.postgres:PostgresProcessRecorder"
OURS = "domain.adapters.postgres_recorder:OneTripPostgresProcessRecorder"
Op = Callable[[], object]


@dataclass
class Cell:
    """The latencies of one (store, recorder, operation, writers) run."""

    store: str
    recorder: str
    operation: str
    writers: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Operations per second, all writers together."""
        return len(self.latencies) / self.elapsed

    def pct(self, q: float) -> float:
        """The q-th percentile latency in ms."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


@dataclass(frozen=True)
class Row:
    """The shape of one stored event: what the bare INSERT writes too."""

    topic: str
    state_bytes: int


def run_cell(cell: Cell, make_op: Callable[[int], Op], seconds: float) -> Cell:
    """Run ``cell.writers`` threads, each calling its own op in a loop for ``seconds``."""
    ops = [make_op(n) for n in range(cell.writers)]
    barrier = threading.Barrier(cell.writers + 1)
    per_thread: list[list[float]] = [[] for _ in ops]
    errors: list[BaseException] = []

    def worker(op: Op, out: list[float]) -> None:
        try:
            for _ in range(WARMUP_OPS):
                op()
        except BaseException as exc:  # reported below, after the barrier
            errors.append(exc)
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while not errors and (start := time.perf_counter()) < deadline:
            try:
                op()
            except BaseException as exc:
                errors.append(exc)
            out.append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(op, out)) for op, out in zip(ops, per_thread, strict=True)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    cell.elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{cell.operation} on {cell.store} failed") from errors[0]
    cell.latencies = [value for out in per_thread for value in out]
    return cell


# ---------------------------------------------------------------- the application under test


def signed_up(app: OwnLLM, writers: int) -> list[tuple[Ctx, uuid.UUID]]:
    """One tenant (and its admin) per writer: each writer issues keys for its own admin."""
    contexts = []
    for n in range(writers):
        done = app.signup(slug=f"bench-{n}", name=f"Bench {n}", admin_name="Admin", admin_email=f"a{n}@example.com",
                          request_id=f"signup-{n}")  # fmt: skip
        contexts.append((Ctx(actor=f"user:{done.admin_user_id}", tenant_id=done.tenant_id, request_id="bench"),
                         done.admin_user_id))  # fmt: skip
    return contexts


def issue_key_ops(app: OwnLLM, writers: int) -> Callable[[int], Op]:
    """Writer n issues API keys for its own tenant's admin."""
    contexts = signed_up(app, writers)

    def make(n: int) -> Op:
        ctx, user_id = contexts[n]
        return lambda: app.issue_api_key(ctx, user_id=user_id, name="bench key", scopes=["inference"])

    return make


def save_ops(app: OwnLLM, row: Row) -> Callable[[int], Op]:
    """Writer n saves one stored event of the issued key's size straight through the recorder."""
    state = os.urandom(row.state_bytes)
    return lambda n: lambda: app.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, row.topic, state)])


def stored_row(app: OwnLLM) -> Row:
    """The topic and state size of the event an ``issue API key`` command stores."""
    issue_key_ops(app, 1)(0)()
    last = app.recorder.select_notifications(start=None, limit=1000)[-1]
    return Row(last.topic, len(last.state))


@contextlib.contextmanager
def own_llm(settings: Settings, recorder_topic: str | None = None) -> Iterator[OwnLLM]:
    """OwnLLM on the settings' store (as build_services wires it), optionally with another recorder."""
    env = eventsourcing_env(settings)
    if recorder_topic is not None:
        env["PROCESS_RECORDER_TOPIC"] = recorder_topic
    Path(settings.var_dir).mkdir(parents=True, exist_ok=True)
    keys = key_store(settings)
    app = OwnLLM(env, keys=keys, pepper=b"bench-pepper", hash_credential=bcrypt_hash, directory=Directory())
    try:
        yield app
    finally:
        app.close()
        keys.close()


# ---------------------------------------------------------------- bare baselines


def close_all(connections: list[Any]) -> None:
    """Close the baseline's connections."""
    for conn in connections:
        conn.close()


def bare_postgres_ops(dsn: str, row: Row, writers: int) -> tuple[Callable[[int], Op], Callable[[], None]]:
    """Writer n INSERTs a row of the same size on its own autocommit connection (one tx per row)."""
    schema = create_schema(dsn)
    table = f'"{schema}".bare'
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (originator_id uuid, originator_version bigint, topic text, state bytea, "
                     "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))")  # fmt: skip
        conn.execute(f"CREATE UNIQUE INDEX ON {table} (notification_id)")
    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(writers)]
    state = os.urandom(row.state_bytes)
    sql = f"INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)"

    def make(n: int) -> Op:
        conn = connections[n]
        return lambda: conn.execute(sql, (uuid.uuid4(), 1, row.topic, state))

    return make, lambda: close_all(connections)


def bare_sqlite_ops(path: str, row: Row, writers: int) -> tuple[Callable[[int], Op], Callable[[], None]]:
    """Writer n INSERTs a row of the same size (own connection, WAL like eventsourcing, one tx per row)."""
    connections = [sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
                   for _ in range(writers)]  # fmt: skip
    connections[0].execute("PRAGMA journal_mode=WAL")
    connections[0].execute("CREATE TABLE bare (originator_id text, originator_version integer, topic text, "
                           "state blob, notification_id integer PRIMARY KEY AUTOINCREMENT)")  # fmt: skip
    connections[0].execute("CREATE UNIQUE INDEX bare_key ON bare (originator_id, originator_version)")
    state = os.urandom(row.state_bytes)
    sql = "INSERT INTO bare (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)"

    def make(n: int) -> Op:
        conn = connections[n]
        return lambda: conn.execute(sql, (uuid.uuid4().hex, 1, row.topic, state))

    return make, lambda: close_all(connections)


# ---------------------------------------------------------------- the runs


def postgres_cells(dsn: str, var: Path, seconds: float) -> tuple[list[Cell], dict[int, float], Row, dict[str, float]]:
    """Bare INSERT, then per recorder: commands and saves; then bare INSERT again; for each writer count."""

    def settings() -> Settings:
        return load_settings({}, persistence="postgres", postgres_dsn=dsn, postgres_schema=create_schema(dsn),
                             var_dir=str(var), inference=False)  # fmt: skip

    with own_llm(settings()) as app:
        row = stored_row(app)
    breakdown = command_breakdown(settings(), seconds)
    cells: list[Cell] = []
    bare: dict[int, float] = {}
    for writers in WRITERS:
        rates = [bare_postgres(dsn, row, writers, seconds)]
        for operation in ("issue_api_key", "recorder.insert_events"):
            for label, topic in (("eventsourcing 9.5.6", LIBRARY), ("one-trip (ours)", OURS)):
                with own_llm(settings(), topic) as app:
                    ops = issue_key_ops(app, writers) if operation == "issue_api_key" else save_ops(app, row)
                    cells.append(run_cell(Cell("PostgreSQL", label, operation, writers), ops, seconds))
        rates.append(bare_postgres(dsn, row, writers, seconds))
        bare[writers] = statistics.mean(rates)
    return cells, bare, row, breakdown


def command_breakdown(settings: Settings, seconds: float) -> dict[str, float]:
    """Mean ms of each step of one ``issue API key`` command (one writer, our recorder), timed in sequence."""
    with own_llm(settings) as app:
        ctx, user_id = signed_up(app, 1)[0]
        steps: dict[str, list[float]] = {}
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            marks = [time.perf_counter()]
            tenant, user = app._load_with_tenant(User, user_id, ctx.tenant_id)
            tenant.check_active()
            marks.append(time.perf_counter())
            key, _ = app._new_api_key(ctx, user, "bench key", ["inference"], None)
            marks.append(time.perf_counter())
            pending = key.collect_events()
            stored = [app.mapper.to_stored_event(event) for event in pending]
            marks.append(time.perf_counter())
            app.recorder.insert_events(stored)
            marks.append(time.perf_counter())
            app.issue_api_key(ctx, user_id=user_id, name="bench key", scopes=["inference"])
            marks.append(time.perf_counter())
            for name, (start, end) in zip(BREAKDOWN_STEPS, itertools.pairwise(marks), strict=True):
                steps.setdefault(name, []).append(end - start)
    return {name: statistics.fmean(values) * 1000 for name, values in steps.items()}


WHOLE = "the whole issue_api_key, same loop (app.save adds its bookkeeping)"
BREAKDOWN_STEPS = (
    "load tenant and user (one select_events_of + decode + unseal)",
    "new ApiKey aggregate (HMAC, seal name)",
    "map to stored event (JSON, AES-GCM)",
    "recorder.insert_events (one trip: lock+notify+insert+commit)",
    WHOLE,
)


def bare_postgres(dsn: str, row: Row, writers: int, seconds: float) -> float:
    """One bare INSERT cell's rate."""
    make, close = bare_postgres_ops(dsn, row, writers)
    try:
        return run_cell(Cell("PostgreSQL", "-", "bare INSERT", writers), make, seconds).rate
    finally:
        close()


def sqlite_cells(var: Path, row: Row, seconds: float) -> tuple[list[Cell], dict[int, float]]:
    """The same on SQLite (eventsourcing's recorder: nothing to replace there)."""
    cells: list[Cell] = []
    bare: dict[int, float] = {}
    for writers in WRITERS:
        rates = [bare_sqlite(var, row, writers, seconds)]
        for operation in ("issue_api_key", "recorder.insert_events"):
            settings = load_settings({}, var_dir=str(var / uuid.uuid4().hex), inference=False)
            with own_llm(settings) as app:
                ops = issue_key_ops(app, writers) if operation == "issue_api_key" else save_ops(app, row)
                cells.append(run_cell(Cell("SQLite", "eventsourcing 9.5.6", operation, writers), ops, seconds))
        rates.append(bare_sqlite(var, row, writers, seconds))
        bare[writers] = statistics.mean(rates)
    return cells, bare


def bare_sqlite(var: Path, row: Row, writers: int, seconds: float) -> float:
    """One bare sqlite3 INSERT cell's rate, in a fresh file."""
    var.mkdir(parents=True, exist_ok=True)
    make, close = bare_sqlite_ops(str(var / f"bare-{uuid.uuid4().hex}.sqlite"), row, writers)
    try:
        return run_cell(Cell("SQLite", "-", "bare INSERT", writers), make, seconds).rate
    finally:
        close()


def print_table(cells: list[Cell], bare: dict[tuple[str, int], float], row: Row, server: str) -> None:
    """The markdown table and the targets."""
    print(f"\nappend path, {os.cpu_count()} cores, PostgreSQL {server}, stored event: topic {len(row.topic)} B + "
          f"state {row.state_bytes} B, writers are threads of one process\n")  # fmt: skip
    print("| store | recorder | operation | writers | ops/s | per writer | p50 ms | p99 ms | bare INSERT/s | ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for store, writers in bare:
        base = bare[(store, writers)]
        print(f"| {store} | - | bare INSERT (1 row, 1 tx) | {writers} | {base:,.0f} | {base / writers:,.0f} "
              f"| | | {base:,.0f} | 1.00x |")  # fmt: skip
        for cell in (c for c in cells if c.store == store and c.writers == writers):
            print(f"| {store} | {cell.recorder} | {cell.operation} | {writers} | {cell.rate:,.0f} "
                  f"| {cell.rate / writers:,.0f} | {cell.pct(50):.2f} | {cell.pct(99):.2f} | {base:,.0f} "
                  f"| {cell.rate / base:.2f}x |")  # fmt: skip
    print("\nbare INSERT/s = mean of two bare runs (before and after the group); ratio = ops/s ÷ bare INSERT/s")
    print("targets (PostgreSQL, issue_api_key): ≥ 1,000/s per writer, p99 ≤ 10 ms, ratio ≥ 0.5x")
    for cell in cells:
        if cell.store == "PostgreSQL" and cell.operation == "issue_api_key" and cell.recorder.startswith("one"):
            base = bare[("PostgreSQL", cell.writers)]
            per_writer = cell.rate / cell.writers
            verdict = [
                f"{per_writer:,.0f}/s per writer {'ok' if per_writer >= 1000 else 'MISSED'}",
                f"p99 {cell.pct(99):.2f} ms {'ok' if cell.pct(99) <= 10 else 'MISSED'}",
                f"ratio {cell.rate / base:.2f}x {'ok' if cell.rate / base >= 0.5 else 'MISSED'}",
            ]
            print(f"- {cell.writers} writer(s): " + "; ".join(verdict))
    print("issue_api_key is two round trips (read tenant and user in one query, then the one-trip save);")
    print("the bare INSERT is one, so the ratio's ceiling is about 0.5x before any Python runs.")


def print_breakdown(breakdown: dict[str, float]) -> None:
    """Where one command's time goes (PostgreSQL, our recorder, one writer)."""
    whole = breakdown.pop(WHOLE)
    total = sum(breakdown.values())
    print("\nwhere one issue_api_key goes (PostgreSQL, one-trip recorder, 1 writer, steps timed in sequence)\n")
    print("| step | mean ms | share |")
    print("| --- | ---: | ---: |")
    for name, mean_ms in breakdown.items():
        print(f"| {name} | {mean_ms:.3f} | {mean_ms / total:.0%} |")
    print(f"| sum of the steps | {total:.3f} | 100% |")
    print(f"| {WHOLE} | {whole:.3f} | {whole / total:.0%} |")


def server_version(dsn: str) -> str:
    """The server's version string, short."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return f"{found[0] if found else '?'} (synchronous_commit={sync[0] if sync else '?'})"


def main() -> None:
    """Parse arguments, run every cell in throwaway stores, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per cell")
    args = parser.parse_args()
    with server_dsn() as server, throwaway_database(server) as dsn, tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        pg_cells, pg_bare, row, breakdown = postgres_cells(dsn, var / "pg", args.seconds)
        lite_cells, lite_bare = sqlite_cells(var / "sqlite", row, args.seconds)
        bare = {("PostgreSQL", w): r for w, r in pg_bare.items()} | {("SQLite", w): r for w, r in lite_bare.items()}
        print_table(pg_cells + lite_cells, bare, row, server_version(dsn))
        print_breakdown(breakdown)


if __name__ == "__main__":
    main()
