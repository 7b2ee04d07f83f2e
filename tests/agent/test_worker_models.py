"""A backend whose models come and go (``Monitored``): the worker announces each change at once and routes by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import nats
import pytest

from agent import protocol
from agent.backends.echo import EchoBackend
from agent.protocol import Accepted, Heartbeat, flush_in_order
from agent.worker import Worker, WorkerConfig
from tests.agent.test_worker import TENANT, Factory, Proxy, make_job
from tests.support.nats import NatsServer


@pytest.fixture
async def server(nats_server_factory: Factory) -> NatsServer:
    return nats_server_factory()


@pytest.fixture
async def proxy(server: NatsServer) -> AsyncIterator[Proxy]:
    nc = await nats.connect(server.url)
    yield await Proxy(nc).start()
    await nc.close()


class ShiftingEcho(EchoBackend):
    """Echo whose model list the test changes; it reports each change like an upstream poll would."""

    def __init__(self) -> None:
        super().__init__(model_ids=("a",))
        self.changed = asyncio.Event()

    def serve(self, *ids: str) -> None:
        self.model_ids = ids
        self.changed.set()

    async def refresh(self) -> bool:
        return False  # the list is the test's: nothing to ask at start

    async def monitor(self, changed: Callable[[], None]) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            changed()


async def test_models_join_and_leave_the_queue_groups_and_heartbeats_at_once(server: NatsServer, proxy: Proxy) -> None:
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        beats.put_nowait(protocol.decode(msg.data))  # type: ignore[arg-type]

    await proxy.nc.subscribe(protocol.HEARTBEAT_WILDCARD, cb=on_beat)
    await flush_in_order(proxy.nc)
    backend = ShiftingEcho()
    backend.load()
    worker = Worker(backend, WorkerConfig("agent-s", TENANT, server.url, heartbeat_interval_s=30))
    await worker.start()
    try:
        assert [m.id for m in (await asyncio.wait_for(beats.get(), 2)).models] == ["a"]
        backend.serve("b")
        beat = await asyncio.wait_for(beats.get(), 2)  # long before the 30 s interval
        assert [m.id for m in beat.models] == ["b"]
        job = make_job("routed to b", model="b")
        assert isinstance(await proxy.submit(job), Accepted)
        chunks, _ = await proxy.stream(job.job_id)
        assert "".join(c.text for c in chunks) == "routed to b"
        try:
            answer = await proxy.nc.request(protocol.job_subject(TENANT, "a"), protocol.encode(make_job("x")), 0.5)
        except nats.errors.NoRespondersError:
            answer = None
        assert answer is None  # nobody listens for `a` any more: the proxy answers at once
        backend.serve()
        assert (await asyncio.wait_for(beats.get(), 2)).models == ()
    finally:
        await worker.stop()
