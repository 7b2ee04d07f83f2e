"""The jobs' channels: where each job's replies and watchdog signals land, and how they get there.

Replies for every job of this proxy instance arrive on one subscription (see ``transport``) and are
dispatched here by job id, after the O(1) checks of ``intake``; the watchdog's signals join them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from agent.protocol import Chunk, Error, Final
from api.proxy.intake import MAX_PENDING_CHARS, MAX_PENDING_REPLIES, REPLY_SLACK, ReplyQueue, decode_reply
from api.proxy.registry import AgentRegistry


class Signal:
    """A watchdog or transport event put into a job's queue next to the agent's messages."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Signal({self.name})"


KEEPALIVE = Signal("keepalive")  # nothing heard for a while: streams send an SSE comment
TIMEOUT = Signal("timeout")  # nothing heard for generation_timeout_s: give up (504)
LOST = Signal("lost")  # the NATS connection dropped: the job's replies cannot arrive
CLIENT_GONE = Signal("client_gone")  # the HTTP client disconnected (non-streaming requests)
AGENT_GONE = Signal("agent_gone")  # the agent running the job missed its heartbeats
# The agent broke the job's rules (issue 13); the job ends and its later replies are dropped unread.
OVERRUN = Signal("overrun")  # more replies than the job's max_tokens allows
FLOODED = Signal("flooded")  # more replies or text waiting unread than a job may hold
MALFORMED = Signal("malformed")  # a reply that does not decode
BAD_VERSION = Signal("bad_version")  # a reply in another protocol version


Item = Chunk | Final | Error | Signal
OnDrained = Callable[["JobChannel", "Final | Error | None"], None]


class JobChannel:
    """Where one job's replies land; after a cancel it drains until the agent's last word."""

    __slots__ = (
        "agent_id",
        "ended",
        "job_id",
        "last_heard",
        "last_keepalive",
        "max_replies",
        "on_drained",
        "queue",
        "received",
        "served_by",
        "tenant_id",
    )

    def __init__(self, job_id: str, tenant_id: str, now: float, max_tokens: int = 1 << 21) -> None:
        self.job_id = job_id
        self.tenant_id = tenant_id
        self.queue = ReplyQueue()
        self.max_replies = max_tokens + REPLY_SLACK + 1  # chunks, then the final word
        self.received = 0
        self.ended = False  # the agent broke the rules: drop whatever else it sends
        self.last_heard = now
        self.last_keepalive = now
        self.on_drained: OnDrained | None = None
        self.agent_id: str | None = None  # whom the watchdog watches (the accept's claim, then served_by)
        self.served_by: str | None = None  # the agent named by the subject of its first reply (NATS vouches)


def settle_drain(channels: dict[str, JobChannel], channel: JobChannel, last: Final | Error | None) -> None:
    """Forget a draining job and hand its canceller the agent's last word (``None``: none came)."""
    channels.pop(channel.job_id, None)
    assert channel.on_drained is not None
    channel.on_drained(channel, last)


def take_reply(channels: dict[str, JobChannel], rejected: Counter[str], subject: str, data: bytes) -> None:
    """Dispatch a chunk/final/error to its job (``ollm.T.reply.I.J[.A]``, within the job's tenant).

    A sixth token names the agent: only that agent may publish there (``agent_permissions``).
    Everything before the decode is O(1): a flood for unknown, ended or full jobs costs no decoding.
    """
    tokens = subject.split(".")
    channel = channels.get(tokens[4]) if len(tokens) in (5, 6) else None
    if channel is None or channel.ended or tokens[1] != channel.tenant_id:
        rejected["reply.no_job"] += 1  # never into another tenant's job, nor a finished one
        return
    channel.received += 1
    if channel.received > channel.max_replies:
        end_job(channels, rejected, channel, OVERRUN, "reply.beyond_max_tokens")
        return
    queue = channel.queue
    if queue.qsize() >= MAX_PENDING_REPLIES or queue.pending_chars + len(data) > MAX_PENDING_CHARS:
        end_job(channels, rejected, channel, FLOODED, "reply.flooded")
        return
    if len(tokens) == 6 and channel.served_by is None:
        channel.served_by = channel.agent_id = tokens[5]
    message, problem = decode_reply(data)
    if message is None:
        end_job(channels, rejected, channel, BAD_VERSION if problem == "version" else MALFORMED, f"reply.{problem}")
        return
    channel.last_heard = time.monotonic()
    if channel.on_drained is not None:
        if not isinstance(message, Chunk):
            settle_drain(channels, channel, message)
        return
    queue.put_nowait(message)


def end_job(
    channels: dict[str, JobChannel], rejected: Counter[str], channel: JobChannel, signal: Signal, reason: str
) -> None:
    """End a job whose agent broke the rules: its request settles with what was relayed."""
    rejected[reason] += 1
    channel.ended = True
    if channel.on_drained is not None:
        settle_drain(channels, channel, None)
    else:
        channel.queue.put_nowait(signal)


def check_idle(
    channels: dict[str, JobChannel], registry: AgentRegistry, now: float, drain_s: float, timeout_s: float,
    keepalive_s: float,
) -> None:  # fmt: skip
    """Signal idle jobs and close drains that waited long enough (once per watchdog tick)."""
    for channel in list(channels.values()):
        idle = now - channel.last_heard
        if channel.on_drained is not None:
            if idle >= drain_s:
                settle_drain(channels, channel, None)
        elif idle >= timeout_s:
            channel.last_heard = now
            channel.queue.put_nowait(TIMEOUT)
        elif channel.agent_id is not None and registry.gone(channel.tenant_id, channel.agent_id):
            channel.agent_id = None  # signal once
            channel.queue.put_nowait(AGENT_GONE)
        elif now - max(channel.last_heard, channel.last_keepalive) >= keepalive_s:
            channel.last_keepalive = now
            channel.queue.put_nowait(KEEPALIVE)


def fail_all(channels: dict[str, JobChannel]) -> None:
    """Every job's replies are lost: settle the drains now, tell the running jobs."""
    for channel in list(channels.values()):
        if channel.on_drained is not None:
            settle_drain(channels, channel, None)
        else:
            channel.queue.put_nowait(LOST)
