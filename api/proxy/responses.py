"""Encoding of OpenAI responses and server-sent events (precomputed pieces, msgspec encoding)."""

from __future__ import annotations

import msgspec

from agent.protocol import FinishReason
from api.proxy.errors import OpenAIError
from api.proxy.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionChunkWithUsage,
    Completion,
    CompletionWithUsage,
    Delta,
    TextChoice,
    Usage,
)

encode = msgspec.json.Encoder().encode

SSE_ACCEPTED = b": accepted\n\n"
SSE_KEEPALIVE = b": keepalive\n\n"
SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
SSE_MEDIA_TYPE = "text/event-stream"


def finish_reason(reason: FinishReason) -> str:
    """OpenAI's finish reason (an agent-side cancel reads as a stop)."""
    return "length" if reason == "length" else "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    """The usage object."""
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


def sse(payload: bytes) -> bytes:
    """One ``data:`` event."""
    return b"data: " + payload + b"\n\n"


def sse_error(error: OpenAIError) -> bytes:
    """An error event; the OpenAI SDKs raise ``APIError`` on it."""
    return sse(error.encode())


class ChatEncoder:
    """Bodies and events of one chat completion."""

    __slots__ = ("created", "id", "include_usage", "model", "role_sent")

    def __init__(self, response_id: str, model: str, created: int, include_usage: bool) -> None:
        self.id = response_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.role_sent = False

    def complete(self, text: str, reason: FinishReason, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The non-streamed body."""
        choice = ChatChoice(0, AssistantMessage(text), finish_reason(reason))
        body = ChatCompletion(self.id, self.created, self.model, [choice], usage(prompt_tokens, completion_tokens))
        return encode(body)

    def _chunk(self, choices: list[ChatChunkChoice], usage_: Usage | None = None) -> bytes:
        """One chunk event."""
        if self.include_usage:
            return sse(encode(ChatCompletionChunkWithUsage(self.id, self.created, self.model, choices, usage=usage_)))
        return sse(encode(ChatCompletionChunk(self.id, self.created, self.model, choices)))

    def delta(self, text: str) -> bytes:
        """A content chunk (the first one also carries the role)."""
        role = None if self.role_sent else "assistant"
        self.role_sent = True
        return self._chunk([ChatChunkChoice(0, Delta(content=text, role=role))])

    def final(self, reason: FinishReason, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        delta = Delta() if self.role_sent else Delta(content="", role="assistant")
        out = self._chunk([ChatChunkChoice(0, delta, finish_reason(reason))])
        if self.include_usage:
            out += self._chunk([], usage(prompt_tokens, completion_tokens))
        return out + SSE_DONE


class CompletionEncoder:
    """Bodies and events of one legacy completion."""

    __slots__ = ("created", "id", "include_usage", "model")

    def __init__(self, response_id: str, model: str, created: int, include_usage: bool) -> None:
        self.id = response_id
        self.model = model
        self.created = created
        self.include_usage = include_usage

    def complete(self, text: str, reason: FinishReason, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The non-streamed body."""
        choice = TextChoice(0, text, finish_reason(reason))
        body = CompletionWithUsage(
            self.id, self.created, self.model, [choice], usage=usage(prompt_tokens, completion_tokens)
        )
        return encode(body)

    def _chunk(self, choices: list[TextChoice], usage_: Usage | None = None) -> bytes:
        """One chunk event."""
        if self.include_usage:
            return sse(encode(CompletionWithUsage(self.id, self.created, self.model, choices, usage=usage_)))
        return sse(encode(Completion(self.id, self.created, self.model, choices)))

    def delta(self, text: str) -> bytes:
        """A text chunk."""
        return self._chunk([TextChoice(0, text)])

    def final(self, reason: FinishReason, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        out = self._chunk([TextChoice(0, "", finish_reason(reason))])
        if self.include_usage:
            out += self._chunk([], usage(prompt_tokens, completion_tokens))
        return out + SSE_DONE


Encoder = ChatEncoder | CompletionEncoder
