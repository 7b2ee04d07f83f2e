"""Choosing the inference engine: ``auto`` picks the best one that imports and accepts the models.

Preference: exllamav3 > exllamav2 > transformers. ``echo`` (a test backend) is only used when asked.
Every import is lazy: selecting never imports torch unless an engine is probed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import get_args

import msgspec

from agent.backends.base import Backend
from agent.models import Engine, ModelSource, exllama_problems
from agent.settings import BackendChoice

log = logging.getLogger("ownllm.agent.selection")
AUTO_ORDER: tuple[Engine, ...] = ("exllamav3", "exllamav2", "transformers")
ENGINE_MODULES: dict[str, tuple[str, ...]] = {
    "exllamav3": ("torch", "exllamav3"),
    "exllamav2": ("torch", "exllamav2"),
    "transformers": ("torch", "transformers", "gguf", "accelerate"),
    "echo": (),
    "openai": ("aiohttp",),
}
# An import probe answers None when the engine can run here, or the reason it cannot.
ImportProbe = Callable[[str], str | None]


class SelectionError(RuntimeError):
    """No engine can serve the models; the message lists why each was passed over."""


class Choice(msgspec.Struct, frozen=True):
    """The chosen engine and the reasons the better ones were passed over."""

    engine: Engine
    passed_over: tuple[str, ...] = ()


def probe_engine(engine: str) -> str | None:
    """Default probe: import the engine's modules; ExLlama also needs a CUDA device."""
    for module in ENGINE_MODULES[engine]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or an extension build failing at import
            return f"{module} does not import ({type(exc).__name__}: {exc})"
    if engine in ("exllamav3", "exllamav2"):
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    return None


def model_problems(engine: Engine, sources: list[ModelSource]) -> list[str]:
    """Why an engine cannot serve these models (empty when it can)."""
    if engine in ("exllamav3", "exllamav2"):
        return [p for s in sources for p in exllama_problems(s, engine)]
    return []


def choose(requested: BackendChoice, sources: list[ModelSource], probe: ImportProbe = probe_engine) -> Choice:
    """Pick the engine: the requested one (checked), or for ``auto`` the best that works here."""
    if requested != "auto":
        reason = probe(requested)
        problems = [reason] if reason else model_problems(requested, sources)
        if problems:
            raise SelectionError(f"backend {requested} cannot serve here: " + "; ".join(problems))
        return Choice(requested)
    passed: list[str] = []
    for engine in AUTO_ORDER:
        reason = probe(engine)
        problems = [reason] if reason else model_problems(engine, sources)
        if not problems:
            for line in passed:
                log.info("auto: passed over %s", line)
            log.info("auto: chose %s", engine)
            return Choice(engine, tuple(passed))
        passed.append(f"{engine}: " + "; ".join(problems))
    raise SelectionError("no backend can serve these models:\n  " + "\n  ".join(passed))


def build_backend(
    engine: Engine, sources: list[ModelSource], capacity: int | None = None, **options: object
) -> Backend:
    """Construct (not load) the backend for an engine, importing its module only now."""
    if engine not in get_args(Engine):
        raise SelectionError(f"unknown backend {engine!r}")
    if engine == "echo":
        from agent.backends.echo import EchoBackend

        ids = tuple(s.id for s in sources) or ("echo",)
        delay = float(options.get("echo_token_delay_s", 0.0))  # type: ignore[arg-type]
        return EchoBackend(model_ids=ids, capacity=capacity or 4, token_delay_s=delay)
    if engine == "openai":
        from agent.backends.openai_upstream import OpenAIUpstreamBackend
        from agent.backends.upstream_config import UpstreamConfig

        upstream = options.get("upstream")
        if not isinstance(upstream, UpstreamConfig):
            raise SelectionError("backend openai needs an upstream URL (--upstream-url)")
        return OpenAIUpstreamBackend(upstream)
    if engine == "transformers":
        from agent.backends.transformers import TransformersBackend

        return TransformersBackend(sources, capacity=capacity or 1)
    if engine == "exllamav2":
        from agent.backends.exllamav2 import ExLlamaV2Backend

        return ExLlamaV2Backend(sources, capacity=capacity)
    from agent.backends.exllamav3 import ExLlamaV3Backend

    return ExLlamaV3Backend(sources, capacity=capacity)
