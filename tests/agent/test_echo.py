"""The echo test backend and the shared stop-string logic."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from agent.backends.base import Backend, Finished, GenerationRequest, StopMatcher, TextDelta
from agent.backends.echo import EchoBackend
from agent.protocol import ChatMessage, Sampling


def request(text: str, job_id: str = "j1", **sampling: object) -> GenerationRequest:
    """A chat request whose last user message is ``text``."""
    return GenerationRequest(
        job_id=job_id,
        model="echo",
        messages=(ChatMessage("system", "be brief"), ChatMessage("user", text)),
        sampling=Sampling(**sampling),  # type: ignore[arg-type]
    )


async def collect(backend: EchoBackend, req: GenerationRequest) -> tuple[list[TextDelta], Finished]:
    """All deltas and the final event of one generation."""
    deltas: list[TextDelta] = []
    async for event in backend.generate(req):
        if isinstance(event, TextDelta):
            deltas.append(event)
        else:
            return deltas, event
    raise AssertionError("no final event")


def test_echo_is_a_backend() -> None:
    backend = EchoBackend()
    backend.load()
    assert isinstance(backend, Backend)
    assert [m.id for m in backend.models()] == ["echo"]


async def test_echo_streams_words_with_exact_counts() -> None:
    deltas, final = await collect(EchoBackend(), request("the quick brown fox"))
    assert "".join(d.text for d in deltas) == "the quick brown fox"
    assert [d.tokens for d in deltas] == [1, 1, 1, 1]
    assert final == Finished("stop", prompt_tokens=2 + 4, completion_tokens=4)


async def test_echo_completion_prompt() -> None:
    req = GenerationRequest(job_id="c", model="echo", kind="completion", prompt="one two three")
    deltas, final = await collect(EchoBackend(), req)
    assert "".join(d.text for d in deltas) == "one two three"
    assert final == Finished("stop", 3, 3)


async def test_echo_max_tokens() -> None:
    deltas, final = await collect(EchoBackend(), request("a b c d e f", max_tokens=3))
    assert "".join(d.text for d in deltas) == "a b c"
    assert final.finish_reason == "length"
    assert final.completion_tokens == 3


async def test_echo_stop_string_is_not_emitted() -> None:
    deltas, final = await collect(EchoBackend(), request("alpha beta STOP gamma", stop=("STOP",)))
    assert "".join(d.text for d in deltas) == "alpha beta "
    assert "STOP" not in "".join(d.text for d in deltas)
    assert final.finish_reason == "stop"
    assert final.completion_tokens == 3


async def test_echo_stop_string_split_across_deltas() -> None:
    deltas, final = await collect(EchoBackend(), request("red green blue yellow", stop=("n blu",)))
    assert "".join(d.text for d in deltas) == "red gree"
    assert final.completion_tokens == 3


async def test_echo_almost_stop_is_released_at_end() -> None:
    deltas, final = await collect(EchoBackend(), request("red green", stop=("green!",)))
    assert "".join(d.text for d in deltas) == "red green"
    assert sum(d.tokens for d in deltas) == 2
    assert final.finish_reason == "stop"


async def test_echo_canary_comes_back() -> None:
    canary = "CANARY-7f3a9c"
    deltas, _ = await collect(EchoBackend(), request(f"say {canary}"))
    assert canary in "".join(d.text for d in deltas)


async def test_echo_cancel_mid_stream() -> None:
    backend = EchoBackend(token_delay_s=0.02)
    words = " ".join(f"w{i}" for i in range(200))
    deltas: list[TextDelta] = []
    final: Finished | None = None
    loop = asyncio.get_running_loop()
    started = loop.time()
    async for event in backend.generate(request(words)):
        if isinstance(event, TextDelta):
            deltas.append(event)
            if len(deltas) == 5:
                backend.cancel("j1")
        else:
            final = event
    assert final is not None and final.finish_reason == "cancelled"
    assert final.completion_tokens == len(deltas) == 5
    assert loop.time() - started < 1.0


@given(
    words=st.lists(st.sampled_from(["ab", "c", "abc", "d", "STO", "P", "S", "TOP", " "]), max_size=30),
    stops=st.lists(st.sampled_from(["STOP", "abc", "cd", "TOPS", "zz"]), max_size=3),
)
def test_stop_matcher_equals_cutting_the_whole_text(words: list[str], stops: list[str]) -> None:
    matcher = StopMatcher(stops)
    out: list[TextDelta] = []
    for word in words:
        delta = matcher.feed(word, 1)
        if delta is not None:
            out.append(delta)
        if matcher.stopped:
            break
    tail = matcher.flush()
    if tail is not None:
        out.append(tail)
    full = "".join(words)
    cuts = [full.find(s) for s in stops if full.find(s) >= 0]
    expected = full[: min(cuts)] if cuts else full
    assert "".join(d.text for d in out) == expected
    assert all(d.text for d in out)
    if not cuts:
        assert sum(d.tokens for d in out) == len(words)
