"""The NATS worker against a real nats-server: jobs, busy, cancel, heartbeats, queue groups, permissions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from agent import protocol
from agent.backends.echo import EchoBackend
from agent.intake import parse_job
from agent.protocol import Accepted, Cancel, ChatMessage, Chunk, Error, Final, Heartbeat, Job, Sampling, flush_in_order
from agent.worker import Worker, WorkerConfig
from tests.support.nats import NatsServer, users_config

TENANT = "tenant-a"
PROXY = "proxy-1"
Factory = Callable[..., NatsServer]


def make_job(text: str, model: str = "echo", **sampling: object) -> Job:
    """A chat job addressed to the tenant's echo model."""
    job_id = uuid.uuid4().hex
    return Job(
        job_id=job_id,
        tenant_id=TENANT,
        model=model,
        kind="chat",
        reply_to=protocol.reply_subject(TENANT, PROXY, job_id),
        messages=(ChatMessage("user", text),),
        sampling=Sampling(**sampling),  # type: ignore[arg-type]
    )


class Proxy:
    """A minimal test-side proxy: sends jobs, collects each job's reply stream."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.replies: dict[str, asyncio.Queue[protocol.Message]] = {}

    async def start(self) -> Proxy:
        """Subscribe to this instance's reply wildcard."""
        await self.nc.subscribe(protocol.reply_wildcard(PROXY), cb=self._on_reply)
        await flush_in_order(self.nc)
        return self

    async def _on_reply(self, msg: nats.aio.msg.Msg) -> None:
        message = protocol.decode(msg.data)
        self.replies.setdefault(message.job_id, asyncio.Queue()).put_nowait(message)  # type: ignore[union-attr]

    async def submit(self, job: Job, timeout: float = 2.0) -> Accepted | Error:
        """Send a job as a request; return the agent's answer."""
        self.replies.setdefault(job.job_id, asyncio.Queue())
        subject, payload = protocol.job_subject(TENANT, job.model), protocol.encode(job)
        reply = await self.nc.request(subject, payload, timeout)  # a started worker's subscriptions are there
        answer = protocol.decode(reply.data)
        assert isinstance(answer, Accepted | Error)
        return answer

    async def submit_when_served(self, job: Job, within_s: float) -> Accepted | Error:
        """Submit until an agent answers (after a server restart, or while an agent process starts)."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                return await self.submit(job, timeout=0.5)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def stream(self, job_id: str, timeout: float = 5.0) -> tuple[list[Chunk], Final | Error]:
        """Chunks until the Final or Error of a job."""
        chunks: list[Chunk] = []
        queue = self.replies.setdefault(job_id, asyncio.Queue())
        while True:
            message = await asyncio.wait_for(queue.get(), timeout)
            if isinstance(message, Chunk):
                chunks.append(message)
            else:
                assert isinstance(message, Final | Error)
                return chunks, message

    async def cancel(self, job_id: str) -> None:
        """Broadcast a cancel to the tenant's agents."""
        await self.nc.publish(protocol.cancel_subject(TENANT), protocol.encode(Cancel(job_id)))


@pytest.fixture
async def server(nats_server_factory: Factory) -> NatsServer:
    return nats_server_factory()


@pytest.fixture
async def proxy(server: NatsServer) -> AsyncIterator[Proxy]:
    nc = await nats.connect(server.url)
    yield await Proxy(nc).start()
    await nc.close()


async def start_worker(server: NatsServer, agent_id: str = "agent-1", **kw: object) -> Worker:
    """A started worker on the echo backend."""
    delay = float(kw.pop("token_delay_s", 0.0))  # type: ignore[arg-type]
    capacity = int(kw.pop("backend_capacity", 4))  # type: ignore[call-overload]
    backend = EchoBackend(token_delay_s=delay, capacity=capacity)
    backend.load()
    worker = Worker(backend, WorkerConfig(agent_id=agent_id, tenant_id=TENANT, nats_url=server.url, **kw))  # type: ignore[arg-type]
    await worker.start()
    return worker


async def test_job_accepted_chunks_final(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server)
    try:
        job = make_job("hello from the other side")
        answer = await proxy.submit(job)
        assert answer == Accepted(job_id=job.job_id, agent_id="agent-1", queued=False)
        chunks, final = await proxy.stream(job.job_id)
        assert [c.seq for c in chunks] == list(range(5))
        assert "".join(c.text for c in chunks) == "hello from the other side"
        assert final == Final(job.job_id, 5, "stop", prompt_tokens=5, completion_tokens=5)
    finally:
        await worker.stop()


