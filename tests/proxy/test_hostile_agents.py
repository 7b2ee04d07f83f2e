"""Agents are untrusted input (issue 13): heartbeats and replies are bounded, cheap and version-checked.

The unit tests drive the transport's handlers directly; the flood tests run a hostile agent process
with real agent credentials against a real nats-server, next to another tenant's real echo agent.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
import msgspec
import nats
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import protocol
from agent.protocol import Accepted, Chunk, Final, Heartbeat, Job, ModelInfo
from api.proxy.channels import BAD_VERSION, FLOODED, MALFORMED, OVERRUN
from api.proxy.intake import (
    MAX_HEARTBEAT_BYTES,
    MAX_MODELS_PER_HEARTBEAT,
    MAX_PENDING_CHARS,
    MAX_PENDING_REPLIES,
    MIN_BEAT_SPACING_S,
    REPLY_SLACK,
    HeartbeatIntake,
)
from api.proxy.registry import INTERVAL_RANGE_S, MAX_AGENTS_PER_TENANT, MAX_LAG_S, MISSED_BEATS, AgentRegistry
from api.proxy.transport import Transport
from tests.proxy.conftest import REPO, TENANT_A, TENANT_B, Agent, Stack, build_stack, teardown_stack
from tests.proxy.test_failures import fake_agent, sdk


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def beat(agent_id: str, tenant_id: str = "t1", interval_s: float = 1.0, models: int = 1, v: int = 1) -> Heartbeat:
    infos = tuple(ModelInfo(f"m{i}", "echo") for i in range(models))
    return Heartbeat(agent_id, tenant_id, infos, 4, 0, 0, interval_s, v=v)


def bus_with(registry: AgentRegistry, clock: Clock | None = None) -> Transport:
    bus = Transport("nats://127.0.0.1:1", None, None, "inst", registry, generation_timeout_s=5, keepalive_s=5)
    if clock is not None:
        bus.heartbeats = HeartbeatIntake(registry, bus.rejected, clock)
    return bus


def msg(subject: str, data: bytes | Any) -> Any:
    return SimpleNamespace(subject=subject, data=data if isinstance(data, bytes) else protocol.encode(data))


async def heartbeat(bus: Transport, agent_id: str, data: bytes | Any, tenant_id: str = "t1") -> None:
    await bus._on_heartbeat(msg(protocol.heartbeat_subject(tenant_id, agent_id), data))


def models_of(registry: AgentRegistry, tenant_id: str = "t1") -> dict[str, int]:
    return {a.agent_id: len(a.models) for a in registry.live(tenant_id)}


# --- heartbeats -------------------------------------------------------------------------------


async def test_an_oversized_heartbeat_is_refused_before_decoding() -> None:
    registry = AgentRegistry()
    bus = bus_with(registry)
    big = beat("a1", models=MAX_MODELS_PER_HEARTBEAT)
    long_ids = tuple(ModelInfo(m.id * 600, "echo") for m in big.models)
    data = protocol.encode(msgspec.structs.replace(big, models=long_ids))
    assert len(data) > MAX_HEARTBEAT_BYTES
    await heartbeat(bus, "a1", data)
    assert registry.live("t1") == [] and bus.rejected["heartbeat.oversized"] == 1


async def test_a_heartbeat_with_too_many_models_is_refused_whole() -> None:
    registry = AgentRegistry()
    bus = bus_with(registry)
    many = protocol.encode(beat("a1", models=MAX_MODELS_PER_HEARTBEAT + 1))
    assert len(many) <= MAX_HEARTBEAT_BYTES  # refused for the count, not the size
    await heartbeat(bus, "a1", many)
    assert registry.live("t1") == [] and bus.rejected["heartbeat.too_many_models"] == 1
    await heartbeat(bus, "a2", beat("a2", models=MAX_MODELS_PER_HEARTBEAT))
    assert models_of(registry) == {"a2": MAX_MODELS_PER_HEARTBEAT}


async def test_beats_of_one_agent_closer_than_the_spacing_are_dropped_and_counted() -> None:
    clock = Clock()
    registry = AgentRegistry(clock=clock)
    bus = bus_with(registry, clock)
    await heartbeat(bus, "a1", beat("a1", models=1))
    for _ in range(1000):
        await heartbeat(bus, "a1", beat("a1", models=2))
    await heartbeat(bus, "b1", beat("b1", "t2"), tenant_id="t2")  # another agent has its own spacing
    assert models_of(registry) == {"a1": 1} and models_of(registry, "t2") == {"b1": 1}
    assert bus.rejected["heartbeat.too_soon"] == 1000
    clock.now += MIN_BEAT_SPACING_S
    await heartbeat(bus, "a1", beat("a1", models=2))
    assert models_of(registry) == {"a1": 2}


async def test_garbage_and_other_versions_are_refused_and_counted() -> None:
    clock = Clock()
    registry = AgentRegistry(clock=clock)
    bus = bus_with(registry, clock)
    newer = beat("a1", v=2)  # decodes, but a breaking release's: not to be half-read
    renamed = msgspec.msgpack.encode({"type": "heartbeat2", "agent_id": "a1", "v": 3})  # does not decode at all
    for data in (protocol.encode(newer), renamed, b"\xc1", b"\x91" * 30_000 + b"\x00"):
        await heartbeat(bus, "a1", data)
        clock.now += MIN_BEAT_SPACING_S
    assert registry.live("t1") == []
    assert bus.rejected["heartbeat.version"] == 2 and bus.rejected["heartbeat.malformed"] == 2


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 3600.0, 1e300]))
def test_an_announced_interval_keeps_an_agent_live_only_within_the_clamped_range(interval_s: float) -> None:
    clock = Clock()
    registry = AgentRegistry(clock=clock)
    assert registry.beat("t1", beat("a1", interval_s=interval_s))
    low, high = INTERVAL_RANGE_S
    clock.now += MISSED_BEATS * low - 1e-6
    assert [a.agent_id for a in registry.live("t1")] == ["a1"]  # never expires at once (0, negative, NaN)
    clock.now += MISSED_BEATS * (high - low) + 2e-6
    assert registry.live("t1") == [] and registry.gone("t1", "a1")  # never live for hours (3600, inf)
    assert math.isfinite(registry._agents["t1"]["a1"].expires_at)


def test_a_tenant_cannot_grow_the_registry_past_its_cap() -> None:
    clock = Clock()
    registry = AgentRegistry(clock=clock)
    accepted = [registry.beat("t1", beat(f"a{n}")) for n in range(MAX_AGENTS_PER_TENANT + 100)]
    assert accepted.count(True) == MAX_AGENTS_PER_TENANT and len(registry.live("t1")) == MAX_AGENTS_PER_TENANT
    assert registry.beat("t1", beat("a0"))  # a tracked agent keeps beating
    assert registry.beat("t2", beat("b1", "t2"))  # other tenants are not affected
    clock.now += MISSED_BEATS * 1.0  # every t1 agent is gone: room for new ones
    assert registry.beat("t1", beat("late"))
    assert [a.agent_id for a in registry.live("t1")] == ["late"]


def test_silence_is_judged_by_what_was_read_not_by_the_clock() -> None:
    clock = Clock()
    registry = AgentRegistry(clock=clock)
    registry.heard_until(clock.now)
    registry.beat("t2", beat("b1", "t2", interval_s=0.2))
    clock.now += 10  # the proxy is 10 s behind on its connection: b1's later beats are queued, not missing
    assert not registry.gone("t2", "b1") and [a.agent_id for a in registry.live("t2")] == ["b1"]
    registry.heard_until(clock.now - 9)  # a tick published 1 s after the beat came back without a new beat
    assert registry.gone("t2", "b1")
    registry.beat("t2", beat("b1", "t2", interval_s=0.2))
    clock.now += MAX_LAG_S + 1  # nothing heard for longer than the proxy may lag: the clock decides again
    assert registry.gone("t2", "b1")


# --- replies ----------------------------------------------------------------------------------


async def reply(bus: Transport, job_id: str, message: Any, tenant_id: str = "t1") -> None:
    await bus._on_reply(msg(protocol.reply_subject(tenant_id, "inst", job_id), message))


def drained(channel: Any) -> list[Any]:
    items = []
    while not channel.queue.empty():
        items.append(channel.queue.get_nowait())
    return items


async def test_replies_beyond_max_tokens_end_the_job_and_later_ones_are_dropped_unread() -> None:
    bus = bus_with(AgentRegistry())
    channel = bus.open("job-1", "t1", max_tokens=10)
    for seq in range(10 + REPLY_SLACK + 50):
        await reply(bus, "job-1", Chunk("job-1", seq, "w", 0))  # 0 tokens each: the count still bounds them
    items = drained(channel)
    assert len(items) == 10 + REPLY_SLACK + 2 and items[-1] is OVERRUN  # chunks, room for a final, then the end
    assert bus.rejected["reply.beyond_max_tokens"] == 1 and bus.rejected["reply.no_job"] == 48


async def test_a_jobs_unread_replies_are_bounded_in_number_and_text() -> None:
    bus = bus_with(AgentRegistry())
    many = bus.open("many", "t1", max_tokens=1 << 20)
    for seq in range(MAX_PENDING_REPLIES + 10):
        await reply(bus, "many", Chunk("many", seq, "w", 1))
    assert many.queue.qsize() == MAX_PENDING_REPLIES + 1 and drained(many)[-1] is FLOODED
    big = bus.open("big", "t1", max_tokens=1 << 20)
    text = "x" * (MAX_PENDING_CHARS // 4)
    for seq in range(10):
        await reply(bus, "big", Chunk("big", seq, text, 1 << 20))
    assert big.queue.pending_chars <= MAX_PENDING_CHARS and drained(big)[-1] is FLOODED
    assert bus.rejected["reply.flooded"] == 2


async def test_a_reply_of_another_version_or_garbage_ends_the_job_unread() -> None:
    bus = bus_with(AgentRegistry())
    newer = bus.open("newer", "t1")
    await reply(bus, "newer", Chunk("newer", 0, "hi", 1, v=2))
    await reply(bus, "newer", Chunk("newer", 1, "more", 1, v=2))
    assert drained(newer) == [BAD_VERSION]
    renamed = bus.open("renamed", "t1")
    await reply(bus, "renamed", msgspec.msgpack.encode({"type": "chunk_v3", "job_id": "renamed", "v": 3}))
    assert drained(renamed) == [BAD_VERSION]
    garbage = bus.open("garbage", "t1")
    await reply(bus, "garbage", b"\xc1")
    assert drained(garbage) == [MALFORMED]
    assert bus.rejected["reply.version"] == 2 and bus.rejected["reply.malformed"] == 1


# --- end to end -------------------------------------------------------------------------------

MAX_TOKENS = 8


def overrunning_agent(stack: Stack, chunks: list[Chunk]) -> tuple[threading.Event, threading.Thread]:
    """A fake agent of model ``overrun`` that sends ``chunks`` (job ids filled in), then a Final."""

    async def on_job(nc: nats.NATS, job_msg: nats.aio.msg.Msg, job: Job) -> None:
        await nc.publish(job_msg.reply, protocol.encode(Accepted(job.job_id, "overrunner")))
        reply_to = protocol.agent_reply_subject(job.reply_to, "overrunner")
        for chunk in chunks:
            await nc.publish(reply_to, protocol.encode(msgspec.structs.replace(chunk, job_id=job.job_id)))
        await nc.publish(reply_to, protocol.encode(Final(job.job_id, len(chunks), "stop", 3, len(chunks))))

    return fake_agent(stack, "overrun", on_job)


@pytest.mark.parametrize("stream", [False, True], ids=["collect", "stream"])
@pytest.mark.parametrize("excess", ["tokens", "text"])
def test_chunks_beyond_max_tokens_end_the_job_with_an_error_and_bill_what_was_relayed(
    fresh_stack: Stack, stream: bool, excess: str
) -> None:
    words = [Chunk("", i, f" w{i}", 1) for i in range(MAX_TOKENS)]
    extra = Chunk("", MAX_TOKENS, " more", 1) if excess == "tokens" else Chunk("", 3, "x" * 100_000, 1)
    chunks = [*words, extra, *words] if excess == "tokens" else [*words[:3], extra, *words]
    relayed = MAX_TOKENS if excess == "tokens" else 3
    stop, thread = overrunning_agent(fresh_stack, chunks)
    secret, principal = fresh_stack.keys.issue()
    client = sdk(fresh_stack, secret)
    messages = [{"role": "user", "content": "x"}]
    try:
        if stream:
            seen: list[str] = []
            with pytest.raises(openai.APIError) as caught:
                for part in client.chat.completions.create(
                    model="overrun",
                    messages=messages,
                    max_tokens=MAX_TOKENS,
                    stream=True,  # type: ignore[arg-type]
                ):
                    seen.extend(c.delta.content or "" for c in part.choices)
            assert "".join(seen) == "".join(w.text for w in words[:relayed])
            assert "max_tokens" in str(caught.value)
        else:
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="overrun", messages=messages, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
            assert caught.value.status_code == 502 and caught.value.code == "agent_overrun"
        records = fresh_stack.usage.wait_for(lambda r: r["key_id"] == principal.key_id)
        time.sleep(0.3)  # a second record would have arrived by now
        records = [r for r in fresh_stack.usage.records if r["key_id"] == principal.key_id]
        assert [(r["status"], r["completion_tokens"]) for r in records] == [("error", relayed)]
    finally:
        stop.set()
        thread.join(5)


@pytest.fixture
def flood_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own with production's accept and generation timeouts (a flood delays everything)."""
    built = build_stack(tmp_path, generation_timeout_s=30.0, accept_timeout_s=5.0, keepalive_s=0.3)
    try:
        yield built
    finally:
        teardown_stack(built)


