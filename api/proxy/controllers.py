"""The ``/v1`` routes: thin handlers over the gateway (:class:`api.proxy.endpoints.Inference`)."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, Router, get, post
from litestar.params import PathParameter

from api.guards import request_id_of
from api.proxy.endpoints import CHAT, COMPLETIONS, Inference
from api.proxy.errors import EXCEPTION_HANDLERS
from api.proxy.schemas import ChatCompletion, Completion, Model, ModelList

_JSON = "application/json"


def build_router(gateway: Inference) -> Router:
    """Routes bound to one gateway; bodies are read and validated by the gateway, not by Litestar."""

    @get("/models", operation_id="listModels", tags=["inference"], response_description="ModelList")
    async def list_models(request: Request) -> Response[bytes]:
        """List the models served right now by the caller's organization's live agents."""
        request_id_of(request)  # echoed as X-Request-ID (the app's guard does not run on /v1)
        return Response(gateway.models(request.headers.get("authorization")), media_type=_JSON)

    @get("/models/{model_id:str}", operation_id="retrieveModel", tags=["inference"])
    async def retrieve_model(request: Request, model_id: Annotated[str, PathParameter()]) -> Response[bytes]:
        """Describe one model if a live agent of the caller's organization serves it."""
        request_id_of(request)
        return Response(gateway.model(request.headers.get("authorization"), model_id), media_type=_JSON)

    @post("/chat/completions", operation_id="createChatCompletion", tags=["inference"], status_code=200)
    async def create_chat_completion(request: Request) -> Response:
        """Create a chat completion; with ``stream: true`` it arrives as server-sent events."""
        return await gateway.generate(request, CHAT)

    @post("/completions", operation_id="createCompletion", tags=["inference"], status_code=200)
    async def create_completion(request: Request) -> Response:
        """Create a (legacy) text completion; with ``stream: true`` it arrives as server-sent events."""
        return await gateway.generate(request, COMPLETIONS)

    return Router(
        path="/v1",
        route_handlers=[list_models, retrieve_model, create_chat_completion, create_completion],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=gateway.settings.max_body_bytes,
        signature_types=[ChatCompletion, Completion, Model, ModelList],
    )