async def test_stop_string_and_max_tokens_over_the_wire(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server)
    try:
        job = make_job("one two three four five", stop=("three",))
        await proxy.submit(job)
        chunks, final = await proxy.stream(job.job_id)
        assert "".join(c.text for c in chunks) == "one two "
        assert isinstance(final, Final) and final.finish_reason == "stop"
        job = make_job("one two three four five", max_tokens=2)
        await proxy.submit(job)
        chunks, final = await proxy.stream(job.job_id)
        assert "".join(c.text for c in chunks) == "one two"
        assert isinstance(final, Final) and (final.finish_reason, final.completion_tokens) == ("length", 2)
    finally:
        await worker.stop()


async def test_busy_when_queue_full(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server, token_delay_s=0.05, capacity=1, queue_limit=1, retry_after_s=2.5)
    try:
        long = " ".join(["word"] * 100)
        first, second, third = make_job(long), make_job(long), make_job(long)
        assert await proxy.submit(first) == Accepted(first.job_id, "agent-1", queued=False)
        assert await proxy.submit(second) == Accepted(second.job_id, "agent-1", queued=True)
        refused = await proxy.submit(third)
        assert isinstance(refused, Error)
        assert (refused.code, refused.retry_after_s, refused.job_id) == ("busy", 2.5, third.job_id)
        assert (worker.in_flight, worker.queued) == (1, 1)
        await proxy.cancel(first.job_id)
        await proxy.cancel(second.job_id)
        _, final1 = await proxy.stream(first.job_id)
        _, final2 = await proxy.stream(second.job_id)
        assert isinstance(final1, Final) and final1.finish_reason == "cancelled"
        assert final2 == Final(second.job_id, 0, "cancelled", prompt_tokens=100, completion_tokens=0)
    finally:
        await worker.stop()


async def test_cancel_stops_within_one_second(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server, token_delay_s=0.05)
    try:
        job = make_job(" ".join(f"w{i}" for i in range(1000)))
        await proxy.submit(job)
        queue = proxy.replies[job.job_id]
        first = await asyncio.wait_for(queue.get(), 2)
        assert isinstance(first, Chunk)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await proxy.cancel(job.job_id)
        chunks, final = await proxy.stream(job.job_id, timeout=1.0)
        assert loop.time() - sent < 1.0
        assert isinstance(final, Final) and final.finish_reason == "cancelled"
        assert final.completion_tokens == 1 + len(chunks) < 1000
        assert worker.in_flight == 0
    finally:
        await worker.stop()


async def test_model_not_loaded_and_bad_versions(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server)
    try:
        job = make_job("hi")
        nc = proxy.nc
        # A job naming a model this agent does not serve, arriving on a subject it listens on.
        other = msgspec.structs.replace(job, model="llama")
        reply = await nc.request(protocol.job_subject(TENANT, "echo"), protocol.encode(other), 2)
        assert protocol.decode(reply.data) == Error(other.job_id, "model_not_loaded", "model is not loaded here")
        newer = msgspec.msgpack.encode({**msgspec.to_builtins(job), "type": "job", "v": 2, "priority": 9})
        reply = await nc.request(protocol.job_subject(TENANT, "echo"), newer, 2)
        answer = protocol.decode(reply.data)
        assert isinstance(answer, Error) and (answer.code, answer.job_id) == (
            "unsupported_version",
            job.job_id,
        )
        v2 = msgspec.structs.replace(job, v=2)
        reply = await nc.request(protocol.job_subject(TENANT, "echo"), protocol.encode(v2), 2)
        assert protocol.decode(reply.data).code == "unsupported_version"  # type: ignore[union-attr]
        reply = await nc.request(protocol.job_subject(TENANT, "echo"), b"\x93garbage", 2)
        assert protocol.decode(reply.data).code == "bad_request"  # type: ignore[union-attr]
    finally:
        await worker.stop()


def test_parse_job_classifies() -> None:
    job = make_job("x")
    assert parse_job(protocol.encode(job)) == job
    assert isinstance(parse_job(protocol.encode(Cancel("j"))), Error)


