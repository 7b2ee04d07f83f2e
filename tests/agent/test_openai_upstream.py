"""The ``openai`` backend against a scripted OpenAI-compatible server over real HTTP: relay, counts, failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from agent.backends.base import Backend, Finished, GenerationRequest, Monitored, RequestError, TextDelta
from agent.backends.openai_upstream import OpenAIUpstreamBackend
from agent.backends.upstream_config import UpstreamConfig
from agent.protocol import ChatMessage, Sampling
from agent.worker import Worker, WorkerConfig
from tests.agent.fake_upstream import OPENED, FakeUpstream, answer_host, backend_for, served, until
from tests.agent.test_worker import TENANT, Factory


@pytest.fixture
def fake() -> Iterator[tuple[FakeUpstream, str]]:
    """The scripted server, its base URL ending in /v1."""
    app = FakeUpstream(first_byte_s=0.4)
    with served(app) as url:
        yield app, url


def chat(text: str, model: str = "echo", job_id: str = "j1", **sampling: object) -> GenerationRequest:
    """A chat request for ``model``."""
    return GenerationRequest(
        job_id=job_id,
        model=model,
        messages=(ChatMessage("system", "be brief"), ChatMessage("user", text)),
        sampling=Sampling(**sampling),  # type: ignore[arg-type]
    )


async def collect(backend: OpenAIUpstreamBackend, req: GenerationRequest) -> tuple[list[TextDelta], Finished]:
    """All deltas and the final event."""
    deltas: list[TextDelta] = []
    async for event in backend.generate(req):
        if isinstance(event, TextDelta):
            deltas.append(event)
        else:
            assert isinstance(event, Finished)
            return deltas, event
    raise AssertionError("no final event")


async def test_relays_each_event_with_the_upstreams_counts_and_passes_sampling_through(fake) -> None:
    app, url = fake
    backend = await backend_for(url)
    assert isinstance(backend, Backend) and isinstance(backend, Monitored)
    assert {m.id: m.context_length for m in backend.models()}["echo"] == 4096
    deltas, final = await collect(
        backend, chat("the quick brown fox", temperature=0.3, top_p=0.9, seed=7, stop=("zz",), max_tokens=9)
    )
    assert "".join(d.text for d in deltas) == "the quick brown fox" and sum(d.tokens for d in deltas) == 4
    assert final == Finished("stop", prompt_tokens=4 + 7, completion_tokens=4)  # the fake's usage, not a guess
    sent = app.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["stop"], sent["max_tokens"]) == (
        0.3,
        0.9,
        7,
        ["zz"],
        9,
    )
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the quick brown fox"}]
    assert sent["messages"] == turns


async def test_completions_and_length(fake) -> None:
    app, url = fake
    req = GenerationRequest(
        job_id="c", model="echo", kind="completion", prompt="a b c d e", sampling=Sampling(max_tokens=2)
    )
    deltas, final = await collect(await backend_for(url), req)
    assert "".join(d.text for d in deltas) == "a b" and final.finish_reason == "length"
    assert app.requests[-1]["prompt"] == "a b c d e" and "messages" not in app.requests[-1]


async def test_without_usage_the_counts_are_estimated_and_marked(fake) -> None:
    _, url = fake
    text = "one two three four five six"
    deltas, final = await collect(await backend_for(url), chat(text, model="no-usage"))
    assert "".join(d.text for d in deltas) == text and sum(d.tokens for d in deltas) == 6
    # prompt: characters / 4 rounded up, plus 4 per message; completion: one per text event
    expected_prompt = -(-(len("be brief") + len(text)) // 4) + 2 * 4
    assert final == Finished("stop", expected_prompt, 6, estimated=True)


async def test_a_slow_first_byte_is_waited_for_and_a_timeout_is_an_error(fake) -> None:
    _, url = fake
    deltas, final = await collect(await backend_for(url), chat("late but fine", model="slow-first"))
    assert "".join(d.text for d in deltas) == "late but fine" and final.finish_reason == "stop"
    with pytest.raises(RequestError) as timed_out:
        await collect(await backend_for(url, timeout_s=0.1), chat("too late", model="slow-first"))
    assert timed_out.value.code == "internal" and "sent nothing" in str(timed_out.value)


@pytest.mark.parametrize(
    ("model", "code", "retry"),
    [
        ("busy", "busy", 3.0),
        ("unavailable", "busy", 1.0),
        ("boom", "internal", None),
        ("bad-plain", "bad_request", None),
        ("redirect", "internal", None),  # never followed
    ],
)
async def test_upstream_statuses_become_protocol_errors(fake, model: str, code: str, retry: float | None) -> None:
    app, url = fake
    with pytest.raises(RequestError) as refused:
        await collect(await backend_for(url), chat("CANARYstatus123 please", model=model))
    assert refused.value.code == code and refused.value.retry_after_s == retry
    assert app.followed == 0
    assert "CANARYstatus123" not in str(refused.value)
    if model == "bad-plain":  # a message without content reaches the client
        assert "temperature must be at most 2" in str(refused.value)


async def test_a_400_that_echoes_the_prompt_is_passed_on_without_its_message(fake) -> None:
    _, url = fake
    with pytest.raises(RequestError) as refused:
        await collect(await backend_for(url), chat("CANARYbad456 secret words", model="bad-echo"))
    assert refused.value.code == "bad_request"
    assert str(refused.value) == "upstream refused the request (HTTP 400)"


@pytest.mark.parametrize("model", ["cut", "malformed", "mid-error"])
async def test_a_broken_stream_ends_the_job_with_an_error_after_what_was_relayed(fake, model: str) -> None:
    _, url = fake
    received: list[str] = []
    with pytest.raises(RequestError) as failed:
        async for event in (await backend_for(url)).generate(chat("CANARYcut789 b c d e", model=model)):
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert failed.value.code == "internal" and "CANARYcut789" not in str(failed.value)
    assert len(received) <= 2


async def test_cancel_closes_the_upstream_connection_within_a_second(fake) -> None:
    app, url = fake
    backend = await backend_for(url)
    deltas: list[TextDelta] = []
    final: Finished | None = None
    cancelled_at = 0.0
    async for event in backend.generate(chat("a b c", model="drip", job_id="drip-1")):
        if isinstance(event, TextDelta):
            deltas.append(event)
            if len(deltas) == 3:
                await asyncio.sleep(0.02)  # the next read is in progress when the cancel comes
                cancelled_at = time.monotonic()
                backend.cancel("drip-1")
        else:
            assert isinstance(event, Finished)
            final = event
    assert final is not None and final.finish_reason == "cancelled" and final.estimated
    assert time.monotonic() - cancelled_at < 1.0
    deadline = time.monotonic() + 2
    while not app.disconnected_at and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert app.disconnected_at, "the upstream never saw the connection close"
    assert app.disconnected_at[0] - cancelled_at < 1.0


async def test_a_cancel_while_waiting_for_the_first_byte_takes_effect_at_once(fake) -> None:
    app, url = fake
    app.first_byte_s = 5.0
    backend = await backend_for(url)
    task = asyncio.ensure_future(collect(backend, chat("x", model="slow-first", job_id="slow-1")))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    backend.cancel("slow-1")
    deltas, final = await asyncio.wait_for(task, 1.0)
    assert deltas == [] and final.finish_reason == "cancelled"
    assert time.monotonic() - started < 1.0


async def test_models_follow_the_upstream_and_vanish_while_it_hangs(fake) -> None:
    app, url = fake
    app.models = {"a": 8192, "b": None}
    backend = await backend_for(url, context_length=1234, licences=(("a", "Apache-2.0"),))
    assert {(m.id, m.context_length, m.licence) for m in backend.models()} == {
        ("a", 8192, "Apache-2.0"),
        ("b", 1234, None),
    }
    changes: list[float] = []
    watcher = asyncio.create_task(backend.monitor(lambda: changes.append(time.monotonic())))
    try:
        app.models = {"a": 8192}
        await until(lambda: [m.id for m in backend.models()] == ["a"])
        app.hang = True
        await until(lambda: backend.models() == [], within_s=4)
        with pytest.raises(RequestError) as refused:
            await collect(backend, chat("hi", model="a"))
        assert refused.value.code == "model_not_loaded"
        app.hang = False
        await until(lambda: [m.id for m in backend.models()] == ["a"], within_s=4)
        assert len(changes) >= 3
    finally:
        watcher.cancel()


async def test_a_model_poll_that_times_out_while_a_stream_flows_keeps_the_models(fake) -> None:
    """llama-cpp-python's server answers /v1/models only between generations: busy is not gone."""
    app, url = fake
    backend = await backend_for(url)
    watcher = asyncio.create_task(backend.monitor(lambda: None))
    try:
        app.hang = True  # every poll now times out (1 s)
        polls, started = app.model_polls, time.monotonic()
        events = backend.generate(chat("a b c", model="drip", job_id="drip-poll"))
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                assert isinstance(event, TextDelta)
                if time.monotonic() - started > 2.5:
                    break
        assert app.model_polls > polls  # polls went out (and timed out) while the stream flowed
        assert "drip" in {m.id for m in backend.models()}
        await until(lambda: backend.models() == [], within_s=4)  # no stream: a timeout is down again
    finally:
        app.hang = False
        watcher.cancel()


