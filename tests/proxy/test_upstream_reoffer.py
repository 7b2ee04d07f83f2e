"""An upstream's 429/503 before any text: the proxy offers the job to another agent of the model (issue 18).

The official openai SDK -> proxy -> a real nats-server -> two real ``ownllm-agent --backend openai``
relays -> a scripted OpenAI-compatible server. Relay A's upstream answers ``shared`` with 429
(Retry-After: 3); relay B's answers it. Both answer ``full`` with a refusal (A: 429, B: 503).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.agent.fake_upstream import FakeUpstream
from tests.proxy.conftest import TENANT_A, Agent, Stack, build_stack, teardown_stack
from tests.proxy.upstream_support import pair_relay, start_relay, wait_until
from tests.support.server import ServerThread

BUSY_TALLY = (429, "agent_busy")


@dataclass
class Pair:
    front: Stack
    fake: FakeUpstream
    busy: Agent  # relays ``shared`` to a 429
    healthy: Agent  # relays ``shared`` to a working model

    def sdk(self) -> tuple[openai.OpenAI, Any]:
        secret, principal = self.front.keys.issue()
        client = openai.OpenAI(base_url=self.front.base_url + "/v1", api_key=secret, max_retries=0, timeout=10)
        return client, principal

    def upstream_calls(self) -> Counter[str]:
        """Requests the scripted server received, by its model name."""
        return Counter(r["model"] for r in list(self.fake.requests))

    def records(self, key_id: object, settle_s: float = 0.3) -> list[dict[str, Any]]:
        """A key's usage records, after giving a wrong second one time to appear."""
        time.sleep(settle_s)
        with self.front.usage.lock:
            return [r for r in self.front.usage.records if r["key_id"] == key_id]

    def tallied(self) -> int:
        """Refusals of agents' busy answers the gateway tallied (never one usage event each)."""
        return self.front.gateway.usage.rejections.totals[BUSY_TALLY]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("reoffer")
    front = build_stack(tmp / "front")
    fake_app = FakeUpstream()
    fake = ServerThread(fake_app).start()
    try:
        busy, busy_credentials = pair_relay(front, tmp, "relay-busy")
        healthy, healthy_credentials = pair_relay(front, tmp, "relay-healthy")
        url = fake.base_url + "/v1"
        routes = {busy.agent_id: "shared=busy,full=busy", healthy.agent_id: "shared=echo,full=unavailable"}
        for agent, credentials in ((busy, busy_credentials), (healthy, healthy_credentials)):
            log = tmp / f"{agent.agent_id}.log"
            agent.proc = start_relay(log, credentials, url, None, "--models", routes[agent.agent_id])  # type: ignore[assignment]

        def both_serve() -> bool:
            live = front.gateway.registry.live(str(TENANT_A))
            serving = {a.agent_id for a in live if {m.id for m in a.models} >= {"shared", "full"}}
            return serving >= {busy.agent_id, healthy.agent_id}

        wait_until(both_serve, 60, "both relays serving")
        yield Pair(front, fake_app, busy, healthy)
    finally:
        teardown_stack(front)
        fake.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_job_refused_upstream_is_served_by_the_other_agent_with_one_usage_record(pair: Pair, stream: bool) -> None:
    """Requests go to either agent; every one gets the healthy answer, and at least 3 were re-offered."""
    before = pair.upstream_calls()["busy"]
    tallied = pair.tallied()
    served = 0
    while pair.upstream_calls()["busy"] - before < 3:
        assert served < 40, "the queue group never chose the busy agent"
        client, principal = pair.sdk()
        messages = [{"role": "user", "content": "a b c"}]
        if stream:
            chunks = client.chat.completions.create(model="shared", messages=messages, stream=True)  # type: ignore[arg-type]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model="shared", messages=messages)  # type: ignore[arg-type]
            text = reply.choices[0].message.content or ""
        assert text == "a b c"
        records = pair.records(principal.key_id, settle_s=0.05 if served else 0.3)
        assert [(r["status"], r["agent_id"], r["stream"]) for r in records] == [("ok", pair.healthy.agent_id, stream)]
        served += 1
    assert pair.tallied() == tallied  # a refused attempt is neither recorded nor tallied


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_refused_by_every_agent_is_429_with_retry_after_and_no_usage_record(pair: Pair, stream: bool) -> None:
    """Each agent is tried once, never twice; the client gets 429 with the shortest wait the agents gave."""
    for _ in range(3):
        calls, tallied = pair.upstream_calls(), pair.tallied()
        client, principal = pair.sdk()
        with pytest.raises(openai.RateLimitError) as refused:
            created = client.chat.completions.create(
                model="full", messages=[{"role": "user", "content": "a b c"}], stream=stream
            )
            list(created) if stream else None  # type: ignore[call-overload]
        assert refused.value.response.headers["retry-after"] == "1"  # A said 3 s, B's 503 named none (1 s)
        assert refused.value.code == "agent_busy"
        after = pair.upstream_calls()
        assert (after["busy"] - calls["busy"], after["unavailable"] - calls["unavailable"]) == (1, 1)
        assert pair.records(principal.key_id) == []
        assert pair.tallied() == tallied + 1  # one request, one tally: not one per agent


def test_a_refused_stream_is_a_real_429_not_an_sse_error_after_200(pair: Pair) -> None:
    """The response starts only after the first word: a stream nobody took has the status a client can act on."""
    secret, _ = pair.front.keys.issue()
    body = {"model": "full", "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.stream("POST", pair.front.base_url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"].startswith("application/json")
