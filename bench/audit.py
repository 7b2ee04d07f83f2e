"""Integrity ledger benchmark on PostgreSQL: append through the real tracked model, full verification, proofs.

The ledger (``projections.integrity.ledger.Ledger`` over ``PostgresLedgerTables``, exactly as
``build_services`` wires it) is fed batches of 1,000 stored records of ``--size`` random bytes spread
over 100 tenants, as the runner feeds it (the runner's own read and decode of the log are not
included: FACTS.md measured that at about 60,000 events/s). Each batch is one transaction: node rows
of both trees and leaf rows by COPY, checkpoints every 1,000 leaves, the tracking position. Baseline
in the same run: hashlib's SHA-256 of the same leaves. Then: the whole log verified in one pass
against the signed checkpoints; inclusion proofs generated from the PostgreSQL node table at the size
reached, and in memory at ``--memory-leaves``. Prints a markdown table; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/audit.py [--leaves 200000] [--memory-leaves 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.services import build_services
from api.settings import load_settings
from projections.integrity.ledger import GLOBAL
from projections.integrity.merkle import MerkleTree
from projections.integrity.notes import open_checkpoint
from projections.integrity.verify import verify_full_log
from tests.support.postgres import create_schema, server_dsn, throwaway_database


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
    return f"p50 {cuts[49] * 1e6:.0f} µs, p99 {cuts[98] * 1e6:.0f} µs"


def timed(calls: list[Any]) -> list[float]:
    out = []
    for call in calls:
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--memory-leaves", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2_000)
    args = parser.parse_args()
    n, rng = args.leaves, random.Random(1)
    blob = os.urandom(n + args.size)
    states = [blob[i : i + args.size] for i in range(n)]
    tenants = [uuid.uuid4() for _ in range(100)]
    now = datetime.now(UTC)
    records = [Record(i + 1, states[i], Event(tenants[i % 100], now)) for i in range(n)]
    rows: list[tuple[str, str]] = []

    start = time.perf_counter()
    for s in states:
        hashlib.sha256(b"\x00" + s).digest()
    raw = n / (time.perf_counter() - start)
    rows.append((f"baseline: hashlib SHA-256 of each leaf ({args.size} B)", f"{raw:,.0f} leaves/s"))

    with server_dsn() as server, throwaway_database(server) as dsn, tempfile.TemporaryDirectory() as var:
        settings = load_settings(
            {}, persistence="postgres", postgres_dsn=dsn, postgres_schema=create_schema(dsn), var_dir=var,
            inference=False, run_projections=False,
        )  # fmt: skip
        services = build_services(settings, start_runner=False)
        ledger = services.ledger
        assert ledger is not None and ledger.signer is not None
        start = time.perf_counter()
        for at in range(0, n, 1000):
            batch = records[at : at + 1000]
            ledger.process_records(batch, batch[-1].notification_id)
        append = n / (time.perf_counter() - start)
        rows.append(
            ("ledger append, real tracked model on PostgreSQL (global + tenant trees, leaf map, checkpoints)",
             f"{append:,.0f} leaves/s ({append / raw:.3f} x raw hash)")
        )  # fmt: skip
        with ledger.tables.reading() as snapshot:
            notes = [r.note for r in snapshot.checkpoints(GLOBAL)]
            tree = snapshot.tree(GLOBAL)
            indexes = [rng.randrange(n) for _ in range(args.samples)]
            proofs = timed([lambda i=i: tree.inclusion_proof(i, n) for i in indexes])
            rows.append((f"inclusion proof from the PostgreSQL node table at {n:,} leaves", p50_p99(proofs)))
        checkpoints = [open_checkpoint(note, [ledger.signer.verifier])[0] for note in notes]
        start = time.perf_counter()
        read, problems = verify_full_log(states, checkpoints)
        full = read / (time.perf_counter() - start)
        assert not problems
        rows.append(
            (f"full verification against {len(checkpoints):,} signed checkpoints (one pass)",
             f"{full:,.0f} events/s ({full / raw:.2f} x raw hash)")
        )  # fmt: skip
        services.close()

    m = args.memory_leaves
    memory = MerkleTree()
    memory.extend(blob[i : i + 32] for i in range(m))
    indexes = [rng.randrange(m) for _ in range(args.samples * 5)]
    rows.append(
        (
            f"inclusion proof in memory at {m:,} leaves",
            p50_p99(timed([lambda i=i: memory.inclusion_proof(i) for i in indexes])),
        )
    )

    print(f"\nIntegrity ledger, {n:,} leaves, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| measure | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
