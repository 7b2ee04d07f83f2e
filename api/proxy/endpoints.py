"""The generation endpoints, and what the ``/v1`` routes ask of the gateway behind them.

The gateway and the routes (``api.proxy.controllers``) both import this module, and the routes see
the gateway only as :class:`Inference`: the gateway imports the routes, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from litestar import Request, Response
from litestar.openapi.spec import Operation

from api.proxy import errors
from api.proxy.responses import ChatEncoder, CompletionEncoder
from api.proxy.schemas import (
    ChatCompletion,
    ChatCompletionChunkWithUsage,
    ChatCompletionRequest,
    CompletionRequest,
    CompletionWithUsage,
    Model,
    ModelList,
)
from api.proxy.translate import Generation, chat_generation, completion_generation
from api.settings import Settings


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One generation endpoint: its path, how to parse its body, and its response encoder."""

    path: str
    parse: Callable[[bytes], Generation]
    encoder: type[ChatEncoder] | type[CompletionEncoder]
    id_prefix: str


def _parser(struct: type, build: Callable[[object], Generation]) -> Callable[[bytes], Generation]:
    """A body parser: JSON -> validated struct -> generation; msgspec errors become 400s naming the field."""
    decoder: msgspec.json.Decoder[object] = msgspec.json.Decoder(struct)

    def parse(body: bytes) -> Generation:
        try:
            request = decoder.decode(body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise errors.from_validation(exc) from None
        except RecursionError:  # msgspec's answer to deeply nested JSON (a mebibyte of "[")
            raise errors.invalid_request(
                "We could not parse the JSON body of your request: it is nested too deeply.", code="invalid_json"
            ) from None
        return build(request)

    return parse


CHAT = Endpoint("/v1/chat/completions", _parser(ChatCompletionRequest, chat_generation), ChatEncoder, "chatcmpl-")  # type: ignore[arg-type]
COMPLETIONS = Endpoint(
    "/v1/completions",
    _parser(CompletionRequest, completion_generation),  # type: ignore[arg-type]
    CompletionEncoder,
    "cmpl-",
)


class Inference(Protocol):
    """The gateway as the ``/v1`` routes see it (``api.proxy.gateway.InferenceGateway``)."""

    settings: Settings

    def models(self, authorization: str | None) -> bytes:
        """``GET /v1/models`` as JSON bytes."""
        ...

    def model(self, authorization: str | None, model_id: str) -> bytes:
        """``GET /v1/models/{model}`` as JSON bytes."""
        ...

    async def generate(self, request: Request, endpoint: Endpoint) -> Response:
        """A chat or completion request, end to end."""
        ...


# -- the OpenAPI document ---------------------------------------------------------------------
# The routes read their bodies themselves (the gateway decodes them with msgspec, into OpenAI's
# error object on failure), so Litestar sees neither a request body nor a response type. These
# operation classes describe them from the same msgspec structs that decode and encode them.


def inline_schema(struct: type) -> dict[str, Any]:
    """msgspec's JSON Schema of ``struct`` with its definitions inlined: one self-contained schema."""
    (schema,), definitions = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    return _inline(schema, definitions, ())  # type: ignore[no-any-return]


def _inline(node: Any, definitions: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"{name} refers to itself: it cannot be inlined")
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return _inline({**definitions[name], **rest}, definitions, (*seen, name))
    return {key: _inline(value, definitions, seen) for key, value in node.items()}


_STREAM = {
    "type": "string",
    "description": "With `stream: true`: server-sent events, each `data: ` and one chunk as JSON, then `data: [DONE]`.",
}


def described(
    *, answer: type, description: str, request: type | None = None, chunk: type | None = None
) -> type[Operation]:
    """An operation class whose document shows the request body and the 200 answer as they are."""

    class Described(Operation):
        def to_schema(self) -> dict[str, Any]:
            schema = super().to_schema()
            content: dict[str, Any] = {"application/json": {"schema": inline_schema(answer)}}
            if chunk is not None:
                content["text/event-stream"] = {"schema": _STREAM, "x-chunk-schema": inline_schema(chunk)}
            schema.setdefault("responses", {})["200"] = {"description": description, "content": content}
            if request is not None:
                schema["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": inline_schema(request)}},
                }
            return schema

    return Described


OPENAPI_OPERATIONS: dict[str, type[Operation]] = {
    "listModels": described(answer=ModelList, description="The models the caller's live agents serve."),
    "retrieveModel": described(answer=Model, description="The model, when a live agent serves it."),
    "createChatCompletion": described(
        request=ChatCompletionRequest,
        answer=ChatCompletion,
        chunk=ChatCompletionChunkWithUsage,
        description="The chat completion, or with `stream: true` its chunks as server-sent events.",
    ),
    "createCompletion": described(
        request=CompletionRequest,
        answer=CompletionWithUsage,
        chunk=CompletionWithUsage,
        description="The completion, or with `stream: true` its chunks as server-sent events.",
    ),
}
