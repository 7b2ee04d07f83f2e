"""``echo``: a deterministic TEST backend that streams back the words of the prompt.

It runs no model. It answers with the words of the last user message (or the completion prompt),
one whitespace-separated word per "token", up to ``max_tokens``. Token counts are exact under that
tokenisation. It serves protocol tests, the proxy overhead benchmark and the zero-retention check
(a canary prompt comes back as a canary output).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agent.backends.base import Event, Finished, GenerationRequest, RequestError, StopMatcher, last_user_text
from agent.protocol import FinishReason, ModelInfo

ECHO_MODEL = "echo"


class EchoBackend:
    """Deterministic test backend: echoes the prompt's words, one word per token."""

    name = "echo"

    def __init__(
        self,
        model_ids: tuple[str, ...] = (ECHO_MODEL,),
        capacity: int = 4,
        token_delay_s: float = 0.0,
        context_length: int = 2048,
    ) -> None:
        self.model_ids = model_ids
        self.capacity = capacity
        self.token_delay_s = token_delay_s
        self.context_length = context_length
        self._cancelled: set[str] = set()
        self._loaded = False

    def load(self) -> None:
        """Nothing to load."""
        self._loaded = True

    def models(self) -> list[ModelInfo]:
        """The configured echo model ids."""
        return [
            ModelInfo(id=m, backend=self.name, context_length=self.context_length, licence="Apache-2.0")
            for m in self.model_ids
        ]

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Words in the prompt, or in all chat messages."""
        if request.prompt is not None:
            return len(request.prompt.split())
        return sum(len(m.content.split()) for m in request.messages)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream the words back; honours stop strings, max_tokens and cancel."""
        prompt_tokens = self.count_prompt_tokens(request)
        if prompt_tokens >= self.context_length:  # as the real backends refuse
            raise RequestError(
                f"prompt has {prompt_tokens} tokens; the context is {self.context_length}",
                reason="context_length_exceeded",
            )
        words = last_user_text(request).split()
        limit = max(0, request.sampling.max_tokens)
        matcher = StopMatcher(request.sampling.stop)
        generated = 0
        reason: FinishReason = "stop"
        try:
            for i, word in enumerate(words):
                if generated >= limit:
                    reason = "length"
                    break
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                else:
                    await asyncio.sleep(0)
                if request.job_id in self._cancelled:
                    reason = "cancelled"
                    break
                generated += 1
                delta = matcher.feed(word if i == 0 else " " + word, 1)
                if delta is not None:
                    yield delta
                if matcher.stopped:
                    break
            if not matcher.stopped and reason != "cancelled":
                tail = matcher.flush()
                if tail is not None:
                    yield tail
            yield Finished(reason, self.count_prompt_tokens(request), generated)
        finally:
            self._cancelled.discard(request.job_id)

    def cancel(self, job_id: str) -> None:
        """Mark a job to stop before its next word."""
        self._cancelled.add(job_id)

    def unload(self) -> None:
        """Nothing to free."""
        self._loaded = False
