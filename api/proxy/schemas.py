"""OpenAI's request and response shapes, field for field, as msgspec structs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
MaxTokens = Annotated[int, Meta(ge=1, le=1_000_000)]
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Stop = (
    Annotated[str, Meta(max_length=1024)] | Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(max_length=4)]
)


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    """``stream_options``: whether a last chunk carries the usage."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ContentPart(msgspec.Struct, forbid_unknown_fields=True):
    """One part of a multi-part message content; only ``text`` parts are served."""

    type: str
    text: str | None = None
    image_url: Any = None
    input_audio: Any = None
    file: Any = None
    refusal: str | None = None


class RequestMessage(msgspec.Struct, forbid_unknown_fields=True):
    """One chat message as the client sends it."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None
    function_call: Any = None
    refusal: str | None = None
    audio: Any = None


class ChatCompletionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/chat/completions``."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    messages: Annotated[list[RequestMessage], Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    seed: Seed | None = None
    user: str | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    prediction: Any = None
    audio: Any = None
    web_search_options: Any = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    verbosity: str | None = None


class CompletionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/completions`` (legacy)."""

    model: Annotated[str, Meta(min_length=1, max_length=256)]
    prompt: str | list[str | int | list[int]] | None = None
    max_tokens: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    seed: Seed | None = None
    user: str | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = None
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


class Usage(msgspec.Struct):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(msgspec.Struct):
    """The generated chat message."""

    content: str
    role: str = "assistant"
    refusal: None = None


class ChatChoice(msgspec.Struct):
    """One non-streamed chat choice."""

    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(msgspec.Struct):
    """A non-streamed chat completion."""

    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"
    system_fingerprint: None = None


class Delta(msgspec.Struct, omit_defaults=True):
    """What a streamed chat chunk adds."""

    content: str | None = None
    role: str | None = None


class ChatChunkChoice(msgspec.Struct):
    """One choice of a streamed chat chunk."""

    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct):
    """A streamed chat chunk (``usage`` is present, null or set, only when the client asked)."""

    id: str
    created: int
    model: str
    choices: list[ChatChunkChoice]
    object: str = "chat.completion.chunk"
    system_fingerprint: None = None


class ChatCompletionChunkWithUsage(ChatCompletionChunk):
    """A streamed chat chunk when ``stream_options.include_usage`` is set."""

    usage: Usage | None = None


class TextChoice(msgspec.Struct):
    """One legacy completion choice (also its streamed form)."""

    index: int
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class Completion(msgspec.Struct):
    """A legacy completion or one of its streamed chunks."""

    id: str
    created: int
    model: str
    choices: list[TextChoice]
    object: str = "text_completion"
    system_fingerprint: None = None


class CompletionWithUsage(Completion):
    """A legacy completion (always carries usage) or a streamed chunk with ``include_usage``."""

    usage: Usage | None = None


class Model(msgspec.Struct):
    """One model in ``GET /v1/models``."""

    id: str
    created: int
    owned_by: str
    object: str = "model"


class LicenceInfo(msgspec.Struct):
    """A model's licence as ``GET /v1/models`` shows it (terms §9)."""

    key: str  # what an admin accepts (POST /api/v1/licences)
    name: str  # the licence, "" for a model outside the catalogue
    url: str
    accepted: bool
    catalogued: bool
    announced: list[str] = []  # what the serving agents claim; the catalogue's entry governs
    announced_agrees: bool = True  # False: an agent claims a licence the catalogue does not list for it


class LicensedModel(Model):
    """A model with the licence that governs it (where the licence gate is on)."""

    licence: LicenceInfo | None = None


class ModelList(msgspec.Struct):
    """``GET /v1/models``."""

    data: list[Model]
    object: str = "list"
