"""Wire protocol: round trips, old and new releases reading each other, bad input refused, subject-safe tokens."""

from __future__ import annotations

import functools
import operator
import re
from typing import Any

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


def test_unknown_field_is_ignored() -> None:
    raw = msgspec.msgpack.encode({"type": "cancel", "job_id": "j1", "v": 1, "extra": True})
    assert protocol.decode(raw) == Cancel("j1")


# Schema evolution: a "v-next" copy of every message, with one more optional field, stands for the
# code of a later release. Old and new must read each other's messages without a version bump.

ADDED = "added_in_next"


def next_release(cls: type[msgspec.Struct], added: object) -> type[msgspec.Struct]:
    """A copy of ``cls`` (same fields, defaults and config) with one more optional field appended."""
    config = cls.__struct_config__
    fields: list[tuple[str, Any, Any]] = [(f.name, f.type, f.default) for f in msgspec.structs.fields(cls)]
    return msgspec.defstruct(
        f"{cls.__name__}Next",
        [*fields, (ADDED, type(added) | None, None)],
        tag=config.tag,
        tag_field=config.tag_field,
        frozen=config.frozen,
        array_like=config.array_like,
        forbid_unknown_fields=config.forbid_unknown_fields,
        omit_defaults=config.omit_defaults,
    )


ALL_TYPES = (Job, Accepted, Chunk, Final, Error, Cancel, Heartbeat)
added_values = st.integers(-(2**63), 2**64 - 1) | texts | st.lists(texts, max_size=3) | st.booleans()


@given(any_message, added_values)
def test_an_old_decoder_reads_a_new_message(message: protocol.Message, added: object) -> None:
    newer = next_release(type(message), added)
    sent = newer(**msgspec.structs.asdict(message), **{ADDED: added})
    raw = msgspec.msgpack.encode(sent)
    assert ADDED in msgspec.msgpack.decode(raw)  # the extra field really travels
    assert protocol.decode(raw) == message  # every known field kept, the new one ignored


@given(any_message)
def test_a_new_decoder_reads_an_old_message(message: protocol.Message) -> None:
    newer = {cls: next_release(cls, 0) for cls in ALL_TYPES}
    decoder = msgspec.msgpack.Decoder(functools.reduce(operator.or_, newer.values()))
    read = decoder.decode(protocol.encode(message))
    assert type(read) is newer[type(message)]
    assert getattr(read, ADDED) is None  # the default
    assert msgspec.structs.asdict(read) == {**msgspec.structs.asdict(message), ADDED: None}


class SamplingNext(msgspec.Struct, frozen=True):
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    min_p: float | None = None  # new


class ChatMessageNext(msgspec.Struct, frozen=True):
    role: str
    content: str
    name: str | None = None  # new


class JobNext(msgspec.Struct, frozen=True, tag="job", tag_field="type"):
    job_id: str
    tenant_id: str
    model: str
    kind: str
    reply_to: str
    sampling: SamplingNext = SamplingNext()
    messages: tuple[ChatMessageNext, ...] = ()
    prompt: str | None = None
    v: int = protocol.PROTOCOL_VERSION
    priority: int = 0  # new


class ModelInfoNext(msgspec.Struct, frozen=True):
    id: str
    backend: str
    context_length: int = 2048
    licence: str | None = None
    quantisation: str | None = None  # new


class HeartbeatNext(msgspec.Struct, frozen=True, tag="heartbeat", tag_field="type"):
    agent_id: str
    tenant_id: str
    models: tuple[ModelInfoNext, ...]
    capacity: int
    in_flight: int
    queued: int
    interval_s: float
    v: int = protocol.PROTOCOL_VERSION
    free_memory_bytes: int | None = None  # new


def test_new_fields_in_nested_structs_are_ignored_by_old_receivers() -> None:
    job = JobNext(
        "j1",
        "t1",
        "echo",
        "chat",
        "ollm.t1.reply.p1.j1",
        sampling=SamplingNext(max_tokens=8, stop=("\n",), min_p=0.05),
        messages=(ChatMessageNext("user", "hi", name="ada"),),
        priority=9,
    )
    assert protocol.decode(msgspec.msgpack.encode(job)) == Job(
        "j1",
        "t1",
        "echo",
        "chat",
        "ollm.t1.reply.p1.j1",
        sampling=Sampling(max_tokens=8, stop=("\n",)),
        messages=(ChatMessage("user", "hi"),),
    )
    beat = HeartbeatNext("a1", "t1", (ModelInfoNext("echo", "echo", 512, "mit", "q4"),), 4, 1, 0, 2.0, 1, 1 << 30)
    assert protocol.decode(msgspec.msgpack.encode(beat)) == Heartbeat(
        "a1", "t1", (ModelInfo("echo", "echo", 512, "mit"),), 4, 1, 0, 2.0
    )


def test_new_nested_structs_read_old_messages_with_their_defaults() -> None:
    job = Job("j1", "t1", "echo", "completion", "r", sampling=Sampling(seed=7), prompt="p")
    read = msgspec.msgpack.decode(protocol.encode(job), type=JobNext)
    assert (read.priority, read.sampling.min_p, read.sampling.seed, read.prompt) == (0, None, 7, "p")
    beat = Heartbeat("a1", "t1", (ModelInfo("echo", "echo"),), 4, 0, 0, 2.0)
    read_beat = msgspec.msgpack.decode(protocol.encode(beat), type=HeartbeatNext)
    assert read_beat.free_memory_bytes is None and read_beat.models == (ModelInfoNext("echo", "echo"),)


class Preempt(msgspec.Struct, frozen=True, tag="preempt", tag_field="type"):
    """A message type a later release might add."""

    job_id: str
    v: int = protocol.PROTOCOL_VERSION


def test_a_message_type_from_a_later_release_is_refused_naming_its_tag() -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape("Invalid value 'preempt' - at `$.type`")):
        protocol.decode(msgspec.msgpack.encode(Preempt("j1")))


def test_an_unknown_literal_value_is_refused_naming_the_field() -> None:
    raw = msgspec.msgpack.encode({"type": "error", "job_id": "j1", "code": "overheated", "message": "m"})
    with pytest.raises(msgspec.ValidationError, match=re.escape("at `$.code`")):
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