async def test_routes_rename_upstream_models_and_the_key_is_sent(fake) -> None:
    app, url = fake
    app.key = "sk-upstream-secret"
    backend = await backend_for(url, routes=(("public", "echo"),), api_key="sk-upstream-secret")
    assert [m.id for m in backend.models()] == ["public"]
    deltas, _ = await collect(backend, chat("renamed ok", model="public"))
    assert "".join(d.text for d in deltas) == "renamed ok" and app.requests[-1]["model"] == "echo"
    assert "sk-upstream-secret" not in repr(backend.config)
    assert (await backend_for(url)).models() == []  # without the key the upstream answers 401: nothing served


async def test_no_body_reaches_any_log_at_any_level(fake, caplog: pytest.LogCaptureFixture) -> None:
    _, url = fake
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    canary = "CANARYlog0c4f"
    backend = await backend_for(url)
    await collect(backend, chat(f"say {canary}"))
    for model in ("boom", "bad-echo", "mid-error", "malformed", "cut", "busy"):
        with pytest.raises(RequestError):
            await collect(backend, chat(f"{canary} again and again", model=model))
    assert caplog.records, "the capture must see the backend's own lines"
    assert canary not in caplog.text
    assert all(canary not in str(r.args) for r in caplog.records)


async def test_a_cancel_before_the_job_starts_sends_nothing_upstream(fake) -> None:
    app, url = fake
    backend = await backend_for(url)
    backend.cancel("early-1")
    deltas, final = await collect(backend, chat("never asked", job_id="early-1"))
    assert deltas == [] and final.finish_reason == "cancelled" and final.completion_tokens == 0
    assert app.requests == []
    deltas, _ = await collect(backend, chat("asked now", job_id="early-1"))  # the cancel was used up
    assert "".join(d.text for d in deltas) == "asked now"


