"""The backend protocol: what an inference engine offers the worker, and the shared stop-string logic.

A backend may run many jobs at once (``capacity``); ``generate`` is an async iterator of
:class:`TextDelta` events ending with exactly one :class:`Finished`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

import msgspec

from agent.protocol import ChatMessage, ErrorCode, FinishReason, Job, JobKind, ModelInfo, Sampling


class GenerationRequest(msgspec.Struct, frozen=True):
    """One job as a backend sees it: the prompt or chat turns and the sampling settings."""

    job_id: str
    model: str
    kind: JobKind = "chat"
    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None
    sampling: Sampling = Sampling()

    @classmethod
    def from_job(cls, job: Job) -> GenerationRequest:
        """Build the backend request from a wire :class:`Job`."""
        return cls(
            job_id=job.job_id,
            model=job.model,
            kind=job.kind,
            messages=job.messages,
            prompt=job.prompt,
            sampling=job.sampling,
        )


class TextDelta(msgspec.Struct, frozen=True):
    """New text and the number of generated tokens it stands for."""

    text: str
    tokens: int


class Finished(msgspec.Struct, frozen=True):
    """The end of a generation, with exact token counts from the engine's tokenizer."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False  # the engine gave no counts: the backend estimated them


Event = TextDelta | Finished


class BackendError(RuntimeError):
    """A backend cannot load or serve a model; the message never holds prompt content."""


class RequestError(BackendError):
    """A job cannot be served as asked (answered with this error code; no content in the message)."""

    def __init__(
        self,
        message: str,
        code: ErrorCode = "bad_request",
        reason: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.reason = reason  # ``Error.reason`` on the wire
        self.retry_after_s = retry_after_s  # ``Error.retry_after_s`` (for ``busy``)


@runtime_checkable
class Backend(Protocol):
    """An inference engine that can run up to ``capacity`` jobs at once."""

    name: str
    capacity: int

    def load(self) -> None:
        """Load the model(s); raises :class:`BackendError` with a clear reason."""
        ...

    def models(self) -> list[ModelInfo]:
        """The models this backend serves once loaded."""
        ...

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """The exact prompt token count of a request (used when a queued job is cancelled)."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream text deltas, then one :class:`Finished`."""
        ...

    def cancel(self, job_id: str) -> None:
        """Stop a job: its stream ends with ``finish_reason='cancelled'`` within 1 s.

        The worker calls it only for jobs whose ``generate`` was called; a cancel that arrives
        before the first step must still take effect.
        """
        ...

    def unload(self) -> None:
        """Free the model(s)."""
        ...


@runtime_checkable
class Monitored(Protocol):
    """A backend whose models come and go (an upstream server): it watches them while the worker runs."""

    async def refresh(self) -> bool:
        """Ask for the models now (the worker's first listing, in its loop); whether they changed."""
        ...

    async def monitor(self, changed: Callable[[], None]) -> None:
        """Run until cancelled; call ``changed()`` whenever ``models()`` would answer differently."""
        ...


class StopMatcher:
    """Cuts generated text at the first stop string, even one split across deltas.

    Text that might be the start of a stop string is held back until it is decided; token counts of
    held-back text are carried to the next text that is released.
    """

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self.held_tokens = 0
        self.stopped = False

    def feed(self, text: str, tokens: int = 1) -> TextDelta | None:
        """Add new text; return what can be released now (``None`` when nothing yet)."""
        if self.stopped:
            return None
        buf = self.held + text
        self.held_tokens += tokens
        cut = self._first_stop(buf)
        if cut is not None:
            self.stopped = True
            self.held = ""
            return self._release(buf[:cut])
        keep = self._partial_suffix(buf)
        self.held = buf[len(buf) - keep :] if keep else ""
        return self._release(buf[: len(buf) - keep])

    def flush(self) -> TextDelta | None:
        """Release held text at the end of generation (no stop string followed)."""
        if self.stopped:
            return None
        text, self.held = self.held, ""
        return self._release(text)

    def _release(self, text: str) -> TextDelta | None:
        """Emit text with the tokens accumulated so far (nothing for empty text)."""
        if not text:
            return None
        delta = TextDelta(text=text, tokens=self.held_tokens)
        self.held_tokens = 0
        return delta

    def _first_stop(self, buf: str) -> int | None:
        """The index where the earliest stop string starts, if any."""
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def _partial_suffix(self, buf: str) -> int:
        """The length of the longest suffix of ``buf`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best


def last_user_text(request: GenerationRequest) -> str:
    """The prompt of a completion, or the last user message of a chat."""
    if request.kind == "completion" or request.prompt is not None:
        return request.prompt or ""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""
