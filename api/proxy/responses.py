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


_SENTINEL = "\x00ownllm-content\x00"  # never produced by a model (NUL), so it splits a template once
_SENTINEL_JSON = encode(_SENTINEL)


def split_template(event: bytes) -> tuple[bytes, bytes] | None:
    """An encoded event around the sentinel content: the bytes before and after the content string.

    None if the sentinel is not there exactly once (a model name holding it): encode chunks whole.
    """
    if event.count(_SENTINEL_JSON) != 1:
        return None
    head, _, tail = event.partition(_SENTINEL_JSON)
    return head, tail


class ChatEncoder:
    """Bodies and events of one chat completion.

    Content chunks are the hot path of a stream: each is the request's constant bytes around the
    JSON-encoded text, split once from a template (byte-identical to encoding the whole chunk).
    """

    __slots__ = ("created", "id", "include_usage", "model", "rest", "role_sent")

    def __init__(self, response_id: str, model: str, created: int, include_usage: bool) -> None:
        self.id = response_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.role_sent = False
        self.rest: tuple[bytes, bytes] | None = None  # the template of every content chunk after the first

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
        first = not self.role_sent
        self.role_sent = True
        template = None if first else self.rest
        if template is None:
            template = split_template(self.encode_delta(_SENTINEL, first=first))
            if template is None:
                return self.encode_delta(text, first=first)
            if not first:
                self.rest = template
        return template[0] + encode(text) + template[1]

    def encode_delta(self, text: str, first: bool) -> bytes:
        """A content chunk encoded whole (the templates' source, and the tests' reference)."""
        return self._chunk([ChatChunkChoice(0, Delta(content=text, role="assistant" if first else None))])

    def final(self, reason: FinishReason, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        delta = Delta() if self.role_sent else Delta(content="", role="assistant")
        out = self._chunk([ChatChunkChoice(0, delta, finish_reason(reason))])
        if self.include_usage:
            out += self._chunk([], usage(prompt_tokens, completion_tokens))
        return out + SSE_DONE


class CompletionEncoder:
    """Bodies and events of one legacy completion."""

    __slots__ = ("created", "id", "include_usage", "model", "template")

    def __init__(self, response_id: str, model: str, created: int, include_usage: bool) -> None:
        self.id = response_id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.template: tuple[bytes, bytes] | None = None

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
        """A text chunk (constant bytes around the encoded text, as for chat)."""
        if self.template is None:
            self.template = split_template(self.encode_delta(_SENTINEL))
            if self.template is None:
                return self.encode_delta(text)
        return self.template[0] + encode(text) + self.template[1]

    def encode_delta(self, text: str) -> bytes:
        """A text chunk encoded whole (the template's source, and the tests' reference)."""
        return self._chunk([TextChoice(0, text)])

    def final(self, reason: FinishReason, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``."""
        out = self._chunk([TextChoice(0, "", finish_reason(reason))])
        if self.include_usage:
            out += self._chunk([], usage(prompt_tokens, completion_tokens))
        return out + SSE_DONE


Encoder = ChatEncoder | CompletionEncoder
