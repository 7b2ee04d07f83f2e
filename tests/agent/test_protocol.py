"""Wire protocol: round trips for every message, rejection of bad input, subject-safe model tokens."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import protocol
from agent.protocol import (
    Accepted,
    Cancel,
    ChatMessage,
    Chunk,
    Error,
    Final,
    Heartbeat,
    Job,
    ModelInfo,
    Sampling,
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=24)
texts = st.text(max_size=200)
counts = st.integers(min_value=0, max_value=1_000_000)
floats = st.floats(min_value=0, max_value=2, allow_nan=False)

samplings = st.builds(
    Sampling,
    max_tokens=st.integers(1, 100_000),
    temperature=floats,
    top_p=st.floats(min_value=0, max_value=1),
    seed=st.none() | st.integers(0, 2**63 - 1),
    stop=st.lists(texts, max_size=4).map(tuple),
)
messages = st.builds(ChatMessage, role=st.sampled_from(["system", "user", "assistant"]), content=texts)
models = st.builds(
    ModelInfo,
    id=texts,
    backend=st.sampled_from(["echo", "transformers", "exllamav2", "exllamav3"]),
    context_length=st.integers(1, 1 << 20),
    licence=st.none() | texts,
)
jobs = st.one_of(
    st.builds(
        Job,
        job_id=ids,
        tenant_id=ids,
        model=texts,
        kind=st.just("chat"),
        reply_to=ids,
        sampling=samplings,
        messages=st.lists(messages, max_size=4).map(tuple),
    ),
    st.builds(
        Job,
        job_id=ids,
        tenant_id=ids,
        model=texts,
        kind=st.just("completion"),
        reply_to=ids,
        sampling=samplings,
        prompt=texts,
    ),
)
any_message = st.one_of(
    jobs,
    st.builds(Accepted, job_id=ids, agent_id=ids, queued=st.booleans()),
    st.builds(Chunk, job_id=ids, seq=counts, text=texts, tokens=counts),
    st.builds(
        Final,
        job_id=ids,
        seq=counts,
        finish_reason=st.sampled_from(["stop", "length", "cancelled"]),
        prompt_tokens=counts,
        completion_tokens=counts,
    ),
    st.builds(
        Error,
        job_id=ids,
        code=st.sampled_from(["busy", "bad_request", "model_not_loaded", "unsupported_version", "internal"]),
        message=texts,
        seq=counts,
        retry_after_s=st.none() | floats,
        prompt_tokens=counts,
        completion_tokens=counts,
    ),
    st.builds(Cancel, job_id=ids),
    st.builds(
        Heartbeat,
        agent_id=ids,
        tenant_id=ids,
        models=st.lists(models, max_size=3).map(tuple),
        capacity=counts,
        in_flight=counts,
        queued=counts,
        interval_s=floats,
    ),
)


@given(any_message)
def test_every_message_round_trips(message: protocol.Message) -> None:
    assert protocol.decode(protocol.encode(message)) == message


@pytest.mark.parametrize("cls", [Job, Accepted, Chunk, Final, Error, Cancel, Heartbeat])
def test_every_message_type_is_covered(cls: type) -> None:
    assert cls in protocol.Message.__args__  # type: ignore[attr-defined]


def test_unknown_field_is_rejected() -> None:
    raw = msgspec.msgpack.encode({"type": "cancel", "job_id": "j1", "v": 1, "extra": True})
    with pytest.raises(msgspec.ValidationError, match="extra"):
        protocol.decode(raw)


def test_wrong_tag_is_rejected() -> None:
    raw = msgspec.msgpack.encode({"type": "launch", "job_id": "j1"})
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'launch'"):
        protocol.decode(raw)


def test_missing_tag_is_rejected() -> None:
    raw = msgspec.msgpack.encode({"job_id": "j1"})
    with pytest.raises(msgspec.ValidationError, match="type"):
        protocol.decode(raw)


def test_bad_finish_reason_is_rejected() -> None:
    raw = msgspec.msgpack.encode(
        {
            "type": "final",
            "job_id": "j",
            "seq": 0,
            "finish_reason": "exploded",
            "prompt_tokens": 1,
            "completion_tokens": 1,
        }
    )
    with pytest.raises(msgspec.ValidationError):
        protocol.decode(raw)


def test_garbage_is_rejected() -> None:
    with pytest.raises(msgspec.DecodeError):
        protocol.decode(b"\xc1\xc1\xc1")


SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


@given(st.text(min_size=1, max_size=200))
def test_model_token_is_subject_safe(model: str) -> None:
    token = protocol.model_token(model)
    assert SUBJECT_TOKEN.match(token)
    assert len(token) <= 64 + 12
    assert protocol.model_token(model) == token  # stable


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_model_token_is_injective_in_practice(a: str, b: str) -> None:
    if a != b:
        assert protocol.model_token(a) != protocol.model_token(b)


def test_model_token_distinguishes_lookalikes() -> None:
    names = ["llama.3", "llama_3", "llama 3", "llama/3", "llama*3", "llama>3", "LLAMA_3", "x" * 70, "x" * 71]
    tokens = {protocol.model_token(n) for n in names}
    assert len(tokens) == len(names)


def test_subjects_are_per_tenant() -> None:
    assert protocol.job_subject("t1", "echo") == "ollm.t1.job.echo"
    assert protocol.queue_group("echo") == "q-echo"
    assert protocol.cancel_subject("t1") == "ollm.t1.cancel"
    assert protocol.heartbeat_subject("t1", "a1") == "ollm.t1.hb.a1"
    assert protocol.reply_subject("t1", "p1", "j1") == "ollm.t1.reply.p1.j1"
    perms = protocol.agent_permissions("t1", "a1")
    assert perms["subscribe"] == {"allow": ["ollm.t1.job.>", "ollm.t1.cancel"]}
