"""GPU decode benchmark: per backend, single-stream tok/s against the memory-bandwidth roofline, TTFT,
and tok/s in all at 1/16/64 concurrent jobs. Prints a table; asserts nothing.

With ``PROXY=1`` it adds the platform cell: per model and ExLlama engine, tok/s in all at 1 and 16
concurrent streams through the whole platform (HTTP client -> proxy -> nats-server -> ``ownllm-agent serve``
on this GPU) against the same engine called directly in this process, interleaved in the same run, and
the ratio (target >= 95%). The API runs in a child process (own GIL), the agent in another; the client
is httpx streaming with ``stream_options.include_usage`` for exact token counts. ``PROXY=only`` skips the
engine table; ``PROXY_REPS`` (default 3) sets the interleaved repetitions (medians are printed);
``PROXY_ENGINES=exllamav3`` limits the cell to one engine.

Run on a CUDA device after ``gpu.sh models`` (see tests/gpu/README.md):
    . /tmp/ownllm-gpu/env && python3 bench/gpu.py            # llama-tiny-fp16 (+ smollm2 if prepared)
    LLAMA8B=1 python3 bench/gpu.py                            # adds llama-8b-shape-fp16
    PROXY=1 python3 bench/gpu.py                              # adds the proxy-vs-direct cell
On a machine without CUDA it exits at once with "no CUDA device".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.backends.base import Finished, GenerationRequest, TextDelta
from agent.models import ModelSource, config_problems, describe_folder
from agent.protocol import ChatMessage, Sampling

ENGINES = ("exllamav3", "exllamav2", "transformers")
CONCURRENCY = (1, 16, 64)
NEW_TOKENS = 128
PROMPT = "Tell me a long story."
PROXY_ENGINES = ("exllamav3", "exllamav2")  # the agent's transformers backend runs on the CPU
PROXY_CONCURRENCY = (1, 16)
PROXY_TARGET = 0.95


def require_cuda() -> Any:
    """torch with a CUDA device, or exit with a clear message."""
    try:
        import torch
    except Exception as exc:
        raise SystemExit(f"no CUDA device (torch does not import: {exc})") from exc
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: bench/gpu.py needs an NVIDIA GPU (see tests/gpu/README.md)")
    return torch


def copy_bandwidth(torch: Any, gib: float = 1.0, repeats: int = 10) -> float:
    """Device-to-device copy rate in bytes/s (read + write counted)."""
    n = int(gib * 2**30) // 2
    src = torch.empty(n, dtype=torch.float16, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    del src, dst
    return 2 * n * 2 * repeats / elapsed


def weight_bytes_per_token(folder: Path) -> int:
    """Bytes of weights read per decoded token: all tensors except the input embedding table."""
    config = json.loads((folder / "config.json").read_text())
    total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    embedding = int(config["vocab_size"]) * int(config["hidden_size"]) * 2
    return total - (embedding if not config.get("tie_word_embeddings") else 0)


def build(engine: str, source: ModelSource, capacity: int) -> Any:
    """A loaded backend, or None when the engine refuses the model."""
    if engine == "transformers":
        from agent.backends.transformers import TransformersBackend

        backend: Any = TransformersBackend([source], capacity=capacity, device="cuda")
    elif engine == "exllamav2":
        from agent.backends.exllamav2 import ExLlamaV2Backend

        backend = ExLlamaV2Backend([source], capacity=capacity)
    else:
        from agent.backends.exllamav3 import ExLlamaV3Backend

        backend = ExLlamaV3Backend([source], capacity=capacity)
    backend.load()
    return backend


async def one(backend: Any, model_id: str, job_id: str) -> tuple[int, float, float]:
    """(completion tokens, TTFT seconds, total seconds) of one job."""
    request = GenerationRequest(
        job_id,
        model_id,
        messages=(ChatMessage("user", PROMPT),),
        sampling=Sampling(max_tokens=NEW_TOKENS, temperature=0.7, seed=hash(job_id) % 2**31),
    )
    start = time.perf_counter()
    ttft = 0.0
    async with contextlib.aclosing(backend.generate(request)) as events:
        async for event in events:
            if isinstance(event, TextDelta) and not ttft:
                ttft = time.perf_counter() - start
            if isinstance(event, Finished):
                return event.completion_tokens, ttft, time.perf_counter() - start
    raise RuntimeError("no final event")


async def measure(backend: Any, model_id: str, concurrent: int) -> tuple[float, float]:
    """(tok/s in all, median TTFT) for ``concurrent`` jobs at once."""
    start = time.perf_counter()
    results = await asyncio.gather(*(one(backend, model_id, f"b{concurrent}-{i}") for i in range(concurrent)))
    elapsed = time.perf_counter() - start
    ttfts = sorted(r[1] for r in results)
    return sum(r[0] for r in results) / elapsed, ttfts[len(ttfts) // 2]


def bench_model(torch: Any, folder: Path, bandwidth: float) -> list[list[str]]:
    """Rows for one model folder, one per engine."""
    source = describe_folder(folder)
    per_token = weight_bytes_per_token(folder)
    roofline = bandwidth / per_token
    rows = []
    for engine in ENGINES:
        problems = config_problems(source.config(), engine) if engine != "transformers" else []  # type: ignore[arg-type]
        if problems:
            rows.append([folder.name, engine, "refused: " + problems[0][:60], "", "", "", "", ""])
            continue
        try:
            backend = build(engine, source, capacity=max(CONCURRENCY))
        except Exception as exc:
            rows.append([folder.name, engine, f"failed: {type(exc).__name__}: {str(exc)[:60]}", "", "", "", "", ""])
            continue
        try:
            asyncio.run(measure(backend, source.id, 1))  # warm-up
            results = {c: asyncio.run(measure(backend, source.id, c)) for c in CONCURRENCY}
        finally:
            backend.unload()
            torch.cuda.empty_cache()
        single, ttft = results[1]
        rows.append(
            [
                folder.name,
                engine,
                f"{single:.1f}",
                f"{100 * single / roofline:.0f}%",
                f"{ttft * 1000:.0f} ms",
                *(f"{results[c][0]:.0f}" for c in CONCURRENCY),
            ]
        )
    return rows


# ---------------------------------------------------------------- through the platform vs direct


async def proxy_one(client: Any, model: str) -> tuple[int, float]:
    """One streamed chat through the proxy: (completion tokens from the usage chunk, TTFT seconds)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": NEW_TOKENS,
        "temperature": 0.7,
        "seed": random.randrange(2**31),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    ttft = 0.0
    tokens = -1
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"proxy answered {response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            if not ttft and any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    if tokens < 0:
        raise RuntimeError("the stream ended without a usage chunk")
    return tokens, ttft


