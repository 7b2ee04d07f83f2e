"""max_tokens is fitted into the model's context before a job reaches an agent (issue 13)."""

from __future__ import annotations

import threading

import nats
import openai
import pytest

from agent import protocol
from agent.protocol import Accepted, Final, Job
from api.proxy.context import CHARS_PER_TOKEN_AT_MOST
from tests.proxy.conftest import Stack
from tests.proxy.test_failures import fake_agent, one_record, sdk
from tests.proxy.test_metering import announce

CONTEXT = 4096


def recording_agent(stack: Stack, jobs: list[Job]) -> tuple[threading.Event, threading.Thread]:
    """A fake agent of model ``small`` (context ``CONTEXT``) that keeps every job it is offered."""
    announce(stack, "small-agent", "small", CONTEXT)

    async def on_job(nc: nats.NATS, msg: nats.aio.msg.Msg, job: Job) -> None:
        jobs.append(job)
        await nc.publish(msg.reply, protocol.encode(Accepted(job.job_id, "small-agent")))
        await nc.publish(job.reply_to, protocol.encode(Final(job.job_id, 0, "length", 1, 0)))

    return fake_agent(stack, "small", on_job)


def test_max_tokens_is_clamped_to_the_room_the_prompt_leaves(fresh_stack: Stack) -> None:
    jobs: list[Job] = []
    stop, thread = recording_agent(fresh_stack, jobs)
    prompt = "x" * (CHARS_PER_TOKEN_AT_MOST * 100)  # estimated at 100 tokens
    try:
        client = sdk(fresh_stack)
        client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": prompt}], max_tokens=1_000_000
        )
        client.completions.create(model="small", prompt=prompt, max_tokens=1_000_000)
        client.chat.completions.create(model="small", messages=[{"role": "user", "content": prompt}], max_tokens=50)
        assert [j.sampling.max_tokens for j in jobs] == [CONTEXT - 100, CONTEXT - 100, 50]
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_a_prompt_that_alone_fills_the_context_is_context_length_exceeded(fresh_stack: Stack, kind: str) -> None:
    jobs: list[Job] = []
    stop, thread = recording_agent(fresh_stack, jobs)
    prompt = "x" * (CHARS_PER_TOKEN_AT_MOST * CONTEXT)
    secret, principal = fresh_stack.keys.issue()
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            if kind == "chat":
                sdk(fresh_stack, secret).chat.completions.create(
                    model="small", messages=[{"role": "user", "content": prompt}]
                )
            else:
                sdk(fresh_stack, secret).completions.create(model="small", prompt=prompt)
        assert caught.value.code == "context_length_exceeded"
        assert caught.value.param == ("messages" if kind == "chat" else "prompt")
        assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
        assert jobs == []  # no agent was bothered
        assert one_record(fresh_stack, principal.key_id)["status"] == "rejected"
    finally:
        stop.set()
        thread.join(5)


def test_the_agents_exact_refusal_of_a_long_prompt_is_context_length_exceeded(fresh_stack: Stack) -> None:
    fresh_stack.add_agent(models=("tiny",), context_length=8)  # the echo backend counts one token per word
    secret, principal = fresh_stack.keys.issue()
    words = "a b c d e f g h i j"  # 10 tokens for the agent; the proxy's lower-bound estimate lets it through
    client = sdk(fresh_stack, secret)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": words}])
        assert caught.value.code == "context_length_exceeded"
        assert one_record(fresh_stack, principal.key_id)["status"] == "error"
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a b c"}])
        assert reply.choices[0].message.content == "a b c"  # one that fits is served
    finally:
        fresh_stack.stop_agents()
