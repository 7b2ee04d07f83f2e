"""GPU backends on a CUDA device: reference equivalence with transformers, answers, streaming, batching.

Runs only where CUDA is available (see ../shared/gpu/README.md for the device runs); elsewhere the whole
module is skipped with the reason "no CUDA device".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gpu.conftest import gpu_model, has_model, needs_smollm2, skip_module_without_cuda

pytestmark = pytest.mark.gpu

skip_module_without_cuda()

import torch  # noqa: E402

from agent.backends.base import Finished, GenerationRequest, TextDelta  # noqa: E402
from agent.models import ModelSource, describe_folder  # noqa: E402
from agent.protocol import ChatMessage, Sampling  # noqa: E402

QUESTION = "What is the capital of France?"


def source(name: str) -> ModelSource:
    return describe_folder(gpu_model(name))


def make_backend(engine: str, model: ModelSource, capacity: int | None = None) -> Any:
    if engine == "transformers":
        from agent.backends.transformers import TransformersBackend

        backend: Any = TransformersBackend([model], capacity=capacity or 1, device="cuda")
    elif engine == "exllamav2":
        from agent.backends.exllamav2 import ExLlamaV2Backend

        backend = ExLlamaV2Backend([model], capacity=capacity)
    else:
        from agent.backends.exllamav3 import ExLlamaV3Backend

        backend = ExLlamaV3Backend([model], capacity=capacity)
    backend.load()
    return backend


@contextlib.contextmanager
def loaded(engine: str, model: ModelSource, capacity: int | None = None) -> Iterator[Any]:
    backend = make_backend(engine, model, capacity)
    try:
        yield backend
    finally:
        backend.unload()
        torch.cuda.empty_cache()


def ask(model_id: str, job_id: str, text: str = QUESTION, **sampling: Any) -> GenerationRequest:
    return GenerationRequest(job_id, model_id, messages=(ChatMessage("user", text),), sampling=Sampling(**sampling))


async def run(backend: Any, request: GenerationRequest) -> tuple[str, Finished, float]:
    """Text, final event and time to first token."""
    start = time.perf_counter()
    first = None
    deltas: list[str] = []
    async with contextlib.aclosing(backend.generate(request)) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                first = first or time.perf_counter() - start
                deltas.append(event.text)
            else:
                return "".join(deltas), event, first or 0.0
    raise AssertionError("no final event")


def engine_logits(engine: str, backend: Any, ids: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits (seq, vocab) from the engine's own forward pass, no cache."""
    model = backend.generator.model
    if engine == "exllamav2":
        out = model.forward(ids.cpu(), cache=None)
    else:
        out = model.forward(ids, {"attn_mode": "flash_attn_nc"})
    return out[0].float().to("cuda")


def reference_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16).to("cuda").eval()
    with torch.inference_mode():
        logits = model(input_ids=ids.to("cuda")).logits[0].float()
    del model
    torch.cuda.empty_cache()
    return logits


CASES = [("exllamav2", "llama-tiny-fp16"), ("exllamav3", "llama-tiny-fp16"), ("exllamav2", "smollm2-135m-fp16")]


@pytest.mark.parametrize(("engine", "name"), CASES)
def test_reference_equivalence_teacher_forced(engine: str, name: str) -> None:
    if name.startswith("smollm2") and not has_model("smollm2-135m-fp16"):
        pytest.skip("smollm2-135m-fp16 not prepared (prepare.sh --real-model)")
    model = source(name)
    torch.manual_seed(0)
    ids = torch.randint(10, 40000, (1, 256), dtype=torch.long)
    reference = reference_logits(model.folder, ids)
    with loaded(engine, model) as backend, torch.inference_mode():
        got = engine_logits(engine, backend, ids)
    top1 = (got.argmax(-1) == reference.argmax(-1)).float().mean().item()
    cosine = torch.nn.functional.cosine_similarity(got, reference, dim=-1).mean().item()
    assert top1 >= 0.99, f"{engine} on {name}: top-1 agreement {top1:.3f}"
    assert cosine >= 0.999, f"{engine} on {name}: cosine {cosine:.5f}"


@needs_smollm2
@pytest.mark.parametrize("engine", ["exllamav2", "transformers"])
async def test_paris_greedy(engine: str) -> None:
    model = source("smollm2-135m-fp16")
    with loaded(engine, model) as backend:
        text, final, _ = await run(backend, ask(model.id, "paris", max_tokens=32, temperature=0))
        assert "Paris" in text
        assert final.finish_reason == "stop"
        assert final.prompt_tokens == backend.count_prompt_tokens(ask(model.id, "n"))


@pytest.mark.parametrize("engine", ["exllamav3", "exllamav2"])
async def test_streaming_stop_and_cancel(engine: str) -> None:
    model = source("llama-tiny-fp16")
    with loaded(engine, model) as backend:
        text, final, _ = await run(backend, ask(model.id, "a", max_tokens=40, temperature=0))
        assert final.finish_reason in ("length", "stop") and final.completion_tokens >= 1
        assert final.finish_reason == "stop" or final.completion_tokens == 40
        if len(text) > 12:
            stop = text[6:10]
            cut, final2, _ = await run(backend, ask(model.id, "b", max_tokens=40, temperature=0, stop=(stop,)))
            assert stop not in cut and text.startswith(cut)
            assert final2.finish_reason == "stop"
        stream = backend.generate(ask(model.id, "c", max_tokens=4000, temperature=0.8, seed=3))
        first = await asyncio.wait_for(anext(stream), 30)
        assert isinstance(first, TextDelta)
        start = time.perf_counter()
        backend.cancel("c")
        rest = [e async for e in stream]
        assert time.perf_counter() - start < 1.0
        assert isinstance(rest[-1], Finished) and rest[-1].finish_reason == "cancelled"


async def test_exllamav3_batches_16_concurrent() -> None:
    model = source("llama-tiny-fp16")
    with loaded("exllamav3", model, capacity=16) as backend:
        await run(backend, ask(model.id, "warm", max_tokens=16, temperature=0))
        start = time.perf_counter()
        _, final, _ = await run(backend, ask(model.id, "single", max_tokens=256, temperature=0.7, seed=1))
        single = final.completion_tokens / (time.perf_counter() - start)
        start = time.perf_counter()
        results = await asyncio.gather(
            *(run(backend, ask(model.id, f"j{i}", max_tokens=256, temperature=0.7, seed=i)) for i in range(16))
        )
        total = sum(r[1].completion_tokens for r in results) / (time.perf_counter() - start)
        assert total > 4 * single, f"16 concurrent {total:.0f} tok/s vs single {single:.0f} tok/s"