async def test_each_event_is_relayed_before_the_next_is_sent(fake) -> None:
    """Nothing is held back: the upstream sends its next word only once the last one came out of the relay."""
    app, url = fake
    backend = await backend_for(url)
    events = backend.generate(chat("one two three four five", model="lockstep", job_id="lock-1"))
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        for i, word in enumerate(["one", " two", " three", " four", " five"]):
            event = await asyncio.wait_for(anext(events), 5)  # a relay that buffered would wait here forever
            assert isinstance(event, TextDelta) and event.text == word
            if i < 4:
                app.steps.release()
        final = await asyncio.wait_for(anext(events), 5)
    assert isinstance(final, Finished) and final.finish_reason == "stop" and final.completion_tokens == 5


async def test_a_host_name_is_checked_again_at_each_new_connection(
    fake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A DNS answer that turns public after start gets neither a prompt nor the key; private again, both."""
    app, url = fake
    answer = answer_host(monkeypatch, "upstream.internal", urlsplit(url).port or 0, "127.0.0.1")
    app.key = "sk-upstream"
    backend = await backend_for(url.replace("127.0.0.1", "upstream.internal"), api_key="sk-upstream")
    assert [m.id for m in backend.models()] == list(app.models)  # the listing at start
    answer["address"] = "93.184.216.34"  # the record now points off the private network
    seen = len(app.seen_keys)
    with caplog.at_level(logging.WARNING, "ownllm.agent.upstream"):
        with pytest.raises(RequestError, match="upstream connection failed"):
            await collect(backend, chat("a prompt that must stay here"))
        assert await backend.refresh() and backend.models() == []  # announced down: no job comes
    refused = "upstream.internal now resolves to 93.184.216.34, not a private address: not connecting"
    assert caplog.text.count(refused) == 1  # once, not per connection
    assert "ClientConnectorDNSError" in caplog.text  # refused before connecting, not a connection that failed
    assert len(app.seen_keys) == seen and app.requests == []
    answer["address"] = "127.0.0.1"
    assert await backend.refresh() and backend.models()
    deltas, final = await collect(backend, chat("hello"))
    assert deltas and final.finish_reason == "stop" and len(app.requests) == 1


async def test_the_first_listing_at_start_is_checked_too(
    fake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, nats_server_factory: Factory
) -> None:
    """The answer turned public between the start-up check and the worker's start: its listing sends nothing."""
    app, url = fake
    answer_host(monkeypatch, "upstream.internal", urlsplit(url).port or 0, "93.184.216.34")
    app.key = "sk-upstream"
    config = UpstreamConfig(url=url.replace("127.0.0.1", "upstream.internal"), api_key="sk-upstream")
    backend = OpenAIUpstreamBackend(config)
    OPENED.append(backend)
    backend.load()  # as ownllm-agent serve does before its loop
    worker = Worker(backend, WorkerConfig("agent-u", TENANT, nats_server_factory().url, heartbeat_interval_s=30))
    with caplog.at_level(logging.WARNING, "ownllm.agent.upstream"):
        await worker.start()
    try:
        assert "resolves to 93.184.216.34, not a private address: not connecting" in caplog.text
        assert backend.models() == [] and app.seen_keys == []
        down = "/v1 is down (ClientConnectorDNSError); serving its models once it answers"
        assert down in caplog.text
    finally:
        await worker.stop()
