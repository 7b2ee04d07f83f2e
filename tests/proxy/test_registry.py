"""Who the proxy believes is alive and where replies may land: the subject, which NATS vouches for, decides."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from agent import protocol
from agent.protocol import Chunk, Heartbeat, ModelInfo
from api.proxy import InferenceGateway
from api.proxy.channels import LOST
from api.proxy.registry import FORGET_AFTER_S, AgentRegistry
from api.proxy.transport import Transport
from api.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def beat(agent_id: str, tenant_id: str = "t1", interval_s: float = 1.0) -> Heartbeat:
    return Heartbeat(agent_id, tenant_id, (ModelInfo("m", "echo"),), 4, 0, 0, interval_s)


def transport(registry: AgentRegistry) -> Transport:
    return Transport("nats://127.0.0.1:1", None, None, "inst", registry, generation_timeout_s=5, keepalive_s=5)


def message(subject: str, payload: object) -> SimpleNamespace:
    return SimpleNamespace(subject=subject, data=protocol.encode(payload))  # type: ignore[arg-type]


async def test_a_heartbeat_counts_only_for_the_agent_its_subject_names() -> None:
    registry = AgentRegistry()
    bus = transport(registry)
    await bus._on_heartbeat(message(protocol.heartbeat_subject("t1", "a1"), beat("a1")))  # type: ignore[arg-type]
    for n in range(50):  # a compromised agent inventing ids on its own subject
        await bus._on_heartbeat(message(protocol.heartbeat_subject("t1", "a1"), beat(f"fake-{n}")))  # type: ignore[arg-type]
    assert [a.agent_id for a in registry.live("t1")] == ["a1"]


async def test_a_reply_lands_only_in_a_job_of_the_tenant_on_its_subject() -> None:
    bus = transport(AgentRegistry())
    channel = bus.open("job-1", "tenant-a")
    chunk = Chunk("job-1", 0, "hi", 1)
    await bus._on_reply(message(protocol.reply_subject("tenant-b", "inst", "job-1"), chunk))  # type: ignore[arg-type]
    assert channel.queue.empty()
    await bus._on_reply(message(protocol.reply_subject("tenant-a", "inst", "job-1"), chunk))  # type: ignore[arg-type]
    assert channel.queue.get_nowait() == chunk


def test_long_gone_agents_and_empty_tenants_are_pruned() -> None:
    clock = Clock()
    registry = AgentRegistry(clock=clock)
    registry.beat("t1", beat("a1"))
    registry.beat("t2", beat("b1", "t2"))
    clock.now += 10
    assert registry.live("t1") == [] and registry.gone("t1", "a1")  # silent: gone, still remembered
    registry.prune()
    assert registry.gone("t1", "a1")
    clock.now += FORGET_AFTER_S
    registry.beat("t2", beat("b1", "t2"))
    registry.prune()
    assert registry._agents == {"t2": registry._agents["t2"]}  # t1 forgotten entirely, t2 kept


async def test_revoked_agents_are_forgotten_on_the_loop_even_when_told_from_another_thread() -> None:
    gateway = InferenceGateway(Settings(), authenticator=None, usage_sink=lambda **_: None)  # type: ignore[arg-type]
    gateway._loop = asyncio.get_running_loop()
    gateway.registry.beat("t1", beat("a1"))
    told_from = threading.Thread(target=gateway.forget_agents, args=([("t1", "a1")],))
    told_from.start()
    told_from.join()
    assert [a.agent_id for a in gateway.registry.live("t1")] == ["a1"]  # not touched from that thread...
    await asyncio.sleep(0)
    assert gateway.registry.live("t1") == []  # ...but on the loop, at its next turn


async def test_shutdown_settles_every_job_before_the_usage_writer_stops() -> None:
    bus = transport(AgentRegistry())
    drained: list[object] = []
    leaving = bus.open("left-early", "t1")  # its client went away: waiting for the agent's last word
    bus.cancel(leaving, lambda channel, last: drained.append((channel.job_id, last)))
    running = bus.open("still-running", "t1")
    seen: list[object] = []

    async def request_handler() -> None:  # what JobRun does: settle on LOST, which closes the channel
        seen.append(await running.queue.get())
        bus.close_channel(running.job_id)

    handler = asyncio.create_task(request_handler())
    await bus.close()
    await asyncio.wait_for(handler, 2)
    assert drained == [("left-early", None)] and seen == [LOST]
    assert bus.channels == {}
