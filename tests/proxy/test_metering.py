"""Agents are untrusted input (issue 13): the proxy bills only token counts it can vouch for."""

from __future__ import annotations

import asyncio
import threading
import time
from uuid import uuid4

import nats
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent import protocol
from agent.protocol import Accepted, Chunk, Final, Heartbeat, Job, ModelInfo, flush_in_order
from api.proxy.registry import TOKEN_COUNT_CEILING
from tests.proxy.conftest import TENANT_A, Agent, Stack
from tests.proxy.test_failures import fake_agent, one_record, proxy_connection, sdk

CONTEXT = 4096
RELAYED = 3  # the fake agent relays three one-token chunks before its Final
COUNTS = st.one_of(
    st.integers(0, 2 * CONTEXT),
    st.integers(-(2**63), -1),
    st.integers(CONTEXT + 1, 2**64 - 1),
    st.sampled_from([0, 1, 2, RELAYED, CONTEXT, CONTEXT + 1, -1, 2**63 - 1, 2**64 - 1]),
)


def announce(stack: Stack, agent_id: str, model: str, context_length: int) -> None:
    """A heartbeat for ``model`` (the proxy's credentials can publish on any agent's subject)."""

    async def beat() -> None:
        nc = await proxy_connection(stack)
        info = ModelInfo(id=model, backend="fake", context_length=context_length)
        heartbeat = Heartbeat(agent_id, str(TENANT_A), (info,), capacity=1, in_flight=0, queued=0, interval_s=60)
        await nc.publish(protocol.heartbeat_subject(str(TENANT_A), agent_id), protocol.encode(heartbeat))
        await flush_in_order(nc)
        await nc.close()

    asyncio.run(beat())
    stack.wait_for_model(TENANT_A, model)


def lying_agent(stack: Stack, model: str, reported: dict[str, int]) -> tuple[threading.Event, threading.Thread]:
    """Relays ``RELAYED`` chunks, then a Final with whatever counts ``reported`` holds now."""

    async def on_job(nc: nats.NATS, msg: nats.aio.msg.Msg, job: Job) -> None:
        await nc.publish(msg.reply, protocol.encode(Accepted(job.job_id, "liar")))
        for seq in range(RELAYED):
            await nc.publish(job.reply_to, protocol.encode(Chunk(job.job_id, seq, "ab", 1)))
        final = Final(job.job_id, RELAYED, "stop", reported["prompt"], reported["completion"])
        await nc.publish(job.reply_to, protocol.encode(final))

    return fake_agent(stack, model, on_job)


def expected(prompt: int, completion: int, bound: int) -> tuple[int, int, bool]:
    """What the proxy should bill: the module doc of api/proxy/run.py."""
    billed_prompt = min(max(prompt, 0), bound)
    billed_completion = min(max(completion, RELAYED), bound)
    return billed_prompt, billed_completion, (billed_prompt, billed_completion) != (prompt, completion)


@pytest.mark.parametrize("stream", [False, True], ids=["collect", "stream"])
def test_counts_off_the_wire_are_validated_and_flagged(fresh_stack: Stack, stream: bool) -> None:
    announce(fresh_stack, "liar", "liar", CONTEXT)
    reported = {"prompt": 0, "completion": 0}
    stop, thread = lying_agent(fresh_stack, "liar", reported)
    secret, principal = fresh_stack.keys.issue(plan="enterprise")
    client = sdk(fresh_stack, secret)
    billed: list[tuple[int, int]] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
    @given(prompt=COUNTS, completion=COUNTS)
    def one_request(prompt: int, completion: int) -> None:
        reported.update(prompt=prompt, completion=completion)
        want = expected(prompt, completion, CONTEXT)
        messages = [{"role": "user", "content": "x"}]
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model="liar", messages=messages, stream=True, stream_options={"include_usage": True}
                )
            )
            usage = chunks[-1].usage
        else:
            usage = client.chat.completions.create(model="liar", messages=messages).usage
        assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == want[:2]  # what the client sees
        billed.append(want[:2])
        deadline = time.monotonic() + 5
        while len([r for r in fresh_stack.usage.records if r["key_id"] == principal.key_id]) < len(billed):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        last = [r for r in fresh_stack.usage.records if r["key_id"] == principal.key_id][-1]
        assert (last["prompt_tokens"], last["completion_tokens"], last["counts_corrected"]) == want

    try:
        one_request()
        records = [r for r in fresh_stack.usage.records if r["key_id"] == principal.key_id]
        assert sum(r["prompt_tokens"] for r in records) == sum(p for p, _ in billed)  # the validated sum
        assert sum(r["completion_tokens"] for r in records) == sum(c for _, c in billed)
    finally:
        stop.set()
        thread.join(5)


