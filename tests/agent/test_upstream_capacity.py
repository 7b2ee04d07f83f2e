"""The relay agent runs as many jobs at once as its upstream says it can (llama.cpp's slots, SGLang's running
requests), asks again whenever the upstream comes back, and never overrides a capacity that was set."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backends.openai_upstream import OpenAIUpstreamBackend
from agent.backends.upstream_capacity import DEFAULT_CAPACITY, MAX_UPSTREAM_CAPACITY, reported
from agent.backends.upstream_config import UpstreamConfig
from agent.backends.upstream_doctor import upstream_rows
from agent.worker import Worker, WorkerConfig
from tests.agent.fake_upstream import OPENED, FakeUpstream, backend_for, served, until
from tests.agent.test_worker import TENANT, Factory

LLAMA_PROPS = json.dumps({"total_slots": 3, "chat_template": "{{ messages }}" * 100, "n_ctx": 8192}).encode()
SGLANG_INFO = json.dumps({"max_running_requests": None, "internal_states": [{"max_running_requests": 48}]}).encode()


@pytest.fixture
def fake() -> Iterator[tuple[FakeUpstream, str]]:
    app = FakeUpstream(models={"echo": 8192})
    with served(app) as url:
        yield app, url


@pytest.mark.parametrize(
    ("info", "capacity"),
    [
        ({"/props": LLAMA_PROPS}, 3),  # llama.cpp's server
        ({"/server_info": SGLANG_INFO}, 48),  # SGLang: the scheduler's figure when the argument was left unset
        ({"/get_server_info": b'{"max_running_requests": 12}'}, 12),  # SGLang, the older path
        ({}, DEFAULT_CAPACITY),  # vLLM, Ollama, TabbyAPI: nothing reported
        ({"/props": b'{"total_slots": 0}', "/server_info": b'{"max_running_requests": 99999}'}, DEFAULT_CAPACITY),
        ({"/props": b"not json"}, DEFAULT_CAPACITY),
    ],
)
async def test_the_capacity_is_what_the_upstream_reports(fake, info: dict[str, bytes], capacity: int) -> None:
    app, url = fake
    app.info = info
    backend = await backend_for(url)
    assert backend.capacity == capacity and backend.models()


async def test_a_set_capacity_is_kept_and_nothing_is_asked(fake) -> None:
    app, url = fake
    app.info = {"/props": LLAMA_PROPS}
    backend = await backend_for(url, capacity=5)
    assert backend.capacity == 5 and app.info_asked == []


async def test_the_capacity_is_asked_again_when_the_upstream_comes_back(fake) -> None:
    app, url = fake
    app.info = {"/props": LLAMA_PROPS}
    backend = await backend_for(url)
    assert backend.capacity == 3
    assert not await backend.refresh() and app.info_asked == ["/props"]  # up all along: not asked again
    app.hang = True
    await backend.refresh()  # times out: down
    assert backend.models() == []
    app.info = {"/props": b'{"total_slots": 6}'}  # restarted with --parallel 6
    app.hang = False
    assert await backend.refresh() and backend.capacity == 6


async def test_the_worker_runs_what_the_upstream_reports_and_follows_it(fake, nats_server_factory: Factory):
    app, url = fake
    app.info = {"/props": b'{"total_slots": 2}'}
    backend = OpenAIUpstreamBackend(UpstreamConfig(url=url, poll_interval_s=0.2))
    OPENED.append(backend)
    worker = Worker(backend, WorkerConfig("agent-c", TENANT, nats_server_factory().url, heartbeat_interval_s=30))
    await worker.start()
    try:
        assert worker.heartbeat().capacity == 2  # from the first listing, before any job
        app.hang = True
        await until(within_s=5.0, check=lambda: backend.models() == [])
        app.info = {"/props": b'{"total_slots": 5}'}
        app.hang = False
        await until(within_s=5.0, check=lambda: worker.heartbeat().capacity == 5 and worker.heartbeat().models != ())
    finally:
        await worker.stop()


def test_the_doctor_shows_the_capacity(fake) -> None:
    app, url = fake
    app.info = {"/props": LLAMA_PROPS}
    assert dict(upstream_rows(UpstreamConfig(url=url)))["upstream capacity"] == "3 (llama.cpp /props)"
    app.info = {}
    assert dict(upstream_rows(UpstreamConfig(url=url)))["upstream capacity"].startswith("not reported: 16")
    assert dict(upstream_rows(UpstreamConfig(url=url, capacity=7)))["upstream capacity"] == "7 (set)"


values = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3), st.booleans())


@given(values, values, st.lists(st.fixed_dictionaries({"max_running_requests": values}), max_size=2))
def test_only_a_sane_reported_number_is_taken(slots: object, running: object, states: list[dict[str, object]]):
    body = json.dumps({"total_slots": slots, "max_running_requests": running, "internal_states": states}).encode()
    found = reported(body)
    offered = [slots, running, *[s["max_running_requests"] for s in states[:1]]]
    assert found is None or (type(found) is int and 0 < found <= MAX_UPSTREAM_CAPACITY and found in offered)
    every = [slots, running, *[s["max_running_requests"] for s in states]]
    if all(v is None or (type(v) is int and abs(v) < 2**63) for v in every):  # a body of well-typed numbers
        sane = [v for v in offered if v is not None and 0 < v <= MAX_UPSTREAM_CAPACITY]  # type: ignore[operator]
        assert found == (sane[0] if sane else None)
