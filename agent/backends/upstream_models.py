"""The upstream's models from ``GET /v1/models``: ids, context lengths, and what the agent announces.

Servers report the context in different places: vLLM and SGLang ``max_model_len``, llama.cpp's
server ``meta.n_ctx`` (or ``meta.n_ctx_train``), some ``context_length``/``context_window``.
Anything else gets the configured default. The listing is untrusted input: bounded and checked.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agent.backends.upstream_config import UpstreamConfig
from agent.protocol import ModelInfo

MAX_MODELS = 64
MAX_ID_CHARS = 256
MAX_CONTEXT = 10_000_000
BACKEND_NAME = "openai"


class UpstreamModel(msgspec.Struct, frozen=True):
    """One model as the upstream lists it."""

    id: str
    context_length: int | None = None


class _Meta(msgspec.Struct):
    n_ctx: int | None = None
    n_ctx_train: int | None = None


class _Entry(msgspec.Struct):
    id: str
    max_model_len: int | None = None
    context_length: int | None = None
    context_window: int | None = None
    meta: _Meta | None = None


class _Listing(msgspec.Struct):
    data: list[_Entry]


_listing = msgspec.json.Decoder(_Listing)


class ListingError(ValueError):
    """The upstream's answer to ``GET /v1/models`` is not a model list."""


def _context(entry: _Entry) -> int | None:
    """The context length an entry reports, if it is a sane number."""
    meta = entry.meta or _Meta()
    for value in (entry.max_model_len, meta.n_ctx, entry.context_length, entry.context_window, meta.n_ctx_train):
        if isinstance(value, int) and 0 < value <= MAX_CONTEXT:
            return value
    return None


def parse_listing(body: bytes) -> list[UpstreamModel]:
    """The models of a ``/v1/models`` body (at most :data:`MAX_MODELS`, ids bounded)."""
    try:
        listing = _listing.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise ListingError(f"not an OpenAI model list ({type(exc).__name__})") from None
    models: dict[str, UpstreamModel] = {}
    for entry in listing.data:
        if 0 < len(entry.id) <= MAX_ID_CHARS and entry.id.isprintable() and entry.id not in models:
            models[entry.id] = UpstreamModel(entry.id, _context(entry))
        if len(models) >= MAX_MODELS:
            break
    return list(models.values())


def announced(config: UpstreamConfig, listed: list[UpstreamModel]) -> dict[str, tuple[str, ModelInfo]]:
    """Announced id -> (upstream id, ModelInfo) for the models to serve now.

    With configured routes, a route is served while its upstream model is listed (a server that
    lists a single model under another name, such as a file path, still serves the one route that
    names it). Without routes, every listed model is served under its own id.
    """
    by_id = {m.id: m for m in listed}
    licences = dict(config.licences)
    pairs: list[tuple[str, UpstreamModel]]
    if config.routes:
        pairs = [(public, by_id[upstream]) for public, upstream in config.routes if upstream in by_id]
    else:
        pairs = [(m.id, m) for m in listed]
    return {
        public: (
            model.id,
            ModelInfo(
                id=public,
                backend=BACKEND_NAME,
                context_length=model.context_length or config.context_length,
                licence=licences.get(public),
            ),
        )
        for public, model in pairs
    }


def describe(models: dict[str, tuple[str, ModelInfo]]) -> dict[str, Any]:
    """A log-friendly summary: id -> context length."""
    return {public: info.context_length for public, (_, info) in models.items()}