def test_without_an_announced_context_the_ceiling_bounds_the_counts(fresh_stack: Stack) -> None:
    reported = {"prompt": 2**64 - 1, "completion": -5}
    stop, thread = lying_agent(fresh_stack, "unannounced", reported)  # no heartbeat: context unknown
    secret, principal = fresh_stack.keys.issue()
    try:
        reply = sdk(fresh_stack, secret).chat.completions.create(
            model="unannounced", messages=[{"role": "user", "content": "x"}]
        )
        assert reply.usage is not None and reply.usage.prompt_tokens == TOKEN_COUNT_CEILING
        record = fresh_stack.usage.wait_for(lambda r: r["key_id"] == principal.key_id)[0]
        assert (record["prompt_tokens"], record["completion_tokens"], record["counts_corrected"]) == (
            TOKEN_COUNT_CEILING,
            RELAYED,
            True,
        )
    finally:
        stop.set()
        thread.join(5)


def test_an_agent_claiming_another_agents_id_is_recorded_under_its_own(fresh_stack: Stack) -> None:
    victim = fresh_stack.add_agent(models=("other",))
    liar = Agent(str(uuid4()), str(TENANT_A), "agent-liar", uuid4().hex)  # paired: real NATS credentials
    fresh_stack.agents.append(liar)
    fresh_stack.nats.authorization.sync([fresh_stack.account(a) for a in fresh_stack.agents])
    ready, stop, errors = threading.Event(), threading.Event(), []

    async def run() -> None:
        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(fresh_stack.nats.url, user=liar.user, password=liar.password, error_cb=on_error)

        async def on_job(msg: nats.aio.msg.Msg) -> None:
            job = protocol.decode(msg.data)
            assert isinstance(job, Job) and job.reply_as_agent
            await msg.respond(protocol.encode(Accepted(job.job_id, victim.agent_id)))  # the false claim
            # Its replies under the victim's name are refused by NATS; under its own, they arrive.
            for name in (victim.agent_id, liar.agent_id):
                reply_to = protocol.agent_reply_subject(job.reply_to, name)
                await nc.publish(reply_to, protocol.encode(Chunk(job.job_id, 0, name[:4], 1)))
                await nc.publish(reply_to, protocol.encode(Final(job.job_id, 1, "stop", 1, 1)))

        await nc.subscribe(protocol.job_subject(str(TENANT_A), "spoof"), queue=protocol.queue_group("spoof"), cb=on_job)
        info = ModelInfo(id="spoof", backend="fake", context_length=CONTEXT)
        heartbeat = Heartbeat(liar.agent_id, str(TENANT_A), (info,), capacity=1, in_flight=0, queued=0, interval_s=60)
        await nc.publish(protocol.heartbeat_subject(str(TENANT_A), liar.agent_id), protocol.encode(heartbeat))
        await flush_in_order(nc)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    secret, principal = fresh_stack.keys.issue()
    try:
        fresh_stack.wait_for_model(TENANT_A, "spoof")
        reply = sdk(fresh_stack, secret).chat.completions.create(
            model="spoof", messages=[{"role": "user", "content": "x"}]
        )
        assert reply.choices[0].message.content == liar.agent_id[:4]  # only its own-named replies got through
        record = one_record(fresh_stack, principal.key_id)
        assert record["agent_id"] == liar.agent_id != victim.agent_id
        assert any("permissions violation" in e.lower() for e in errors)
    finally:
        stop.set()
        thread.join(5)
