"""Integrity core micro-benchmark: Merkle append, proof generation and verification, next to raw SHA-256.

In memory, one process, no database: leaves of ``--size`` random bytes (a stored event's order of
size) appended to an RFC 9162 tree up to ``--leaves``; inclusion and consistency proofs generated at
that size (and at a past size); events verified one by one through their inclusion proofs, and the
whole log verified in one pass (rebuilding the tree). hashlib's raw SHA-256 rate over the same leaves
and over node-sized inputs is measured in the same run as the baseline. Prints a markdown table;
asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/integrity.py [--leaves 1000000] [--size 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projections.integrity.checkpoints import Checkpoint
from projections.integrity.merkle import MerkleTree, leaf_hash
from projections.integrity.proofs import verify_inclusion
from projections.integrity.verify import verify_full_log


def rate(count: int, run: Callable[[], object]) -> float:
    """Items per second of one run over ``count`` items."""
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in microseconds."""
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1e6, cuts[98] * 1e6


def timed(calls: list[Callable[[], object]]) -> list[float]:
    samples = []
    for call in calls:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200, help="bytes per leaf")
    parser.add_argument("--samples", type=int, default=20_000)
    args = parser.parse_args()
    n = args.leaves
    rng = random.Random(1)
    blob = os.urandom(n + args.size)
    leaves = [blob[i : i + args.size] for i in range(n)]
    sha = hashlib.sha256
    nodes = [b"\x01" + blob[i : i + 64] for i in range(0, min(n, 1_000_000))]

    rows: list[tuple[str, str]] = []
    raw_leaf = rate(n, lambda: [sha(b"\x00" + x).digest() for x in leaves])
    raw_node = rate(len(nodes), lambda: [sha(x).digest() for x in nodes])
    bulk = rate(256, lambda: [sha(blob[: 1 << 20]).digest() for _ in range(256)])
    rows.append(("baseline: hashlib SHA-256 of one leaf (0x00 || data)", f"{raw_leaf:,.0f} /s"))
    rows.append(("baseline: hashlib SHA-256 of one node (65 bytes)", f"{raw_node:,.0f} /s"))
    rows.append(("baseline: hashlib SHA-256 bulk", f"{bulk:,.0f} MiB/s"))

    tree = MerkleTree()
    append = rate(n, lambda: tree.extend(leaves))
    rows.append(
        (f"append to {n:,} leaves (memory store)", f"{append:,.0f} leaves/s ({append / raw_leaf:.2f} x raw leaf hash)")
    )

    past = n // 2 + 12345 if n > 30_000 else n
    for label, size in ((f"at size {n:,} (current)", n), (f"at size {past:,} (past)", past)):
        indexes = [rng.randrange(size) for _ in range(args.samples)]
        p50, p99 = percentiles(timed([lambda i=i, s=size: tree.inclusion_proof(i, s) for i in indexes]))
        rows.append((f"inclusion proof generation {label}", f"p50 {p50:.1f} µs, p99 {p99:.1f} µs"))
    olds = [rng.randrange(1, n + 1) for _ in range(min(args.samples, 5_000))]
    p50, p99 = percentiles(timed([lambda m=m: tree.consistency_proof(m) for m in olds]))
    rows.append((f"consistency proof generation to size {n:,}", f"p50 {p50:.1f} µs, p99 {p99:.1f} µs"))
    start = time.perf_counter()
    root = tree.root(past)
    rows.append((f"root at past size {past:,}", f"{(time.perf_counter() - start) * 1e6:.1f} µs"))

    sample = [rng.randrange(n) for _ in range(args.samples)]
    proofs = [(i, tree.inclusion_proof(i)) for i in sample]
    top = tree.root()

    def verify_each() -> None:
        for i, proof in proofs:
            verify_inclusion(i, n, leaf_hash(leaves[i]), proof, top)

    each = rate(len(proofs), verify_each)
    rows.append((f"verify one event by its inclusion proof (size {n:,})", f"{each:,.0f} events/s"))
    checkpoints = [Checkpoint("bench", past, root), Checkpoint("bench", n, top)]
    result: list[object] = []
    full = rate(n, lambda: result.append(verify_full_log(leaves, checkpoints)))
    assert result[0] == (n, []), result[0]
    rows.append(
        (
            "verify the whole log in one pass (rebuild, compare checkpoints)",
            f"{full:,.0f} events/s ({full / raw_leaf:.2f} x raw leaf hash)",
        )
    )

    print(
        f"\nIntegrity core, {n:,} leaves of {args.size} bytes, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
    )
    print("| measure | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
