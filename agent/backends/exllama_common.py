"""What exllamav2 and exllamav3 share: the pure result-to-event mapping and the engine thread.

Both engines' generators are driven the same way: ``enqueue(job)``, ``iterate()`` returning a list of
per-job result dicts (keys ``job``, ``stage``, ``eos``, ``text``, ``token_ids``, ``eos_reason``,
``new_tokens``, ``prompt_tokens``, ``serial``, ``identifier``), ``cancel(job)`` and
``num_remaining_jobs()``. One thread owns the generator; the event loop talks to it through a queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.backends.base import (
    BackendError,
    Event,
    Finished,
    GenerationRequest,
    RequestError,
    StopMatcher,
)
from agent.models import ModelSource, exllama_problems
from agent.protocol import FinishReason, ModelInfo

EOS_REASONS: dict[str, FinishReason] = {
    "max_new_tokens": "length",
    "stop_token": "stop",
    "stop_string": "stop",
    "end_filter": "stop",
}

PENDING_CANCEL_TTL_S = 30.0  # a job reaches the engine thread within milliseconds of its cancel


def count_ids(token_ids: Any) -> int:
    """Number of token ids in a result's ``token_ids`` (a tensor of shape (1, n), or a list)."""
    if token_ids is None:
        return 0
    shape = getattr(token_ids, "shape", None)
    if shape is not None:
        return int(shape[-1]) if len(shape) else 1
    if token_ids and isinstance(token_ids[0], list | tuple):
        return sum(len(row) for row in token_ids)
    return len(token_ids)


class ResultMapper:
    """Turns one job's engine result dicts into protocol events (pure: no engine, no I/O)."""

    def __init__(self, stops: tuple[str, ...], prompt_tokens: int) -> None:
        self.matcher = StopMatcher(stops)
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self.done = False

    def feed(self, result: dict[str, Any]) -> list[Event]:
        """Events for one result dict; after a Finished, nothing more."""
        if self.done or result.get("stage", "streaming") != "streaming":
            return []
        events: list[Event] = []
        text = result.get("text") or ""
        tokens = count_ids(result.get("token_ids"))
        self.generated += tokens
        if text or tokens:
            delta = self.matcher.feed(text, tokens)
            if delta is not None:
                events.append(delta)
        if result.get("eos"):
            events.extend(self._finish(result))
        elif self.matcher.stopped:
            self.done = True
            events.append(Finished("stop", self.prompt_tokens, self.generated))
        return events

    def _finish(self, result: dict[str, Any]) -> list[Event]:
        """The end of the job as the engine reports it."""
        self.done = True
        events: list[Event] = []
        tail = self.matcher.flush()
        if tail is not None:
            events.append(tail)
        reason = EOS_REASONS.get(str(result.get("eos_reason")), "stop")
        completion = int(result.get("new_tokens", self.generated))
        prompt = int(result.get("prompt_tokens", self.prompt_tokens))
        events.append(Finished(reason, prompt, completion))
        return events

    def cancelled(self) -> Finished:
        """The Finished of a job cancelled before the engine ended it."""
        self.done = True
        return Finished("cancelled", self.prompt_tokens, self.generated)


def map_transcript(results: list[dict[str, Any]], stops: tuple[str, ...], prompt_tokens: int) -> list[Event]:
    """All events of a recorded transcript of one job's results (for tests and debugging)."""
    mapper = ResultMapper(stops, prompt_tokens)
    events: list[Event] = []
    for result in results:
        events.extend(mapper.feed(result))
    return events


