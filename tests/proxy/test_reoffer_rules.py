"""The re-offer rules (api/proxy/reoffer.py) as properties: what is retryable, whom it goes to, what the client gets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, get_args

from hypothesis import given
from hypothesis import strategies as st

from agent.protocol import Chunk, Error, ErrorCode, Final, Heartbeat, ModelInfo
from api.proxy.channels import KEEPALIVE, TIMEOUT
from api.proxy.registry import AgentRegistry
from api.proxy.reoffer import MAX_AGENTS, RETRYABLE, refusal, retryable, untried

CODES = list(get_args(ErrorCode))
errors = st.builds(
    Error,
    job_id=st.just("j"),
    code=st.sampled_from(CODES),
    message=st.just("m"),
    seq=st.integers(0, 3),
    retry_after_s=st.none() | st.floats(0.1, 60),
    completion_tokens=st.integers(0, 3),
)


@given(errors)
def test_only_a_refusal_before_any_text_is_retryable(error: Error) -> None:
    nothing_started = error.seq == 0 and error.completion_tokens == 0
    assert retryable(error) == (error.code in RETRYABLE and nothing_started)


def test_text_an_end_or_a_signal_is_never_retryable() -> None:
    for item in (Chunk("j", 0, "x"), Final("j", 0, "stop", 1, 1), KEEPALIVE, TIMEOUT, None):
        assert not retryable(item)
    assert MAX_AGENTS >= 2  # at least one other agent is tried


@given(st.lists(errors, min_size=1, max_size=6))
def test_the_client_gets_busy_with_the_shortest_wait_when_any_agent_was_busy(refusals: list[Error]) -> None:
    answer = refusal(refusals)
    busy = [e for e in refusals if e.code == "busy"]
    if not busy:
        assert answer is refusals[-1]
        return
    assert answer.code == "busy"
    waits = [e.retry_after_s for e in busy if e.retry_after_s is not None]
    assert answer.retry_after_s == (min(waits) if waits else None)


agents = st.dictionaries(
    st.sampled_from([f"a{i}" for i in range(6)]), st.sets(st.sampled_from(["m", "n"]), max_size=2), max_size=6
)


@given(agents, st.sets(st.sampled_from([f"a{i}" for i in range(6)])))
def test_a_job_goes_only_to_live_agents_of_its_model_not_tried_yet(
    served: dict[str, set[str]], tried: set[str]
) -> None:
    registry = AgentRegistry(clock=lambda: 100.0)
    for agent_id, models in served.items():
        infos = tuple(ModelInfo(m, "openai") for m in sorted(models))
        registry.beat("t", Heartbeat(agent_id, "t", infos, capacity=1, in_flight=0, queued=0, interval_s=1.0))
    dispatcher: Any = SimpleNamespace(registry=registry)
    chosen = untried(dispatcher, "t", "m", set(tried))
    assert sorted(chosen) == sorted(a for a, models in served.items() if "m" in models and a not in tried)
    assert len(chosen) == len(set(chosen))


loads = st.dictionaries(
    st.sampled_from([f"a{i}" for i in range(6)]),
    st.tuples(st.integers(-2, 8), st.integers(-2, 8), st.integers(-1, 4)),  # in flight, queued, capacity
    min_size=1,
    max_size=6,
)


@given(loads)
def test_the_least_loaded_agent_by_its_last_heartbeat_is_offered_the_job_first(
    announced: dict[str, tuple[int, int, int]],
) -> None:
    registry = AgentRegistry(clock=lambda: 100.0)
    for agent_id, (in_flight, queued, capacity) in announced.items():
        beat = Heartbeat(agent_id, "t", (ModelInfo("m", "openai"),), capacity, in_flight, queued, interval_s=1.0)
        registry.beat("t", beat)
    dispatcher: Any = SimpleNamespace(registry=registry)
    chosen = untried(dispatcher, "t", "m", set())
    load = {a: (max(0, f) + max(0, q)) / max(1, c) for a, (f, q, c) in announced.items()}
    assert sorted(chosen) == sorted(announced)
    assert [load[a] for a in chosen] == sorted(load.values())  # a lie about counts reorders, never breaks
