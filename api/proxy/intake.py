"""What the proxy takes from agents, which are untrusted (issue 13): bounded, cheap, version-checked.

Every agent message arrives on the one NATS connection that also carries every other tenant's
replies, so each is judged in O(1) before any decoding: heartbeats by size and per-agent spacing,
replies by their job's budget (see ``channels``). Decoding is a typed msgspec decode of the one
expected shape; a message of another protocol version (``v``) is refused, never half-read.
Refusals are counted by reason (``Counter`` keys like ``heartbeat.too_soon``), never logged one by one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from agent import protocol
from agent.protocol import Chunk, Error, Final, Heartbeat
from api.proxy.registry import AgentRegistry

MAX_HEARTBEAT_BYTES = 64 * 1024  # refused before decoding (128 models with long licences fit)
MAX_MODELS_PER_HEARTBEAT = 128
MAX_MODEL_ID_CHARS = 256
MIN_BEAT_SPACING_S = 0.1  # one agent's beats closer than this are dropped undecoded (agents beat >= 0.2 s)
MAX_SPACING_ENTRIES = 65_536  # agents remembered for spacing; the table restarts when full

# Replies: what one job may hold unread, and how far past ``max_tokens`` its replies may go.
MAX_PENDING_REPLIES = 16_384
MAX_PENDING_CHARS = 8 * 1024 * 1024  # text waiting for the client (raw message size is checked against it)
REPLY_SLACK = 4  # replies beyond max_tokens: text released without a new token (a stop-string prefix)
MAX_CHARS_PER_TOKEN = 256  # no tokenizer's token decodes to more text than this

_heartbeat_decoder = msgspec.msgpack.Decoder(Heartbeat)
_reply_decoder = msgspec.msgpack.Decoder(Chunk | Final | Error)
_BAD = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def decode_checked(decoder: msgspec.msgpack.Decoder[Any], data: bytes) -> tuple[Any, str]:
    """``(message, "")``, or ``(None, "version")`` for another protocol version, ``(None, "malformed")``."""
    try:
        message = decoder.decode(data)
    except _BAD:
        version = protocol.version_of(data)  # a newer release's message fails to decode: say so
        return None, "version" if version is not None and version != protocol.PROTOCOL_VERSION else "malformed"
    if message.v != protocol.PROTOCOL_VERSION:
        return None, "version"
    return message, ""


def decode_reply(data: bytes) -> tuple[Chunk | Final | Error | None, str]:
    """A job reply of this protocol version, or None and why (``version`` or ``malformed``)."""
    return decode_checked(_reply_decoder, data)  # type: ignore[no-any-return]


def heartbeat_problem(beat: Heartbeat) -> str:
    """Why a decoded heartbeat is refused (a counter suffix), or ``""``."""
    if len(beat.models) > MAX_MODELS_PER_HEARTBEAT:
        return "too_many_models"
    for model in beat.models:
        if len(model.id) > MAX_MODEL_ID_CHARS or model.context_length < 1:
            return "bad_model"
    return ""


class HeartbeatIntake:
    """Turns heartbeat messages into registry beats, refusing floods and garbage cheaply."""

    def __init__(self, registry: AgentRegistry, rejected: Counter[str], clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.rejected = rejected
        self._clock = clock
        self._last: dict[str, float] = {}  # subject -> when its last beat was let through

    def take(self, subject: str, data: bytes) -> None:
        """Handle one message on ``ollm.T.hb.A``: the subject (vouched for by NATS) names tenant and agent."""
        now = self._clock()
        last = self._last.get(subject)
        if last is not None and now - last < MIN_BEAT_SPACING_S:
            self.rejected["heartbeat.too_soon"] += 1
            return
        if len(self._last) >= MAX_SPACING_ENTRIES:
            self._last.clear()
        self._last[subject] = now
        if len(data) > MAX_HEARTBEAT_BYTES:
            self.rejected["heartbeat.oversized"] += 1
            return
        beat, problem = decode_checked(_heartbeat_decoder, data)
        if beat is None:
            self.rejected[f"heartbeat.{problem}"] += 1
            return
        tokens = subject.split(".")
        if len(tokens) != 4 or beat.agent_id != tokens[3]:
            self.rejected["heartbeat.impostor"] += 1
            return
        problem = heartbeat_problem(beat)
        if problem:
            self.rejected[f"heartbeat.{problem}"] += 1
        elif not self.registry.beat(tokens[1], beat):
            self.rejected["heartbeat.tenant_full"] += 1

    def prune(self) -> None:
        """Forget spacing entries that can no longer drop anything."""
        horizon = self._clock() - MIN_BEAT_SPACING_S
        self._last = {subject: at for subject, at in self._last.items() if at > horizon}


class ReplyQueue(asyncio.Queue[Any]):
    """A job's queue that also knows how much text it holds unread."""

    def __init__(self) -> None:
        super().__init__()
        self.pending_chars = 0

    def _put(self, item: Any) -> None:
        if type(item) is Chunk:
            self.pending_chars += len(item.text)
        super()._put(item)  # type: ignore[misc]

    def _get(self) -> Any:
        item = super()._get()  # type: ignore[misc]
        if type(item) is Chunk:
            self.pending_chars -= len(item.text)
        return item