@dataclass
class _Running:
    """A job inside the engine thread, with the event-loop side that receives its events."""

    request: GenerationRequest
    engine_job: Any
    mapper: ResultMapper
    deliver: Callable[[Event | BaseException], None]
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def flash_attn_version() -> tuple[int, ...] | None:
    """flash-attn's version when it imports, else None."""
    try:
        import flash_attn
    except Exception:
        return None
    parts = []
    for piece in str(getattr(flash_attn, "__version__", "0")).split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class ExLlamaBase:
    """A GPU backend around an ExLlama generator, served from one engine thread."""

    name: str = "exllamav3"

    def __init__(self, sources: list[ModelSource], capacity: int | None = None, max_seq_len: int = 4096) -> None:
        folders = [s for s in sources if s.gguf_file is None]
        if not folders:
            raise BackendError(f"{self.name}: no model folders to serve (GGUF files need transformers)")
        if len(folders) > 1:
            raise BackendError(f"{self.name}: one model per agent process; got {len(folders)}")
        self.source = folders[0]
        self.requested_capacity = capacity
        self.capacity = capacity or 16
        self.max_seq_len = max_seq_len
        self.hf_tokenizer: Any = None
        self.generator: Any = None
        self.eos_ids: list[int] = []
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._running: dict[str, _Running] = {}
        # Cancels for jobs the engine has not seen: honoured if the job arrives, forgotten after a while
        # (a cancel racing a job's natural end would otherwise stay here for good).
        self._pending_cancels: dict[str, float] = {}
        self.clock: Callable[[], float] = time.monotonic
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def check_model(self) -> None:
        """The load-time config checks, raising a clear error."""
        problems = exllama_problems(self.source, self.name)  # type: ignore[arg-type]
        if problems:
            raise BackendError("; ".join(problems))

    def load_tokenizer(self) -> None:
        """The Hugging Face tokenizer of the folder: chat template and exact counts."""
        from transformers import AutoTokenizer

        self.hf_tokenizer = AutoTokenizer.from_pretrained(self.source.path)

    def start_engine_thread(self) -> None:
        """Start the thread that owns the generator."""
        self._thread = threading.Thread(target=self._engine_loop, name=f"ownllm-{self.name}", daemon=True)
        self._thread.start()

    def models(self) -> list[ModelInfo]:
        """The one model folder this backend serves."""
        return [
            ModelInfo(self.source.id, self.name, min(self.source.context_length, self.max_seq_len), self.source.licence)
        ]

    def encode(self, request: GenerationRequest) -> list[int]:
        """Prompt ids with the folder's chat template (exact counts)."""
        from agent.backends.transformers import encode_prompt

        return encode_prompt(self.hf_tokenizer, request)

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Exact prompt token count."""
        return len(self.encode(request))

    def make_job(self, request: GenerationRequest, prompt_ids: list[int], max_new_tokens: int) -> Any:
        """The engine's job object (engine-specific)."""
        raise NotImplementedError

    def job_arguments(self, request: GenerationRequest, prompt_ids: list[int], max_new_tokens: int) -> dict[str, Any]:
        """What every engine's job takes alike: ids, length, seed, EOS ids and stop strings, the job id."""
        import torch

        return {
            "input_ids": torch.tensor([prompt_ids], dtype=torch.long),
            "max_new_tokens": max_new_tokens,
            "seed": request.sampling.seed,
            "stop_conditions": [*self.eos_ids, *[s for s in request.sampling.stop if s]],
            "identifier": request.job_id,
            "decode_special_tokens": False,
        }

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Enqueue the job in the engine thread and relay its events."""
        if request.model != self.source.id:
            raise RequestError(f"model {request.model!r} is not loaded", code="model_not_loaded")
        prompt_ids = self.encode(request)
        room = self.max_seq_len - len(prompt_ids)
        if room <= 0:
            raise RequestError(
                f"prompt has {len(prompt_ids)} tokens; the context is {self.max_seq_len}",
                reason="context_length_exceeded",
            )
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event | BaseException] = asyncio.Queue()

        def deliver(event: Event | BaseException) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        job = self.make_job(request, prompt_ids, min(request.sampling.max_tokens, room))
        mapper = ResultMapper(request.sampling.stop, len(prompt_ids))
        self._commands.put(("enqueue", _Running(request, job, mapper, deliver)))
        finished = False
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    finished = True
                    return
        finally:
            if not finished:
                self.cancel(request.job_id)

    def cancel(self, job_id: str) -> None:
        """Ask the engine thread to cancel a job (takes effect at its next iteration)."""
        self._commands.put(("cancel", job_id))

    def unload(self) -> None:
        """Stop the engine thread and drop the generator."""
        self._stop.set()
        self._commands.put(("stop", None))
        if self._thread is not None:
            self._thread.join(10)
        self.generator = None

    def _engine_loop(self) -> None:
        """Own the generator: apply commands, iterate, route results to their jobs."""
        while not self._stop.is_set():
            block = not self._running
            try:
                while True:
                    command, arg = self._commands.get(block=block, timeout=0.5 if block else None)
                    block = False
                    self._apply(command, arg)
            except queue.Empty:
                pass
            if not self._running:
                continue
            try:
                results = self.generator.iterate()
            except Exception as exc:
                for running in list(self._running.values()):
                    running.deliver(exc)
                self._running.clear()
                continue
            for result in results:
                self._route(result)

    def _apply(self, command: str, arg: Any) -> None:
        """One command from the event loop, applied in the engine thread."""
        if command == "enqueue":
            running: _Running = arg
            if self._pending_cancels.pop(running.request.job_id, None) is not None:
                running.deliver(running.mapper.cancelled())
                return
            self._running[running.request.job_id] = running
            self.generator.enqueue(running.engine_job)
        elif command == "cancel":
            found = self._running.pop(arg, None)
            if found is None:
                self._remember_cancel(arg)
                return
            self.generator.cancel(found.engine_job)
            found.deliver(found.mapper.cancelled())
        elif command == "stop":
            self._stop.set()

    def _remember_cancel(self, job_id: str) -> None:
        """Keep a cancel for a job not (or no longer) in the engine, dropping ones past their time."""
        now = self.clock()
        expired = [j for j, at in self._pending_cancels.items() if now - at > PENDING_CANCEL_TTL_S]
        for stale in expired:
            del self._pending_cancels[stale]
        self._pending_cancels[job_id] = now

    def _route(self, result: dict[str, Any]) -> None:
        """Map one result to its job's events; end jobs that finished or hit a stop string."""
        job_id = str(result.get("identifier"))
        running = self._running.get(job_id)
        if running is None:
            return
        events = running.mapper.feed(result)
        if running.mapper.done:
            # Stop the engine's job before its Finished is delivered: whoever sees the job end may
            # count on the engine no longer generating it (a flaky test read the cancel too early).
            del self._running[job_id]
            if not result.get("eos"):
                self.generator.cancel(running.engine_job)
        for event in events:
            running.deliver(event)
