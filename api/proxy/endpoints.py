"""The generation endpoints, and what the ``/v1`` routes ask of the gateway behind them.

The gateway and the routes (``api.proxy.controllers``) both import this module, and the routes see
the gateway only as :class:`Inference`: the gateway imports the routes, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import msgspec
from litestar import Request, Response

from api.proxy import errors
from api.proxy.responses import ChatEncoder, CompletionEncoder
from api.proxy.schemas import ChatCompletionRequest, CompletionRequest
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