async def measure_proxy(base: str, key: str, model: str, concurrent: int) -> tuple[float, float]:
    """(tok/s in all, median TTFT) for ``concurrent`` streams at once through the proxy."""
    import httpx

    limits = httpx.Limits(max_connections=concurrent + 4, max_keepalive_connections=concurrent + 4)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600, limits=limits) as client:
        await proxy_one(client, model)  # connection and warm path, not timed
        start = time.perf_counter()
        results = await asyncio.gather(*(proxy_one(client, model) for _ in range(concurrent)))
        elapsed = time.perf_counter() - start
    ttfts = sorted(r[1] for r in results)
    return sum(r[0] for r in results) / elapsed, ttfts[len(ttfts) // 2]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def proxy_cell(torch: Any, rig: Any, folder: Path, engine: str, reps: int) -> list[str]:
    """One row: direct vs through-the-platform tok/s at 1 and 16 concurrent, interleaved ``reps`` times."""
    source = describe_folder(folder)
    problems = config_problems(source.config(), engine)  # type: ignore[arg-type]
    if problems:
        return [folder.name, engine, "refused: " + problems[0][:60]]
    capacity = max(PROXY_CONCURRENCY)
    model_id = f"{folder.name}-{engine}"
    try:
        backend = build(engine, source, capacity=capacity)
    except Exception as exc:
        return [folder.name, engine, f"failed: {type(exc).__name__}: {str(exc)[:60]}"]
    agent = None
    try:
        # exllamav2 without flash-attn runs one job at a time: the rest must wait in the agent's queue.
        agent = rig.start_agent(f"bench-{model_id}", engine, folder, model_id, capacity=capacity, queue_limit=64)
        asyncio.run(measure(backend, source.id, 1))  # warm-up, direct
        direct: dict[int, list[tuple[float, float]]] = {c: [] for c in PROXY_CONCURRENCY}
        proxied: dict[int, list[tuple[float, float]]] = {c: [] for c in PROXY_CONCURRENCY}
        for rep in range(reps):
            for c in PROXY_CONCURRENCY:
                sides = ["direct", "proxy"] if rep % 2 == 0 else ["proxy", "direct"]  # drift hits both alike
                for side in sides:
                    if side == "direct":
                        direct[c].append(asyncio.run(measure(backend, source.id, c)))
                    else:
                        proxied[c].append(asyncio.run(measure_proxy(rig.base, rig.admin_key, model_id, c)))
    except Exception as exc:
        tail = agent.tail(5) if agent is not None else ""
        return [folder.name, engine, f"failed: {type(exc).__name__}: {str(exc)[:80]} {tail[-200:]}"]
    finally:
        if agent is not None:
            rig.stop_agent(agent)
        backend.unload()
        torch.cuda.empty_cache()
    cells = [folder.name, engine]
    for c in PROXY_CONCURRENCY:
        d = median([r[0] for r in direct[c]])
        p = median([r[0] for r in proxied[c]])
        ratio = median([pr[0] / dr[0] for dr, pr in zip(direct[c], proxied[c], strict=True)])
        cells += [f"{d:.0f}", f"{p:.0f}", f"{100 * ratio:.1f}%{'' if ratio >= PROXY_TARGET else ' (<95%)'}"]
    d1 = median([r[1] for r in direct[1]]) * 1000
    p1 = median([r[1] for r in proxied[1]]) * 1000
    cells.append(f"{d1:.0f}/{p1:.0f} ms")
    return cells


def bench_proxy(torch: Any, folders: list[Path]) -> None:
    """The platform table: every ExLlama engine on every model, through the proxy and direct."""
    from tests.gpu.platform_rig import GpuPlatform

    reps = int(os.environ.get("PROXY_REPS", "3"))
    engines = [e for e in os.environ.get("PROXY_ENGINES", ",".join(PROXY_ENGINES)).split(",") if e]
    unknown = sorted(set(engines) - set(PROXY_ENGINES))
    if unknown:
        raise SystemExit(f"PROXY_ENGINES: unknown {unknown}; known: {','.join(PROXY_ENGINES)}")
    print(
        f"\nthrough the platform (httpx streaming -> proxy [own process] -> nats-server -> agent [own process]) vs "
        f"the engine called directly; {NEW_TOKENS} new tokens per job, medians of {reps} interleaved repetitions, "
        f"target >= {PROXY_TARGET:.0%}"
    )
    header = ["model", "backend"]
    for c in PROXY_CONCURRENCY:
        header += [f"direct {c}", f"proxy {c}", f"ratio {c}"]
    header.append("TTFT@1 d/p")
    rows: list[list[str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ownllm-bench-gpu-") as work,
        GpuPlatform(Path(work), api_process=True) as rig,
    ):
        for folder in folders:
            for engine in engines:
                rows.append(proxy_cell(torch, rig, folder, engine, reps))
                print("  " + "  ".join(rows[-1]), file=sys.stderr, flush=True)
    print_table(header, rows)
    print("tok/s = completion tokens of all streams / wall time from the first request sent to the last end")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell (short rows: a refused or failed engine)."""
    widths = [max(len(str(r[i])) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)))


def main() -> None:
    """Measure and print the table (and with PROXY=1 the platform table)."""
    torch = require_cuda()
    root = Path(os.environ.get("OWNLLM_GPU_MODELS", "/tmp/ownllm-gpu"))
    names = ["llama-tiny-fp16", "smollm2-135m-fp16"] + (
        ["llama-8b-shape-fp16"] if os.environ.get("LLAMA8B") == "1" else []
    )
    folders = [root / n for n in names if (root / n / "config.json").is_file()]
    if not folders:
        raise SystemExit(f"no model folders under {root}: run `bash .device/bin/gpu.sh models` first")
    proxy = os.environ.get("PROXY", "0")
    if proxy not in ("0", "1", "only"):
        raise SystemExit(f"PROXY must be 0, 1 or only (got {proxy!r})")
    if proxy != "only":
        bandwidth = copy_bandwidth(torch)
        print(
            f"{torch.cuda.get_device_name(0)}; copy bandwidth {bandwidth / 1e12:.2f} TB/s; "
            f"{NEW_TOKENS} new tokens per job"
        )
        header = ["model", "backend", "single tok/s", "of roofline", "TTFT"]
        header += [f"{c} conc. tok/s" for c in CONCURRENCY]
        print_table(header, [row for folder in folders for row in bench_model(torch, folder, bandwidth)])
    if proxy != "0":
        bench_proxy(torch, folders)


if __name__ == "__main__":
    main()