def test_parse_job_serves_a_newer_minor_release_and_refuses_another_version() -> None:
    job = make_job("x")
    newer = {**msgspec.to_builtins(job), "type": "job", "priority": 9}  # a later release added a field
    assert parse_job(msgspec.msgpack.encode(newer)) == job
    assert parse_job(msgspec.msgpack.encode({**newer, "v": 2})) == Error(
        job.job_id, "unsupported_version", "protocol version 2 is not supported (this agent: 1)"
    )
    unknown = parse_job(msgspec.msgpack.encode({"type": "preempt", "job_id": "j9", "v": 1}))
    assert unknown == Error("j9", "bad_request", "malformed job message (ValidationError)")


async def test_heartbeat_content(server: NatsServer, proxy: Proxy) -> None:
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        beat = protocol.decode(msg.data)
        assert isinstance(beat, Heartbeat)
        beats.put_nowait(beat)

    await proxy.nc.subscribe(protocol.HEARTBEAT_WILDCARD, cb=on_beat)
    await flush_in_order(proxy.nc)
    worker = await start_worker(server, agent_id="agent-hb", heartbeat_interval_s=0.1, capacity=2, token_delay_s=0.05)
    try:
        beat = await asyncio.wait_for(beats.get(), 2)
        assert (beat.agent_id, beat.tenant_id, beat.capacity, beat.interval_s) == ("agent-hb", TENANT, 2, 0.1)
        assert [m.id for m in beat.models] == ["echo"] and beat.models[0].backend == "echo"
        assert (beat.in_flight, beat.queued) == (0, 0)
        jobs = [make_job(" ".join(["w"] * 200)) for _ in range(3)]
        for job in jobs:
            await proxy.submit(job)
        while True:
            beat = await asyncio.wait_for(beats.get(), 2)
            if beat.in_flight:
                break
        assert (beat.in_flight, beat.queued) == (2, 1)
        for job in jobs:
            await proxy.cancel(job.job_id)
    finally:
        await worker.stop()


async def test_queue_group_shares_load_and_survives_a_worker(server: NatsServer, proxy: Proxy) -> None:
    w1 = await start_worker(server, agent_id="agent-1")
    w2 = await start_worker(server, agent_id="agent-2")
    try:
        agents = []
        for _ in range(40):
            answer = await proxy.submit(make_job("a b c"))
            assert isinstance(answer, Accepted)
            agents.append(answer.agent_id)
            await proxy.stream(answer.job_id)
        assert set(agents) == {"agent-1", "agent-2"}
        await w1.stop()
        for _ in range(10):
            job = make_job("still here")
            answer = await proxy.submit(job, timeout=5.0)  # generous: CI machines share 2 cores
            assert answer == Accepted(job.job_id, "agent-2")
            _, final = await proxy.stream(job.job_id)
            assert isinstance(final, Final) and final.completion_tokens == 2
    finally:
        await w1.stop()
        await w2.stop()


async def test_worker_reconnects_after_server_restart(server: NatsServer) -> None:
    worker = await start_worker(server, reconnect_wait_s=0.1)
    try:
        server.restart()
        nc = await nats.connect(server.url)
        try:
            proxy = await Proxy(nc).start()
            job = make_job("back again")
            answer = await proxy.submit_when_served(job, within_s=15.0)
            assert answer == Accepted(job.job_id, "agent-1")
            chunks, final = await proxy.stream(job.job_id)
            assert "".join(c.text for c in chunks) == "back again"
            assert isinstance(final, Final)
        finally:
            await nc.close()
    finally:
        await worker.stop()


