"""The proxy's NATS side: one connection, one reply subscription, per-job queues, a watchdog.

Replies for every job of this instance arrive on one wildcard subscription and are dispatched by
job id to the job's :class:`asyncio.Queue` (see ``channels``); nothing is subscribed per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

from agent import protocol
from agent.protocol import Cancel, flush_in_order
from api.proxy.channels import JobChannel, OnDrained, check_idle, fail_all, take_reply
from api.proxy.intake import HeartbeatIntake
from api.proxy.nats_close import drain_then_close
from api.proxy.registry import AgentRegistry

log = logging.getLogger(__name__)

# Subscription buffers in the client: past them nats-py drops (counted, see ``_on_error``) instead of
# growing; the handlers are O(1) per message, so they fill only if the event loop itself stalls.
REPLY_PENDING = (65_536, 64 * 1024 * 1024)  # messages, bytes
HEARTBEAT_PENDING = (16_384, 16 * 1024 * 1024)
TICK_TENANT = "_proxy"  # ollm._proxy.hb.I: a proxy's own tick (no tenant id looks like this)
REPORT_EVERY_S = 60.0  # how often refusal counts are logged (as totals, never per message)


class Transport:
    """Connection, dispatch and cancel for one proxy instance."""

    def __init__(
        self,
        url: str,
        user: str | None,
        password: str | None,
        instance_id: str,
        registry: AgentRegistry,
        generation_timeout_s: float,
        keepalive_s: float,
        drain_s: float = 2.0,
    ) -> None:
        self.url = url
        self.user = user
        self.password = password
        self.instance_id = instance_id
        self.registry = registry
        self.generation_timeout_s = generation_timeout_s
        self.keepalive_s = keepalive_s
        self.drain_s = drain_s
        self.nc: NATS | None = None
        self.channels: dict[str, JobChannel] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._on_tick: list[Callable[[], None]] = []
        self.rejected: Counter[str] = Counter()  # what agents sent that was refused, by reason
        self.heartbeats = HeartbeatIntake(registry, self.rejected)
        self._tick_subject = protocol.heartbeat_subject(TICK_TENANT, instance_id)
        self._reported: Counter[str] = Counter()
        self._reported_at = time.monotonic()

    @property
    def connected(self) -> bool:
        """Whether jobs can be sent now."""
        return self.nc is not None and self.nc.is_connected

    async def connect(self, ca_file: str | None = None) -> None:
        """Connect (reconnecting forever afterwards) and subscribe to replies and heartbeats.

        A ``tls://`` URL requires TLS from the first byte (``agent.protocol.tls_options``), verified against the
        system's CAs or ``ca_file``.
        """
        self.nc = await nats.connect(
            servers=[self.url],
            **protocol.tls_options(self.url, ca_file),
            user=self.user or None,
            password=self.password or None,
            name=f"ownllm-proxy {self.instance_id}",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
        )
        await self._subscribe(protocol.reply_wildcard(self.instance_id), self._on_reply, REPLY_PENDING)
        await self._subscribe(protocol.HEARTBEAT_WILDCARD, self._on_heartbeat, HEARTBEAT_PENDING)
        await flush_in_order(self.nc)
        self._watchdog = asyncio.create_task(self._watch())

    async def _subscribe(self, subject: str, callback: Callable[[Msg], Any], pending: tuple[int, int]) -> None:
        """Subscribe with deliberate client-side buffer bounds (see ``REPLY_PENDING``)."""
        assert self.nc is not None
        await self.nc.subscribe(subject, cb=callback, pending_msgs_limit=pending[0], pending_bytes_limit=pending[1])

    async def close(self) -> None:
        """Stop the watchdog and close the connection."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        await self._fail_all_and_wait(settle_s=1.0)
        if self.nc is not None:
            await drain_then_close(self.nc, timeout_s=1.0)
        self.nc = None

    def every_tick(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on each watchdog tick (housekeeping)."""
        self._on_tick.append(callback)

    def open(self, job_id: str, tenant_id: str, max_tokens: int = 1 << 21) -> JobChannel:
        """Register a job's channel before its request goes out (replies may beat the accept)."""
        channel = JobChannel(job_id, tenant_id, time.monotonic(), max_tokens)
        self.channels[job_id] = channel
        return channel

    def close_channel(self, job_id: str) -> None:
        """Forget a finished job; late replies are dropped."""
        self.channels.pop(job_id, None)

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """Send a job request and return the answer's bytes (nats-py errors propagate)."""
        assert self.nc is not None
        msg = await self.nc.request(subject, payload, timeout=timeout)
        return msg.data

    def cancel(self, channel: JobChannel, on_drained: OnDrained) -> None:
        """Tell the agents to stop the job; ``on_drained`` gets its last word, or ``None`` after drain_s."""
        channel.on_drained = on_drained
        channel.last_heard = time.monotonic()
        self.stop(channel)

    def stop(self, channel: JobChannel) -> None:
        """Tell the agents to stop the job (fire and forget)."""
        self._spawn(self._publish(protocol.cancel_subject(channel.tenant_id), protocol.encode(Cancel(channel.job_id))))

    def _spawn(self, coro: Any) -> None:
        """Run a coroutine in the background, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, subject: str, payload: bytes) -> None:
        """Publish, logging (not raising) a failure: a lost cancel ends with the agent's own timeout."""
        try:
            if self.nc is not None:
                await self.nc.publish(subject, payload)
        except Exception as exc:
            log.warning("not published on %s: %s", subject.split(".", 2)[-1], type(exc).__name__)

    async def _on_reply(self, msg: Msg) -> None:
        """Dispatch a chunk/final/error to its job (see ``channels.take_reply``)."""
        take_reply(self.channels, self.rejected, msg.subject, msg.data)

    async def _on_heartbeat(self, msg: Msg) -> None:
        """Feed the live-agent registry (the subject names tenant and agent), or note our own tick."""
        if msg.subject == self._tick_subject:
            if len(msg.data) == 8:
                self.registry.heard_until(struct.unpack("!d", msg.data)[0])
        elif not msg.subject.startswith(self._tick_subject[: -len(self.instance_id)]):  # other proxies' ticks
            self.heartbeats.take(msg.subject, msg.data)

    def _tick(self) -> None:
        """Publish a tick on the heartbeat subscription: reading it back tells how far we have read."""
        if self.connected:
            self._spawn(self._publish(self._tick_subject, struct.pack("!d", self.registry.clock())))

    async def _watch(self) -> None:
        """Keepalives, generation timeouts, drain deadlines, and housekeeping, once per tick."""
        tick = max(0.05, min(1.0, self.keepalive_s / 2, self.generation_timeout_s / 4, self.drain_s / 2))
        while True:
            await asyncio.sleep(tick)
            try:
                self._tick()
                self._check_channels(time.monotonic())
                self._report(time.monotonic())
                for callback in self._on_tick:
                    callback()
            except Exception as exc:  # the watchdog must survive a bug in one tick
                log.error("watchdog tick failed: %s", type(exc).__name__)

    def _check_channels(self, now: float) -> None:
        """Signal idle jobs and close drains that waited long enough."""
        check_idle(self.channels, self.registry, now, self.drain_s, self.generation_timeout_s, self.keepalive_s)

    def _report(self, now: float) -> None:
        """Log refusal counts since the last report, at most once per ``REPORT_EVERY_S``; prune spacing."""
        if now - self._reported_at < REPORT_EVERY_S:
            return
        self._reported_at = now
        self.heartbeats.prune()
        new = self.rejected - self._reported
        if new:
            self._reported = self.rejected.copy()
            log.warning("refused from agents: %s", ", ".join(f"{k}={v}" for k, v in sorted(new.items())))

    async def _on_disconnected(self) -> None:
        """Fail every waiting job at once: its replies cannot arrive on this connection."""
        if self.nc is not None and self.nc.is_closed:
            return
        log.warning("disconnected from NATS; %d jobs failed; reconnecting", len(self.channels))
        self._fail_all()

    def _fail_all(self) -> None:
        """Every job's replies are lost: settle the drains now, tell the running jobs."""
        fail_all(self.channels)

    async def _fail_all_and_wait(self, settle_s: float) -> None:
        """At shutdown: fail every job and give their requests a moment to record usage before we go."""
        self._fail_all()
        deadline = time.monotonic() + settle_s
        while self.channels and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _on_reconnected(self) -> None:
        """Log a restored connection (nats-py restores the subscriptions)."""
        log.info("reconnected to NATS")

    async def _on_error(self, exc: Exception) -> None:
        """Log NATS client errors by class (never payloads); count dropped messages (one call each)."""
        if isinstance(exc, SlowConsumerError):
            self.rejected["nats.slow_consumer"] += 1
            return
        log.warning("nats error: %s", type(exc).__name__)
