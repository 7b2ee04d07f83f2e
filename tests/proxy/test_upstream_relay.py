"""The official OpenAI SDK -> proxy -> NATS -> ``ownllm-agent --backend openai`` -> a second OwnLLM's ``/v1``.

The upstream is a real OpenAI-compatible server: another OwnLLM proxy with its own nats-server and
echo agents (``echo`` fast, ``slow-echo`` one word per 50 ms). The relay agent is the real CLI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import openai
import pytest

from agent import protocol
from agent.protocol import Job, flush_in_order
from tests.agent.fake_upstream import FakeUpstream
from tests.proxy.conftest import TENANT_A, Agent, Stack, build_stack, teardown_stack
from tests.proxy.upstream_support import pair_relay, start_relay, wait_until
from tests.support.server import ServerThread

LONG = " ".join(f"w{i}" for i in range(300))


@dataclass
class Relay:
    front: Stack  # what clients call
    upstream: Stack  # the second OwnLLM the agent relays to
    agent: Agent
    log: Path
    upstream_echo: Agent

    def sdk(self) -> tuple[openai.OpenAI, object]:
        secret, principal = self.front.keys.issue()
        return openai.OpenAI(base_url=self.front.base_url + "/v1", api_key=secret, max_retries=0, timeout=10), principal

    def one_record(self, stack: Stack, key_id: object) -> dict:
        """The single usage record of a key on a stack, after giving a second one time to appear."""
        assert stack.usage.wait_for(lambda r: r["key_id"] == key_id)
        time.sleep(0.3)
        with stack.usage.lock:
            records = [r for r in stack.usage.records if r["key_id"] == key_id]
        assert len(records) == 1, records
        return records[0]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    tmp = tmp_path_factory.mktemp("relay")
    upstream = build_stack(tmp / "upstream")
    front = build_stack(tmp / "front")
    try:
        echo = upstream.add_agent(models=("echo",))
        upstream.add_agent(models=("slow-echo",), token_delay_s=0.05)
        upstream_key, _ = upstream.keys.issue()
        agent, credentials = pair_relay(front, tmp, "relay")
        log = tmp / "relay.log"
        agent.proc = start_relay(log, credentials, upstream.base_url + "/v1", upstream_key)  # type: ignore[assignment]
        front.wait_for_model(TENANT_A, "echo", timeout_s=60)
        front.wait_for_model(TENANT_A, "slow-echo", timeout_s=5)
        yield Relay(front, upstream, agent, log, echo)
    finally:
        teardown_stack(front)
        teardown_stack(upstream)


def test_chat_and_completion_relay_with_the_upstreams_counts_once_each(relay: Relay) -> None:
    client, principal = relay.sdk()
    reply = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello relayed world"}], max_tokens=10
    )
    assert reply.choices[0].message.content == "hello relayed world"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 3)  # the upstream echo's counts
    record = relay.one_record(relay.front, principal.key_id)  # type: ignore[attr-defined]
    assert (record["status"], record["prompt_tokens"], record["completion_tokens"]) == ("ok", 3, 3)
    assert record["counts_corrected"] is False and record["counts_estimated"] is False  # the upstream counted

    completion = client.completions.create(model="echo", prompt="one two three four", max_tokens=2)
    assert completion.choices[0].text == "one two" and completion.choices[0].finish_reason == "length"


def test_streaming_relays_every_word_and_one_usage(relay: Relay) -> None:
    client, principal = relay.sdk()
    chunks = list(
        client.chat.completions.create(
            model="slow-echo",  # one word per 50 ms upstream: each is relayed on its own
            messages=[{"role": "user", "content": "alpha beta gamma delta"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(words) == "alpha beta gamma delta"
    # One chunk per upstream event, except events that reached the agent together (a process starved
    # for 50 ms on a loaded machine reads two at once and relays them as one): never held to the end.
    assert 2 <= len(words) <= 4
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert relay.one_record(relay.front, principal.key_id)["stream"] is True  # type: ignore[attr-defined]


async def test_stop_and_sampling_reach_the_upstream(relay: Relay) -> None:
    watcher = await nats.connect(
        relay.upstream.nats.url,
        user=relay.upstream.gateway.settings.nats_proxy_user,
        password=relay.upstream.nats.password,
    )
    jobs: list[Job] = []

    async def on_job(msg: nats.aio.msg.Msg) -> None:
        message = protocol.decode(msg.data)
        if isinstance(message, Job):
            jobs.append(message)

    await watcher.subscribe(f"ollm.{TENANT_A}.job.>", cb=on_job)
    await flush_in_order(watcher)
    client, _ = relay.sdk()
    reply = await asyncio.to_thread(
        client.chat.completions.create,
        model="echo",
        messages=[{"role": "user", "content": "one two three four"}],
        stop=["three"],
        seed=7,
        temperature=0.4,
        top_p=0.8,
        max_tokens=12,
    )
    await watcher.close()
    assert reply.choices[0].message.content == "one two "
    sampling = jobs[-1].sampling  # what the upstream's own agent was asked to do
    assert (sampling.seed, sampling.temperature, sampling.top_p, sampling.stop, sampling.max_tokens) == (
        7,
        0.4,
        0.8,
        ("three",),
        12,
    )


def test_a_client_disconnect_stops_the_upstream_within_a_second(relay: Relay) -> None:
    client, principal = relay.sdk()

    def cancelled_upstream() -> int:
        with relay.upstream.usage.lock:
            return sum(r["status"] == "cancelled" and r["model"] == "slow-echo" for r in relay.upstream.usage.records)

    before = cancelled_upstream()
    stream = client.chat.completions.create(
        model="slow-echo", messages=[{"role": "user", "content": LONG}], stream=True
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # the SDK drops the connection
    # The upstream OwnLLM records its request as cancelled once it saw the connection close and its
    # own agent stopped: the relay closed the upstream stream.
    upstream_done = wait_until(lambda: cancelled_upstream() > before, 5.0, "the upstream's cancelled record")
    assert upstream_done < 1.0, f"upstream stopped {upstream_done:.2f}s after the client left"
    record = relay.one_record(relay.front, principal.key_id)  # type: ignore[attr-defined]
    assert record["status"] == "cancelled" and 0 < record["completion_tokens"] < 300


def test_models_leave_and_return_with_the_upstream(relay: Relay) -> None:
    relay.upstream_echo.kill()  # the upstream no longer lists `echo`
    relay.front.wait_for_model(TENANT_A, "echo", present=False, timeout_s=10)
    client, _ = relay.sdk()
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code in (404, 503)  # answered at once: waiting for an accept would be a 504
    assert client.models.list().data and "slow-echo" in {m.id for m in client.models.list().data}
    relay.upstream_echo = relay.upstream.add_agent(models=("echo",))
    relay.front.wait_for_model(TENANT_A, "echo", timeout_s=10)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "back again"}])
    assert reply.choices[0].message.content == "back again"


def test_the_upstream_key_is_not_in_the_agents_argv(relay: Relay) -> None:
    assert relay.agent.proc is not None
    args = Path(f"/proc/{relay.agent.proc.pid}/cmdline").read_bytes()
    keys = [k for k in relay.upstream.keys.keys if k.encode() in args]
    assert keys == [] and b"--upstream-url" in args


def test_an_upstream_that_stops_answering_is_announced_gone_and_back(relay: Relay, tmp_path: Path) -> None:
    fake = FakeUpstream()
    server = ServerThread(fake).start()
    try:
        agent, credentials = pair_relay(relay.front, tmp_path, "relay-hang")
        agent.proc = start_relay(
            tmp_path / "hang.log", credentials, server.base_url + "/v1", None, "--models", "hung=echo"
        )  # type: ignore[assignment]
        relay.front.wait_for_model(TENANT_A, "hung", timeout_s=60)
        client, _ = relay.sdk()
        assert client.chat.completions.create(model="hung", messages=[{"role": "user", "content": "a b"}]).choices
        fake.hang = True  # /v1/models no longer answers
        relay.front.wait_for_model(TENANT_A, "hung", present=False, timeout_s=10)
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="hung", messages=[{"role": "user", "content": "x"}])
        assert refused.value.status_code in (404, 503)  # at once, not a 504 after the accept timeout
        fake.hang = False
        relay.front.wait_for_model(TENANT_A, "hung", timeout_s=10)
        reply = client.chat.completions.create(model="hung", messages=[{"role": "user", "content": "back"}])
        assert reply.choices[0].message.content == "back"
    finally:
        fake.hang = False
        server.stop()


def test_counts_an_upstream_did_not_report_are_marked_estimated_in_the_usage_record(
    relay: Relay, tmp_path: Path
) -> None:
    fake = ServerThread(FakeUpstream()).start()
    agent, credentials = pair_relay(relay.front, tmp_path, "relay-no-usage")
    agent.proc = start_relay(
        tmp_path / "relay.log", credentials, fake.base_url + "/v1", None, "--models", "quiet=no-usage"
    )  # type: ignore[assignment]
    try:
        relay.front.wait_for_model(TENANT_A, "quiet", timeout_s=60)
        client, principal = relay.sdk()
        reply = client.chat.completions.create(model="quiet", messages=[{"role": "user", "content": "a b c"}])
        assert reply.usage is not None and reply.usage.completion_tokens > 0  # estimated, but billed and shown
        record = relay.one_record(relay.front, principal.key_id)  # type: ignore[attr-defined]
        assert record["status"] == "ok" and record["counts_estimated"] is True
    finally:
        agent.kill()
        fake.stop()
