"""One job's upstream stream: SSE lines in, text deltas out, with the token budget and the upstream's usage."""

from __future__ import annotations

import msgspec

from agent.backends.base import RequestError, TextDelta
from agent.backends.upstream_wire import StreamEvent, Usage, finish_reason, stream_events
from agent.protocol import FinishReason

MAX_CHARS_PER_CHUNK_TOKEN = 256  # the proxy's bound on text per counted token
MAX_DELTA_CHARS = 16 * 1024  # one chunk of coalesced events, well under NATS's payload limit
MAX_LINE_BYTES = 1024 * 1024


class Relay:
    """One job's stream: SSE lines in, text deltas out; events that arrived together become one delta.

    Only what has already arrived is coalesced (never waiting for more), so the gap between tokens
    stays the upstream's; a delta holds at most :data:`MAX_DELTA_CHARS` characters.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.counted = budget, 0
        self.usage: Usage | None = None
        self.reason: FinishReason | None = None
        self.done = False  # after ``data: [DONE]`` the rest of the body is read and ignored
        self.carry = b""

    def feed(self, data: bytes) -> list[TextDelta]:
        """The deltas of the complete lines in ``carry + data``."""
        *lines, self.carry = (self.carry + data).split(b"\n")
        if len(self.carry) > MAX_LINE_BYTES:
            raise RequestError("upstream sent an over-long stream line", code="internal")
        deltas: list[TextDelta] = []
        texts: list[str] = []
        tokens = size = 0
        for line in lines:
            event = None if self.done else stream_event(line)
            if event is None:
                continue
            if event is _DONE:
                self.done = True
                continue
            assert isinstance(event, StreamEvent)
            self.usage = event.usage or self.usage
            text = event.text()
            if text:
                counted = chunk_tokens(text, self.budget - self.counted)
                self.counted += counted
                texts.append(text)
                tokens, size = tokens + counted, size + len(text)
                if size >= MAX_DELTA_CHARS:
                    deltas.append(TextDelta("".join(texts), tokens))
                    texts, tokens, size = [], 0, 0
            reported = event.finish_reason()
            self.reason = finish_reason(reported) if reported else self.reason
        if texts:
            deltas.append(TextDelta("".join(texts), tokens))
        return deltas


def chunk_tokens(text: str, left: int) -> int:
    """Tokens to count for one event's text: one per 256 characters begun, at most ``left``.

    Servers stream about one token per event; the proxy allows 256 characters per counted token; the
    upstream's usage replaces the sum at the end.
    """
    return min(-(-len(text) // MAX_CHARS_PER_CHUNK_TOKEN), max(0, left))


class _Done:
    """The ``data: [DONE]`` sentinel."""


_DONE = _Done()


def stream_event(line: bytes) -> StreamEvent | _Done | None:
    """One SSE line: an event, the end, or ``None`` for anything else (comments, blank lines)."""
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    try:
        event = stream_events.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise RequestError("upstream sent a malformed stream event", code="internal") from None
    if event.error is not None:
        raise RequestError("upstream reported an error mid-stream", code="internal")
    return event