async def test_agent_permissions_confine_to_own_tenant(nats_server_factory: Factory) -> None:
    users = [
        {"user": "agent-a", "password": "pw-a", "permissions": protocol.agent_permissions(TENANT, "agent-a")},
        {"user": "proxy", "password": "pw-p"},
    ]
    server = nats_server_factory(users_config(users))
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    agent_nc = await nats.connect(server.url, user="agent-a", password="pw-a", error_cb=on_error)
    proxy_nc = await nats.connect(server.url, user="proxy", password="pw-p")
    try:
        # Its own tenant works end to end through a real worker with the same user.
        worker = Worker(EchoBackend(), WorkerConfig("agent-a", TENANT, server.url, "agent-a", "pw-a"))
        await worker.start()
        proxy = await Proxy(proxy_nc).start()
        job = make_job("allowed")
        assert isinstance(await proxy.submit(job), Accepted)
        _, final = await proxy.stream(job.job_id)
        assert isinstance(final, Final)
        await worker.stop()

        # Tenant B: subscribing to its jobs and publishing on its reply/heartbeat subjects is refused.
        await agent_nc.subscribe("ollm.tenant-b.job.echo", queue="q-echo")
        await flush_in_order(agent_nc)
        await agent_nc.publish(protocol.reply_subject("tenant-b", PROXY, "j"), b"x")
        await agent_nc.publish(protocol.heartbeat_subject("tenant-b", "agent-a"), b"x")
        await flush_in_order(agent_nc)
        for _ in range(50):
            if len(errors) >= 3:
                break
            await asyncio.sleep(0.05)
        texts = [str(e).lower() for e in errors]
        assert all(isinstance(e, nats.errors.Error) for e in errors)
        assert any('permissions violation for subscription to "ollm.tenant-b.job.echo"' in t for t in texts)
        assert any('permissions violation for publish to "ollm.tenant-b.reply.' in t for t in texts)
        assert any('permissions violation for publish to "ollm.tenant-b.hb.agent-a"' in t for t in texts)
        # And nothing leaked: a proxy on tenant B's job subject has no responders from this agent.
        with pytest.raises(nats.errors.NoRespondersError):
            await proxy_nc.request("ollm.tenant-b.job.echo", protocol.encode(make_job("no")), 0.5)
    finally:
        await agent_nc.close()
        await proxy_nc.close()


async def test_cli_serve_end_to_end(nats_server_factory: Factory, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from agent import credentials as creds

    server = nats_server_factory()
    path = creds.save(creds.Credentials("agent-cli", TENANT, server.url, "", ""), tmp_path / "c.json")
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "OWNLLM_AGENT_HEARTBEAT_INTERVAL_S": "0.2",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "serve",
            "--backend",
            "echo",
            "--no-builtin",
            "--credentials",
            str(path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    nc = await nats.connect(server.url)
    try:
        proxy = await Proxy(nc).start()
        job = make_job("served by the cli")
        answer = await proxy.submit_when_served(job, within_s=30.0)
        assert answer == Accepted(job.job_id, "agent-cli")
        chunks, final = await proxy.stream(job.job_id)
        assert "".join(c.text for c in chunks) == "served by the cli"
        assert isinstance(final, Final)
    finally:
        await nc.close()
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, output
    assert "backend: echo" in output
    assert "served by the cli" not in output  # no content in logs
    assert job.job_id in output  # job ids are logged


async def test_a_job_whose_accept_cannot_be_sent_frees_its_place(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server)
    real_answer = worker._answer
    failures = [ConnectionError("outbound buffer full")]

    async def flaky_answer(msg: nats.aio.msg.Msg, answer: Accepted | Error) -> None:
        if failures and isinstance(answer, Accepted):
            raise failures.pop()
        await real_answer(msg, answer)

    worker._answer = flaky_answer  # type: ignore[method-assign]
    try:
        lost = make_job("never accepted")
        with pytest.raises(nats.errors.TimeoutError):
            await proxy.submit(lost, timeout=0.3)
        assert (worker.queued, worker.in_flight) == (0, 0)  # no phantom job holding a place
        job = make_job("next one")
        assert await proxy.submit(job) == Accepted(job.job_id, "agent-1")
        _, final = await proxy.stream(job.job_id)
        assert isinstance(final, Final)
    finally:
        await worker.stop()


async def test_a_queued_job_cancelled_ends_at_once_not_when_a_slot_frees(server: NatsServer, proxy: Proxy) -> None:
    worker = await start_worker(server, token_delay_s=0.05, capacity=1, queue_limit=2)
    try:
        long = " ".join(["word"] * 100)  # about 5 s of generation
        running, waiting = make_job(long), make_job("three short words")
        assert await proxy.submit(running) == Accepted(running.job_id, "agent-1", queued=False)
        assert await proxy.submit(waiting) == Accepted(waiting.job_id, "agent-1", queued=True)
        started = time.monotonic()
        await proxy.cancel(waiting.job_id)
        _, final = await proxy.stream(waiting.job_id, timeout=2.0)
        assert final == Final(waiting.job_id, 0, "cancelled", prompt_tokens=3, completion_tokens=0)
        assert time.monotonic() - started < 1.0
        assert (worker.in_flight, worker.queued) == (1, 0)  # the running job kept its slot
        await proxy.cancel(running.job_id)
        _, last = await proxy.stream(running.job_id)
        assert isinstance(last, Final) and last.finish_reason == "cancelled"
    finally:
        await worker.stop()