def start_flooder(stack: Stack, tenant: Any, mode: str, seconds: float) -> Agent:
    """A hostile agent process of ``tenant`` with real agent credentials; returns once it is ready."""
    agent_id = str(uuid4())
    agent = Agent(agent_id, str(tenant), f"agent-{agent_id}", uuid4().hex)
    stack.agents.append(agent)
    stack.nats.authorization.sync([stack.account(a) for a in stack.agents])
    options = {
        "nats_url": stack.nats.url,
        "user": agent.user,
        "password": agent.password,
        "tenant_id": str(tenant),
        "agent_id": agent_id,
        "mode": mode,
        "seconds": seconds,
    }
    agent.proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("flood_agent.py")), json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert agent.proc.stdout is not None
    assert agent.proc.stdout.readline().strip() == "ready"
    return agent


def stream_text(stack: Stack, secret: str, words: int) -> str:
    """Stream a chat completion of ``words`` echoed words; the text received."""
    content = " ".join(f"b{i}" for i in range(words))
    stream = sdk(stack, secret).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": content}], stream=True
    )
    return "".join(c.delta.content or "" for part in stream for c in part.choices)


def test_a_heartbeat_flood_does_not_make_another_tenants_agent_look_gone(flood_stack: Stack) -> None:
    fresh_stack = flood_stack
    good = fresh_stack.add_agent(tenant=TENANT_B, token_delay_s=0.02)
    secret, principal = fresh_stack.keys.issue(TENANT_B, plan="enterprise")
    flooder = start_flooder(fresh_stack, TENANT_A, "heartbeats", seconds=4.0)
    words = 150  # about 3 s of streaming, through the flood
    assert stream_text(fresh_stack, secret, words) == " ".join(f"b{i}" for i in range(words))
    for _ in range(5):
        answer = sdk(fresh_stack, secret).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content == "hi"
    assert flooder.proc is not None and flooder.proc.wait(30) == 0
    sent = json.loads(flooder.proc.stdout.readline())["sent"]  # type: ignore[union-attr]
    registry = fresh_stack.gateway.registry
    assert [a.agent_id for a in registry.live(str(TENANT_B))] == [good.agent_id]
    assert registry.live(str(TENANT_A)) == [] or all(  # its clamped interval: not live for an hour
        a.expires_at <= time.monotonic() + MISSED_BEATS * INTERVAL_RANGE_S[1] for a in registry.live(str(TENANT_A))
    )
    rejected = fresh_stack.gateway.transport.rejected
    assert rejected["heartbeat.too_soon"] > sent // 2, (sent, rejected)
    records = fresh_stack.usage.wait_for(
        lambda r: r["key_id"] == principal.key_id and len(fresh_stack.usage.records) >= 6
    )
    assert {r["status"] for r in records} == {"ok"}


