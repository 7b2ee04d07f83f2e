"""The OpenAI wire on the upstream side: request bodies, streamed events, and errors without content.

Error bodies may echo the prompt (some servers quote the offending input), so an upstream's message
reaches the client only when no run of :data:`ECHO_WINDOW` characters of it occurs in the request's
content; nothing from a body is ever logged.
"""

from __future__ import annotations

import math
import re

import msgspec

from agent.backends.base import GenerationRequest, RequestError
from agent.protocol import FinishReason

ECHO_WINDOW = 8
MAX_MESSAGE_CHARS = 300
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text, used only when the server counts nothing
TOKENS_PER_MESSAGE = 4  # the chat template's per-turn overhead, roughly
_SAFE = re.compile(r"^[\x20-\x7e]*$")


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    text: str | None = None
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    """The upstream's token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class StreamEvent(msgspec.Struct):
    """One ``data:`` event of a chat or completion stream (unknown fields ignored)."""

    choices: list[_Choice] = []
    usage: Usage | None = None
    error: msgspec.Raw | None = None

    def text(self) -> str:
        """The new text of choice 0 (chat ``delta.content`` or completion ``text``)."""
        for choice in self.choices:
            if choice.index == 0:
                if choice.delta is not None:
                    return choice.delta.content or ""
                return choice.text or ""
        return ""

    def finish_reason(self) -> str | None:
        """Choice 0's finish reason, if this event ends it."""
        for choice in self.choices:
            if choice.index == 0:
                return choice.finish_reason
        return None


stream_events = msgspec.json.Decoder(StreamEvent)
_encoder = msgspec.json.Encoder()


def request_body(request: GenerationRequest, upstream_model: str) -> tuple[str, bytes]:
    """The path (``/chat/completions`` or ``/completions``) and JSON body of a streaming request."""
    sampling = request.sampling
    body: dict[str, object] = {
        "model": upstream_model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if request.kind == "completion" or request.prompt is not None:
        body["prompt"] = request.prompt or ""
        return "/completions", _encoder.encode(body)
    body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    return "/chat/completions", _encoder.encode(body)


def finish_reason(reported: str | None) -> FinishReason:
    """The protocol's finish reason for an upstream's (``length`` stays; aborts are cancels; the rest stop)."""
    if reported == "length":
        return "length"
    if reported in ("abort", "cancelled"):
        return "cancelled"
    return "stop"


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    """A prompt's tokens when the server reports none: characters / 4, plus 4 per chat message."""
    if request.prompt is not None:
        return math.ceil(len(request.prompt) / CHARS_PER_TOKEN)
    chars = sum(len(m.content) for m in request.messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(request.messages)


def echoes_content(message: str, request: GenerationRequest) -> bool:
    """Whether ``message`` holds any run of :data:`ECHO_WINDOW` characters of the request's content."""
    contents = [request.prompt or "", *(m.content for m in request.messages), *request.sampling.stop]
    text = "\n".join(contents)
    if not text:
        return False
    if len(message) < ECHO_WINDOW:
        return any(message and message in c for c in contents if len(c) <= ECHO_WINDOW)
    return any(message[i : i + ECHO_WINDOW] in text for i in range(len(message) - ECHO_WINDOW + 1))


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    code: str | int | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    message: str | None = None  # some servers put it at the top level
    detail: str | None = None


def upstream_message(body: bytes) -> tuple[str | None, str | None]:
    """The (message, code) of an OpenAI-style error body, if it has one."""
    try:
        parsed = msgspec.json.decode(body, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None, None
    if isinstance(parsed.error, _ErrorDetail):
        code = None if parsed.error.code is None else str(parsed.error.code)
        return parsed.error.message, code
    return parsed.error or parsed.message or parsed.detail, None


def refusal(status: int, body: bytes, request: GenerationRequest, retry_after: str | None) -> RequestError:
    """The job's error for an upstream's non-200 answer; the client sees a message only when it holds no content."""
    if status in (429, 503):
        return RequestError(f"upstream is busy (HTTP {status})", code="busy", retry_after_s=_retry_after(retry_after))
    if status == 404:
        return RequestError("upstream does not serve this model (HTTP 404)", code="model_not_loaded")
    if status in (400, 413, 422):
        message, code = upstream_message(body)
        reason = None
        lowered = (message or "").lower() + " " + (code or "")
        if "context length" in lowered or "context_length" in lowered or "maximum context" in lowered:
            reason = "context_length_exceeded"
        shown = f"HTTP {status}"
        safe = message and len(message) <= MAX_MESSAGE_CHARS and _SAFE.match(message)
        if safe and message and not echoes_content(message, request):
            shown = f"{shown}: {message}"
        return RequestError(f"upstream refused the request ({shown})", code="bad_request", reason=reason)
    if status in (401, 403):
        return RequestError(f"upstream refused the agent's key (HTTP {status})", code="internal")
    return RequestError(f"upstream failed (HTTP {status})", code="internal")


def _retry_after(header: str | None) -> float:
    """Seconds from a Retry-After header (1 s when absent or odd; at most a minute)."""
    try:
        value = float(header) if header else 1.0
    except ValueError:
        value = 1.0
    return min(max(value, 0.1), 60.0) if math.isfinite(value) else 1.0
