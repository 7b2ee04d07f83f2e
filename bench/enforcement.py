"""Proxy CPU added per request by the model-licence gate and the key-sharing detector (issue 17).

Two measurements in the same run:

1. The REAL composition (``ownllm serve`` on SQLite, embedded NATS, an echo agent paired through the
   API, usage recorded and projected), pinned to core 0, run alternately with both checks OFF
   (``OWNLLM_MODEL_LICENCE_GATE=false OWNLLM_KEY_SHARING=false``) and ON (the default), several rounds:
   the proxy process's CPU ms per request of each, and the difference. Two cores and other processes make
   a single round noisy, hence the rounds and the median.
2. Each check alone, called in a loop in this process as the gateway calls it (µs per call), so the cost
   is visible below the composition's noise.

    PYTHONPATH=. python bench/enforcement.py [--rounds 3] [--seconds 2] [--concurrency 1,16]

Targets: each check adds <= 0.05 ms of proxy CPU per request (printed, not asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from uuid import uuid4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy import real_cells  # noqa: E402

from api.proxy.licences import LicenceGate  # noqa: E402
from api.proxy.sharing import SharingDetector  # noqa: E402
from legal import catalogue  # noqa: E402

OFF = {"OWNLLM_MODEL_LICENCE_GATE": "false", "OWNLLM_KEY_SHARING": "false"}
TARGET_MS = 0.05


def composition_round(checks_on: bool, seconds: float, levels: list[int]) -> dict[int, float]:
    """CPU ms per request of the proxy process at each level, with the checks on or off."""
    saved = {k: os.environ.get(k) for k in OFF}
    try:
        for name, value in OFF.items():
            if checks_on:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        real = asyncio.run(real_cells("sqlite", seconds, levels, True, "", True))
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
    if real.sent == 0 or real.events != real.sent:
        raise RuntimeError(f"usage events {real.events} != requests sent {real.sent}")
    return {level: cell.cpu_s * 1000 / max(1, cell.requests) for level, cell in real.cells.items()}


def per_call_us(calls: int = 200_000) -> dict[str, float]:
    """Each check as the gateway calls it, on the hot path's common case (accepted; a known key)."""
    tenant = uuid4()
    accepted = frozenset({"unlisted:echo", "smollm2"})
    gate = LicenceGate(catalogue.bundled(), lambda _t: accepted)
    detector = SharingDetector(lambda _s: None)
    key = uuid4()
    served = dict.fromkeys(("echo",), 0.0)

    def timed(fn: object) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()  # type: ignore[operator]
        return (time.perf_counter() - start) * 1e6 / calls

    baseline = timed(lambda: None)
    return {
        "licence gate (accepted model)": timed(lambda: gate.check(tenant, "echo", lambda: served)) - baseline,
        "sharing detector (known network)": timed(lambda: detector.observe(key, "203.0.113.9", "OpenAI/Python"))
        - baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    off: dict[int, list[float]] = {level: [] for level in levels}
    on: dict[int, list[float]] = {level: [] for level in levels}
    for n in range(args.rounds):
        for checks_on, into in ((False, off), (True, on)) if n % 2 == 0 else ((True, on), (False, off)):
            for level, ms in composition_round(checks_on, args.seconds, levels).items():
                into[level].append(ms)
    print("\nproxy CPU per request, real `ownllm serve` (SQLite, echo agent, usage recorded), server on core 0")
    print(f"{'clients':>7} | {'checks off ms':>13} | {'checks on ms':>12} | {'added ms':>9} | rounds (off / on)")
    for level in levels:
        a, b = statistics.median(off[level]), statistics.median(on[level])
        rounds = " ".join(f"{x:.3f}" for x in off[level]) + " / " + " ".join(f"{x:.3f}" for x in on[level])
        print(f"{level:>7} | {a:>13.3f} | {b:>12.3f} | {b - a:>9.3f} | {rounds}")
    print(f"\neach check alone, as the gateway calls it (target <= {TARGET_MS * 1000:.0f} µs each):")
    for name, us in per_call_us().items():
        print(f"  {name:<34} {us:>7.2f} µs per request")


if __name__ == "__main__":
    main()