def test_a_reply_flood_does_not_break_another_tenants_streaming_job(flood_stack: Stack) -> None:
    fresh_stack = flood_stack
    fresh_stack.add_agent(tenant=TENANT_B, token_delay_s=0.02)
    secret_b, principal_b = fresh_stack.keys.issue(TENANT_B, plan="enterprise")
    flooder = start_flooder(fresh_stack, TENANT_A, "replies", seconds=4.0)
    fresh_stack.wait_for_model(TENANT_A, "flood")
    secret_a, principal_a = fresh_stack.keys.issue(TENANT_A)
    outcome: dict[str, Any] = {}

    def flooded_request() -> None:
        body = {"model": "flood", "messages": [{"role": "user", "content": "x"}], "max_tokens": 16}
        answer = httpx.post(
            fresh_stack.base_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret_a}"},
            timeout=30,
        )
        outcome["a"] = (answer.status_code, answer.json())

    victim = threading.Thread(target=flooded_request)
    victim.start()
    words = 150
    assert stream_text(fresh_stack, secret_b, words) == " ".join(f"b{i}" for i in range(words))
    victim.join(30)
    status, body = outcome["a"]
    assert status == 502 and body["error"]["code"] == "agent_overrun"
    assert flooder.proc is not None and flooder.proc.wait(30) == 0
    transport = fresh_stack.gateway.transport
    assert transport.connected and transport.rejected["reply.no_job"] > 0
    records_a = [r for r in fresh_stack.usage.records if r["key_id"] == principal_a.key_id]
    assert [(r["status"], r["completion_tokens"]) for r in records_a] == [("error", 16)]
    records_b = fresh_stack.usage.wait_for(lambda r: r["key_id"] == principal_b.key_id)
    assert [r["status"] for r in records_b] == ["ok"]
