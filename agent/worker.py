"""The NATS worker: takes jobs for its tenant's models, runs them on a backend, streams results back.

Core NATS only (no JetStream): nothing is stored. Logs carry job ids and counts, never content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agent import protocol
from agent.backends.base import Backend, Monitored
from agent.intake import parse_job
from agent.job_run import JobState, Publish, run_job
from agent.protocol import Accepted, Cancel, Chunk, Error, Final, Heartbeat, Job, flush_in_order
from agent.slots import Slots

log = logging.getLogger("ownllm.agent.worker")


class WorkerConfig(msgspec.Struct, frozen=True):
    """Who the worker is, where NATS is, and how much it takes on."""

    agent_id: str
    tenant_id: str
    nats_url: str
    nats_user: str | None = None
    nats_password: str | None = None
    nats_ca_file: str | None = None  # a private CA for tls:// or wss:// (default: the system's CAs)
    capacity: int | None = None  # None: the backend's own capacity
    queue_limit: int = 8
    heartbeat_interval_s: float = 5.0
    retry_after_s: float = 1.0
    reconnect_wait_s: float = 0.5


class Worker:
    """Serves one tenant's jobs from NATS with a bounded queue in front of the backend."""

    def __init__(self, backend: Backend, config: WorkerConfig) -> None:
        self.backend = backend
        self.config = config
        self.nc: NATS | None = None
        self._jobs: dict[str, JobState] = {}
        self._slots = Slots(config.capacity or backend.capacity)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._beat_now = asyncio.Event()  # the backend's models changed: announce at once
        self._stopped = asyncio.Event()
        self._closing = False
        self._stopping = False
        self._job_subs: dict[str, tuple[Subscription, ...]] = {}  # per model: queue group, by name
        self._model_ids = {m.id for m in backend.models()}

    @property
    def capacity(self) -> int:
        """Jobs run at once (the slots'): the setting, else the backend's of the moment."""
        return self._slots.capacity

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        return sum(1 for s in self._jobs.values() if s.running)

    @property
    def queued(self) -> int:
        """Jobs accepted and waiting for a slot."""
        return len(self._jobs) - self.in_flight

    async def start(self) -> None:
        """Connect, subscribe to jobs and cancels, and start heartbeats."""
        cfg = self.config
        self.nc = await nats.connect(
            servers=[cfg.nats_url],
            **protocol.tls_options(cfg.nats_url, cfg.nats_ca_file),
            user=cfg.nats_user,
            password=cfg.nats_password,
            name=f"ownllm-agent {cfg.agent_id}",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=cfg.reconnect_wait_s,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        if isinstance(self.backend, Monitored):
            await self.backend.refresh()  # the first listing: start announces what the upstream serves
        self._sync_capacity()
        await self._sync_models()
        await self.nc.subscribe(protocol.cancel_subject(cfg.tenant_id), cb=self._on_cancel)
        await flush_in_order(self.nc)  # the job subscriptions are the server's when start returns
        self._heartbeat_task = asyncio.create_task(self._heartbeats())
        if isinstance(self.backend, Monitored):
            self._monitor_task = asyncio.create_task(self.backend.monitor(self._beat_now.set))

    def _sync_capacity(self) -> None:
        """Follow the backend's capacity (an upstream reports its own when it answers) unless it was set."""
        if self.config.capacity or max(1, self.backend.capacity) == self.capacity:
            return
        self._slots.resize(self.backend.capacity)
        log.info("capacity now %d", self.capacity)

    async def _sync_models(self) -> None:
        """Join the queue group of every model the backend serves now, and leave those it no longer serves."""
        assert self.nc is not None
        current = {m.id for m in self.backend.models()}
        for model in sorted(set(self._job_subs) - current):
            for sub in self._job_subs.pop(model):
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # a closed connection has dropped it already
                    log.warning("job subscription not removed: %s", type(exc).__name__)
            log.info("no longer serving model %s", model)
        for model in sorted(current - set(self._job_subs)):
            if self._stopping:
                return
            subject = protocol.job_subject(self.config.tenant_id, model)
            shared = await self.nc.subscribe(subject, queue=protocol.queue_group(model), cb=self._on_job)
            # Offers by name: a job another agent answered ``busy`` before any text comes here alone.
            named = protocol.direct_job_subject(self.config.tenant_id, model, self.config.agent_id)
            self._job_subs[model] = (shared, await self.nc.subscribe(named, cb=self._on_job))
            log.info("serving model %s on %s", model, subject)
        self._model_ids = current

    async def serve_forever(self) -> None:
        """Start and run until :meth:`stop` is called."""
        await self.start()
        await self._stopped.wait()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking jobs, cancel running ones, and close the connection."""
        self._stopping = True
        # The heartbeat task re-joins queue groups (_sync_models): stop it first, or a sync already under
        # way could subscribe again after the groups were left, and jobs would be routed to a leaving agent.
        for task in (self._heartbeat_task, self._monitor_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._leave_queue_groups()
        for state in list(self._jobs.values()):
            self._cancel_state(state)
        tasks = [s.task for s in self._jobs.values() if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        self._closing = True
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
        closer = getattr(self.backend, "aclose", None)  # backends holding connections (openai)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
        self._stopped.set()

    async def _leave_queue_groups(self) -> None:
        """Unsubscribe from jobs and wait until the server knows, so no new job is routed here.

        Jobs the server delivered before that are answered ``stopping`` and the proxy offers them
        to another agent; without this a job sent in the gap would wait for the accept timeout.
        """
        subs = [sub for pair in self._job_subs.values() for sub in pair]
        self._job_subs = {}
        if self.nc is None or not self.nc.is_connected:
            return
        for sub in subs:
            try:
                await asyncio.wait_for(sub.drain(), timeout=2.0)
            except Exception as exc:  # a closed connection has nothing left to drain
                log.warning("job subscription not drained: %s", type(exc).__name__)

    def heartbeat(self) -> Heartbeat:
        """The heartbeat describing this worker right now."""
        return Heartbeat(
            agent_id=self.config.agent_id,
            tenant_id=self.config.tenant_id,
            models=tuple(self.backend.models()),
            capacity=self.capacity,
            in_flight=self.in_flight,
            queued=self.queued,
            interval_s=self.config.heartbeat_interval_s,
        )

    async def _heartbeats(self) -> None:
        """Publish a heartbeat now, every interval, and at once when the backend's models change."""
        subject = protocol.heartbeat_subject(self.config.tenant_id, self.config.agent_id)
        while True:
            self._beat_now.clear()
            if self.nc is not None and self.nc.is_connected:
                try:
                    if not self._stopping:
                        self._sync_capacity()
                        await self._sync_models()
                    await self.nc.publish(subject, protocol.encode(self.heartbeat()))
                except Exception as exc:  # keep beating through reconnects
                    log.warning("heartbeat not sent: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.config.heartbeat_interval_s)

    async def _on_job(self, msg: Msg) -> None:
        """Answer a job request with Accepted or Error, then run it in the background."""
        parsed = parse_job(msg.data)
        if isinstance(parsed, Error):
            log.warning("refused job %s: %s", parsed.job_id or "?", parsed.code)
            await self._answer(msg, parsed)
            return
        job = parsed
        refusal = self._refusal(job)
        if refusal is not None:
            log.info("refused job %s: %s", job.job_id, refusal.code)
            await self._answer(msg, refusal)
            return
        queued = len(self._jobs) >= self.capacity
        state = JobState(job=job)
        self._jobs[job.job_id] = state  # before the await: a cancel may arrive while we answer
        try:
            await self._answer(msg, Accepted(job_id=job.job_id, agent_id=self.config.agent_id, queued=queued))
        except Exception as exc:  # the proxy never heard "accepted": it times out; free the slot
            self._jobs.pop(job.job_id, None)
            log.warning("could not accept job %s: %s", job.job_id, type(exc).__name__)
            return
        state.task = asyncio.create_task(self._run(state))
        log.info("accepted job %s (queued=%s)", job.job_id, queued)

    def _refusal(self, job: Job) -> Error | None:
        """Why this job cannot be taken now, if it cannot."""
        if self._stopping:
            return Error(job_id=job.job_id, code="stopping", message="agent is shutting down")
        if job.tenant_id != self.config.tenant_id:
            return Error(job_id=job.job_id, code="bad_request", message="job is for another tenant")
        if job.model not in self._model_ids:
            return Error(job_id=job.job_id, code="model_not_loaded", message="model is not loaded here")
        if job.job_id in self._jobs:
            return Error(job_id=job.job_id, code="bad_request", message="duplicate job id")
        if len(self._jobs) >= self.capacity + self.config.queue_limit:
            return Error(
                job_id=job.job_id,
                code="busy",
                message=f"capacity {self.capacity} and queue {self.config.queue_limit} are full",
                retry_after_s=self.config.retry_after_s,
            )
        return None

    async def _answer(self, msg: Msg, answer: Accepted | Error) -> None:
        """Reply on the request's inbox (if it was a request)."""
        if msg.reply and self.nc is not None:
            await self.nc.publish(msg.reply, protocol.encode(answer))

    async def _run(self, state: JobState) -> None:
        """Run an accepted job to its Final or Error, then forget it."""
        try:
            await run_job(state, self.backend, self._slots, self._publisher(state.job))
        finally:
            self._jobs.pop(state.job.job_id, None)

    def _publisher(self, job: Job) -> Publish:
        """What sends one message to the job's reply subject."""
        nc = self.nc
        assert nc is not None
        reply_as_agent = job.reply_as_agent
        subject = protocol.agent_reply_subject(job.reply_to, self.config.agent_id) if reply_as_agent else job.reply_to

        async def publish(message: Chunk | Final | Error) -> None:
            await nc.publish(subject, protocol.encode(message))

        return publish

    async def _on_cancel(self, msg: Msg) -> None:
        """Cancel a job this worker holds (cancels for other agents' jobs are ignored)."""
        try:
            message = protocol.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("ignored a malformed cancel")
            return
        if not isinstance(message, Cancel):
            return
        state = self._jobs.get(message.job_id)
        if state is not None:
            self._cancel_state(state)
            log.info("cancel requested for job %s", message.job_id)

    def _cancel_state(self, state: JobState) -> None:
        """Mark a job cancelled: tell the backend if it runs, wake it at once if it waits for a slot."""
        if state.cancelled:
            return
        state.cancelled = True
        if state.running:
            self.backend.cancel(state.job.job_id)
        elif state.waiting and state.task is not None:
            state.task.cancel()

    async def _on_error(self, exc: Exception) -> None:
        """Log NATS errors (never message content)."""
        log.warning("nats error: %s: %s", type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        """Log a lost connection; nats-py keeps reconnecting."""
        if not self._closing:
            log.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        """Log a restored connection (subscriptions are restored by the client)."""
        log.info("reconnected to NATS")
