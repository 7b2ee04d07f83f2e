"""Integrity ledger benchmark on PostgreSQL and SQLite: append through the real tracked model, proofs, verification.

Per store, in the same run as the baseline (hashlib's SHA-256 of each leaf):

- append: the ledger (``projections.integrity.ledger.Ledger`` over the store's ``LedgerTables``,
  exactly as ``build_services`` wires it) fed batches of ``--batch`` records (default: the runner's
  ``TRACKED_BATCH``, what it hands over while catching up) of ``--size`` random bytes spread over 100
  tenants (its read and decode excluded), and, as the baseline of the same run, batches of 1,000
  (what it handed over before). Each batch is one transaction: tile rows of both trees, leaf rows,
  checkpoints (every ``checkpoint_every_events``, and every ``checkpoint_every_s``), position.
- append with the runner's read and decode: ``--events`` real encoded events bulk-inserted into the
  event store (tenants through the application's commands, then usage records), and
  ``ownllm projections rebuild integrity`` timed (read, decode, append), next to the bare read and
  decode of the same log.
- full verification: the appended log verified in one pass against its signed checkpoints.
- inclusion proofs from the database at ``--leaves`` and at ``--proof-leaves`` (a tree of that size
  hashed in memory a level at a time and written straight into the tile table, its fill time
  reported): p50/p99 over ``--samples`` random leaves in one read transaction, with the LRU of full
  tiles, with it off (every tile fetched), and, as the same run's baseline, with the full tiles'
  stored inner rows ignored (hashed per read, as before they were stored); a bare round trip; 200
  proofs of each checked against the writer's root.

Prints a markdown table; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/audit.py [--leaves 1000000] [--proof-leaves 10000000] [--stores postgres,sqlite]
        [--parts append,reads,proofs] [--samples 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.services import Services, build_services
from api.settings import Settings
from bench.audit_log import bare_read
from bench.startup import add_tenants, bulk_usage, msgspec_replace, store, usage_templates
from projections.integrity.checkpoints import open_checkpoint
from projections.integrity.ledger import Ledger
from projections.integrity.ledger_rows import GLOBAL
from projections.integrity.merkle import MerkleTree, leaf_hash
from projections.integrity.proofs import verify_inclusion
from projections.integrity.tiles import TILE_BYTES, TileCache, TileStore
from projections.integrity.verify import verify_full_log
from projections.rebuild import rebuild
from projections.runner import TRACKED_BATCH

BIG_TREE = "bench-proofs"  # the tree written straight into the tile table for proofs at --proof-leaves


@dataclass(frozen=True)
class Event:
    tenant_id: uuid.UUID
    timestamp: datetime


@dataclass(frozen=True)
class Record:
    notification_id: int
    state: bytes
    event: Any


def p50_p99(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms"


def timed(calls: list[Any]) -> list[float]:
    out = []
    for call in calls:
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def ledger_of(services: Services) -> Ledger:
    assert services.ledger is not None and services.ledger.signer is not None
    return services.ledger


def append(
    settings: Settings, states: list[bytes], rows: list[tuple[str, str]], kind: str, raw: float, batch: int
) -> None:
    """Fake records through the real ledger; then full verification and proofs at that size."""
    n = len(states)
    tenants = [uuid.uuid4() for _ in range(100)]
    now = datetime.now(UTC)
    records = [Record(i + 1, states[i], Event(tenants[i % 100], now)) for i in range(n)]
    services = build_services(settings, start_runner=False)
    try:
        ledger = ledger_of(services)
        start = time.perf_counter()
        for at in range(0, n, batch):
            part = records[at : at + batch]
            ledger.process_records(part, part[-1].notification_id)
        rate = n / (time.perf_counter() - start)
        rows.append((f"{kind}: ledger append, real tracked model (both trees, leaf map, checkpoints), {n:,} leaves, "
                     f"batches of {batch:,}",
                     f"{rate:,.0f} leaves/s ({rate / raw:.3f} x raw hash)"))  # fmt: skip
        with ledger.tables.reading() as snapshot:
            notes = [r.note for r in snapshot.checkpoints(GLOBAL)]
        checkpoints = [open_checkpoint(note, [ledger.signer.verifier])[0] for note in notes]  # type: ignore[union-attr]
        start = time.perf_counter()
        read, problems = verify_full_log(states, checkpoints)
        full = read / (time.perf_counter() - start)
        assert not problems
        rows.append((f"{kind}: full verification against {len(checkpoints):,} signed checkpoints (one pass)",
                     f"{full:,.0f} events/s ({full / raw:.2f} x raw hash)"))  # fmt: skip
        proofs(ledger, GLOBAL, n, rows, kind)
    finally:
        services.close()


def proofs(
    ledger: Ledger, tree: str, n: int, rows: list[tuple[str, str]], kind: str, samples: int = 2000,
    root: bytes | None = None, leaf: Any = None,
) -> None:  # fmt: skip
    """Inclusion proofs of random leaves from the tile table: with the full-tile LRU, without, and as
    tiles stored without their inner rows read (those rows hashed again per tile: the baseline of the
    same run, same rows and query), next to a bare round trip; a sample checked against ``root``."""
    rng = random.Random(1)
    tables: Any = ledger.tables
    indexes = [rng.randrange(n) for _ in range(samples)]
    bottom_only = lambda fetch: lambda keys: {k: v[:TILE_BYTES] for k, v in fetch(keys).items()}  # noqa: E731
    runs = (
        ("LRU of full tiles", tables.tile_cache, None),
        ("no cache", TileCache(0), None),
        ("baseline: LRU, tiles read without their inner rows (hashed per read)", TileCache(), bottom_only),
    )
    for label, cache, wrap in runs:  # fmt: skip
        saved, tables.tile_cache = tables.tile_cache, cache
        try:
            with ledger.tables.reading() as snapshot:
                merkle = snapshot.tree(tree)
                if wrap is not None:
                    store: Any = merkle.store
                    store._fetch = wrap(store._fetch)
                assert merkle.size == n
                took = timed([lambda i=i, m=merkle: m.inclusion_proof(i, n) for i in indexes])
                if root is not None and leaf is not None:
                    for i in indexes[:200]:
                        verify_inclusion(i, n, leaf(i), merkle.inclusion_proof(i, n), root)
        finally:
            tables.tile_cache = saved
        rows.append((f"{kind}: inclusion proof from the tile table at {n:,} leaves ({label}), {samples:,} random "
                     "leaves", p50_p99(took)))  # fmt: skip
    with ledger.tables.reading() as snapshot:
        cursor: Any = snapshot._cursor
        took = timed([lambda: (cursor.execute("SELECT 1"), cursor.fetchall()) for _ in indexes])
    rows.append((f"{kind}: baseline: a bare SELECT 1 round trip in the same transaction", p50_p99(took)))
    if root is not None:
        rows.append((f"{kind}: proofs checked against the writer's root (verify_inclusion)", "200 of each, all valid"))


def big_tree(ledger: Ledger, n: int) -> tuple[float, bytes, Any]:
    """A tree of ``n`` leaves written straight into the tile table: hashed in memory a level at a time
    (``extend_hashes``, the same tree as one leaf at a time: tests/projections/test_fast_paths.py),
    upserted 1M leaves at a time; the seconds, its root, and the leaf hash of an index."""
    start = time.perf_counter()
    store = TileStore(0)
    merkle = MerkleTree(store)
    seed = os.urandom(32)
    position = ledger.tables.position()
    for at in range(0, n, 1_000_000):
        merkle.extend_hashes([leaf_hash(seed + i.to_bytes(8, "big")) for i in range(at, min(n, at + 1_000_000))])
        ledger.tables.apply(position, position, [(BIG_TREE, *t) for t in store.take_dirty()], (), ())
    return time.perf_counter() - start, merkle.root(), lambda i: leaf_hash(seed + i.to_bytes(8, "big"))


def with_reads(settings: Settings, events: int, rows: list[tuple[str, str]], kind: str) -> None:
    """Real events in the store; the bare read + decode, and the ledger's rebuild (read, decode, append)."""
    services = build_services(settings, start_runner=False)
    try:
        tenancy = add_tenants(services.app, 0, 20)
        bulk_usage(services, usage_templates(services.app, tenancy, 500), events)
        log, decode = services.runner.log, services.app.mapper.to_domain_event
        count, bare = log.head(), bare_read(services)
        start = time.perf_counter()
        replayed, _ = rebuild(ledger_of(services), log, decode)
        rate = replayed / (time.perf_counter() - start)
        rows.append((f"{kind}: baseline: the runner's bare read + decode of {count:,} real events",
                     f"{bare:,.0f} events/s"))  # fmt: skip
        rows.append((f"{kind}: ledger rebuild with the runner's read + decode (`projections rebuild integrity`)",
                     f"{rate:,.0f} leaves/s"))  # fmt: skip
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proof-leaves", type=int, default=10_000_000)
    parser.add_argument("--events", type=int, default=200_000, help="real events for the read + decode figure")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=TRACKED_BATCH, help="records per ledger batch (the runner's)")
    parser.add_argument("--stores", default="postgres,sqlite")
    parser.add_argument("--samples", type=int, default=10_000, help="random leaves per inclusion-proof figure")
    parser.add_argument("--parts", default="append,reads,proofs", help="what to measure (comma-separated)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    n = args.leaves
    blob = os.urandom(n + args.size)
    states = [blob[i : i + args.size] for i in range(n)]
    rows: list[tuple[str, str]] = []

    start = time.perf_counter()
    for s in states:
        hashlib.sha256(b"\x00" + s).digest()
    raw = n / (time.perf_counter() - start)
    rows.append((f"baseline: hashlib SHA-256 of each leaf ({args.size} B)", f"{raw:,.0f} leaves/s"))

    for kind in args.stores.split(","):
        if "append" in parts:
            with store(kind, None) as settings:
                print(f"{kind}: append {n:,} ...", flush=True)
                append(msgspec_replace(settings, run_projections=False), states, rows, kind, raw, 1000)  # baseline
            with store(kind, None) as settings:
                print(f"{kind}: append {n:,} in batches of {args.batch:,} ...", flush=True)
                append(msgspec_replace(settings, run_projections=False), states, rows, kind, raw, args.batch)
        with store(kind, None) as settings:
            settings = msgspec_replace(settings, run_projections=False)
            if "reads" in parts:
                print(f"{kind}: read + decode + append {args.events:,} ...", flush=True)
                with_reads(settings, args.events, rows, kind)
            if args.proof_leaves and "proofs" in parts:
                print(f"{kind}: filling a tree of {args.proof_leaves:,} leaves ...", flush=True)
                services = build_services(settings, start_runner=False)
                try:
                    took, root, leaf = big_tree(ledger_of(services), args.proof_leaves)
                    rows.append((f"{kind}: fill of a {args.proof_leaves:,}-leaf tree straight into tiles (bulk)",
                                 f"{took:.0f} s"))  # fmt: skip
                    proofs(ledger_of(services), BIG_TREE, args.proof_leaves, rows, kind, args.samples, root, leaf)
                finally:
                    services.close()

    print(f"\nIntegrity ledger, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| measure | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
