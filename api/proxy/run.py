"""One accepted job from the proxy's side: stream or collect its replies, settle usage exactly once.

Token counts come from the agent, which is untrusted (issue 13). What is billed, and shown to the
client, is what the proxy can vouch for:

- each chunk counts ``Chunk.tokens`` clamped to 0..4 per character of its text (at least 0..1): a
  token decodes to at least one byte, and a character is at most 4 UTF-8 bytes;
- the prompt is the reported count clamped to 0..the model's context length (as the agents announce
  it, capped at ``TOKEN_COUNT_CEILING``; that cap alone when no live agent announces it);
- completion tokens are ``max(reported, relayed)`` clamped the same way: a count below what the
  proxy relayed is the agent under-billing, so the relayed count is recorded instead.

A chunk that would take the relayed tokens past ``max_tokens`` (the clamped value the proxy sent)
or the context, or that holds more text than its tokens can, is not relayed: the job ends with an
error and usage records what was relayed. So do the transport's ends (``OVERRUN``, ``FLOODED``,
``MALFORMED``, ``BAD_VERSION``), and the agent is told to stop.

Whenever a count was changed the usage record carries ``counts_corrected``; ``counts_estimated`` when the
agent says it estimated them (its engine reported none).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from litestar import Response
from litestar.response.streaming import Stream

from agent.protocol import Chunk, Error, Final
from api.proxy.channels import (
    AGENT_GONE,
    BAD_VERSION,
    CLIENT_GONE,
    FLOODED,
    KEEPALIVE,
    LOST,
    MALFORMED,
    OVERRUN,
    TIMEOUT,
    Item,
    JobChannel,
    Signal,
)
from api.proxy.errors import OpenAIError
from api.proxy.intake import MAX_CHARS_PER_TOKEN
from api.proxy.job_errors import agent_broke_rules, agent_error, agent_gone, connection_lost, generation_timed_out
from api.proxy.limits import Grant
from api.proxy.registry import TOKEN_COUNT_CEILING
from api.proxy.responses import SSE_ACCEPTED, SSE_KEEPALIVE, Encoder, sse_error
from api.proxy.streaming import guarded_sse
from api.proxy.transport import Transport
from api.proxy.usage import Meter, Outcome

_JSON = "application/json"
VIOLATIONS = (OVERRUN, FLOODED, MALFORMED, BAD_VERSION)
ENDING_SIGNALS = (TIMEOUT, LOST, AGENT_GONE, *VIOLATIONS)


def chunk_tokens(chunk: Chunk) -> int:
    """The tokens a relayed chunk can hold: its reported count within 0..4 per character (0..1 if empty)."""
    tokens = chunk.tokens
    if tokens < 0:
        return 0
    return min(tokens, 4 * len(chunk.text) or 1)


class JobRun:
    """The proxy's half of one accepted job; owns its meter and limit grant from here on."""

    __slots__ = (
        "abandoned",
        "channel",
        "completion_tokens",
        "encoder",
        "grant",
        "max_count",
        "meter",
        "pending",
        "settled",
        "token_limit",
        "transport",
        "watcher",
    )

    def __init__(
        self,
        transport: Transport,
        channel: JobChannel,
        meter: Meter,
        grant: Grant,
        encoder: Encoder,
        context_length: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.max_count = TOKEN_COUNT_CEILING if context_length is None else min(context_length, TOKEN_COUNT_CEILING)
        self.token_limit = self.max_count if max_tokens is None else max(0, min(max_tokens, self.max_count))
        self.transport = transport
        self.channel = channel
        self.meter = meter
        self.grant = grant
        self.encoder = encoder
        self.completion_tokens = 0
        self.settled = False
        self.abandoned = False
        self.pending: Item | None = None  # the job's first word, taken while the dispatcher waited for it
        self.watcher: asyncio.Task[None] | None = None  # tells the job when the client goes away

    def settle(self, outcome: Outcome, prompt_tokens: int = 0, completion_tokens: int | None = None) -> None:
        """Record usage, free the limit slot, forget the channel; once."""
        if self.settled:
            return
        self.settled = True
        meter = self.meter
        meter.agent_id = self.channel.served_by  # from the reply subject NATS vouches for; None if unnamed
        meter.prompt_tokens, meter.completion_tokens = self.vouched(prompt_tokens, completion_tokens)
        meter.finish(outcome)
        self.grant.release(meter.prompt_tokens + meter.completion_tokens)
        self.transport.close_channel(self.channel.job_id)

    def vouched(self, prompt_tokens: int, completion_tokens: int | None) -> tuple[int, int]:
        """The agent's counts as the proxy can vouch for them (see the module); flags the meter if changed."""
        relayed = self.completion_tokens
        reported = relayed if completion_tokens is None else completion_tokens
        prompt = min(max(prompt_tokens, 0), self.max_count)
        completion = min(max(reported, relayed, 0), self.max_count)
        if prompt != prompt_tokens or completion != reported:
            self.meter.counts_corrected = True
        return prompt, completion

    def admits(self, chunk: Chunk) -> bool:
        """Count a chunk as relayed, unless it takes the job past its token limit (then nothing changes)."""
        tokens = chunk_tokens(chunk)
        if self.completion_tokens + tokens > self.token_limit or len(chunk.text) > MAX_CHARS_PER_TOKEN * max(tokens, 1):
            return False
        self.completion_tokens += tokens
        return True

    def abandon(self, outcome: Outcome) -> None:
        """Stop the job on the agent; settle when its last word (with exact counts) arrives or drain ends."""
        if self.settled or self.abandoned:
            return
        self.abandoned = True
        if not self.transport.connected:
            self.settle(outcome)
            return

        def drained(_: JobChannel, last: Final | Error | None) -> None:
            if last is None:
                self.settle(outcome)
            else:
                self.settle(outcome, last.prompt_tokens, last.completion_tokens)

        self.transport.cancel(self.channel, drained)

    async def first_word(self, stream: bool) -> Item:
        """Wait for the job's first reply (for a stream, or a keepalive) and keep it for the response."""
        queue = self.channel.queue
        item = await queue.get()
        while item is KEEPALIVE and not stream:  # a collected response has no use for keepalives
            item = await queue.get()
        self.pending = item
        return item

    def watch(self, receive: Any) -> None:
        """Watch for the client going away: the job's queue gets ``CLIENT_GONE`` (whichever channel it has then)."""
        if self.watcher is None:
            self.watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(receive))

    def unwatch(self) -> None:
        """Stop watching the client (a stream's response watches it from here on)."""
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None

    def _opening(self) -> Item | None:
        """The first word the dispatcher already took (once), else ``None``."""
        item, self.pending = self.pending, None
        return item

    async def events(self) -> AsyncIterator[bytes]:
        """The SSE body: accepted comment, chunks, then the end (or an error event).

        Whatever is already queued when the stream wakes goes out as one body part: one send (one
        socket write) for several chunks when the proxy falls behind, instead of one each.
        """
        queue = self.channel.queue
        encoder = self.encoder
        meter = self.meter
        item = self._opening()
        try:
            yield SSE_ACCEPTED
            while True:
                parts: list[bytes] = []
                if item is None:
                    item = await queue.get()
                while True:
                    if type(item) is Chunk:
                        if not self.admits(item):
                            parts.append(sse_error(self._ended_by(OVERRUN)))
                            yield b"".join(parts)
                            return
                        if meter.ttft_ms is None:
                            meter.first_token()
                        parts.append(encoder.delta(item.text))
                    elif type(item) is Final:
                        prompt, completion = self._finished(item)
                        parts.append(encoder.final(item.finish_reason, prompt, completion))
                        yield b"".join(parts)
                        return
                    elif type(item) is Error:
                        parts.append(sse_error(self._failed(item)))
                        yield b"".join(parts)
                        return
                    elif item is KEEPALIVE:
                        parts.append(SSE_KEEPALIVE)
                    elif item in ENDING_SIGNALS:
                        parts.append(sse_error(self._ended_by(item)))
                        yield b"".join(parts)
                        return
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                item = None
                if parts:
                    yield parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            self.abandon("cancelled")  # a no-op once settled: only a client that left gets here unsettled

    async def collect(self, receive: Any) -> Response[bytes]:
        """The non-streamed body; a client disconnect cancels the job on the agent."""
        self.watch(receive)
        parts: list[str] = []
        queue = self.channel.queue
        item = self._opening()
        try:
            while True:
                if item is None:
                    item = await queue.get()
                if type(item) is Chunk:
                    if not self.admits(item):
                        raise self._ended_by(OVERRUN)
                    if self.meter.ttft_ms is None:
                        self.meter.first_token()
                    parts.append(item.text)
                elif type(item) is Final:
                    prompt, completion = self._finished(item)
                    body = self.encoder.complete("".join(parts), item.finish_reason, prompt, completion)
                    return Response(body, status_code=200, media_type=_JSON)
                elif type(item) is Error:
                    raise self._failed(item)
                elif item in ENDING_SIGNALS:
                    raise self._ended_by(item)
                elif item is CLIENT_GONE:
                    self.abandon("cancelled")
                    return Response(b"", status_code=499)
                item = None
        finally:
            self.unwatch()
            self.abandon("cancelled")

    def _finished(self, final: Final) -> tuple[int, int]:
        """Settle a job the agent finished; the counts as vouched for (billed and shown)."""
        prompt, completion = self.vouched(final.prompt_tokens, final.completion_tokens)
        self.meter.counts_estimated = final.estimated
        self.settle("ok", prompt, completion)
        return prompt, completion

    def _failed(self, error: Error) -> OpenAIError:
        """Settle a job the agent ended with an error; the client-facing error."""
        self.settle("error", error.prompt_tokens, error.completion_tokens)
        return agent_error(error)

    def _ended_by(self, signal: Signal) -> OpenAIError:
        """End a job on a transport signal (no word in time, bus lost, agent gone); the client-facing error."""
        if signal is TIMEOUT:
            self.abandon("timeout")  # the agent may still be generating: cancel it, settle on its last word
            return generation_timed_out()
        self.settle("error")
        if signal in VIOLATIONS:
            self.transport.stop(self.channel)  # it may still be generating; its later replies are dropped
            return agent_broke_rules(signal)
        return connection_lost() if signal is LOST else agent_gone()

    async def _watch_disconnect(self, receive: Any) -> None:
        """Wait for the client to go away and tell the collector."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.channel.queue.put_nowait(CLIENT_GONE)
                return

    def stream_response(self) -> Stream | Response[bytes]:
        """The SSE response; the ASGI layer abandons the job if the client disconnects mid-send."""
        self.unwatch()
        if self.pending is CLIENT_GONE:  # it left while the job waited for its first word
            self.abandon("cancelled")
            return Response(b"", status_code=499)
        return guarded_sse(self.events(), on_close=self.abandon)
