"""``ownllm-agent doctor`` for the ``openai`` backend: reachable, models, capacity, a one-token completion, latency.

The probe prompt is a fixed word; nothing the server answers is printed except counts and names. It
connects as jobs do: through aiohttp, the host checked at each new connection.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from agent.backends.base import RequestError
from agent.backends.upstream_capacity import FAILURES, capacity_or_default
from agent.backends.upstream_config import UpstreamAddressError, UpstreamConfig
from agent.backends.upstream_http import CheckedResolver, fetch_listing, upstream_session
from agent.backends.upstream_models import ListingError, announced, parse_listing
from agent.backends.upstream_stream import stream_event
from agent.backends.upstream_wire import StreamEvent

Rows = list[tuple[str, str]]


def _ms(start: float) -> str:
    """Milliseconds since ``start``."""
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


def upstream_rows(config: UpstreamConfig) -> Rows:
    """Rows of (what, finding) about the upstream server."""
    return asyncio.run(_rows(config))


async def _rows(config: UpstreamConfig) -> Rows:
    """The checks, in one connection pool."""
    resolver = None if config.allow_remote else CheckedResolver()
    timeout = aiohttp.ClientTimeout(total=30.0, connect=config.connect_timeout_s)
    try:
        async with upstream_session(config, resolver, 1, timeout, decompress=True) as client:
            return await _check(client, config)
    finally:
        if resolver is not None:
            await resolver.close()


async def _check(client: aiohttp.ClientSession, config: UpstreamConfig) -> Rows:
    """Reachable, the models, a one-token completion."""
    start = time.perf_counter()
    try:
        status, body = await fetch_listing(client, config)
    except ListingError as exc:
        return [("upstream", f"{config.url}: {exc}")]
    except FAILURES as exc:
        return [("upstream", f"{config.url}: not reachable ({type(exc).__name__}{_why(exc)})")]
    if status != 200:
        hint = " (check the upstream key)" if status in (401, 403) else ""
        return [("upstream", f"{config.url}: GET /models answered HTTP {status}{hint}")]
    rows: Rows = [("upstream", f"{config.url}: reachable, GET /models in {_ms(start)}")]
    try:
        routes = announced(config, parse_listing(body))
    except ListingError as exc:
        return [*rows, ("upstream models", str(exc))]
    shown = ", ".join(f"{public} (context {info.context_length})" for public, (_, info) in routes.items())
    rows.append(("upstream models", shown or "none (check --models against the server's model ids)"))
    rows.append(("upstream capacity", await _capacity(client, config)))
    if routes:
        public, (upstream_id, _) = next(iter(routes.items()))
        rows.append((f"one-token completion ({public})", await _one_token(client, config, upstream_id)))
    return rows


async def _capacity(client: aiohttp.ClientSession, config: UpstreamConfig) -> str:
    """The jobs the agent runs at once: set, reported by the server, or the default."""
    if config.capacity:
        return f"{config.capacity} (set)"
    capacity, source = await capacity_or_default(client, config)
    if source is None:
        return f"not reported: {capacity} (set --capacity, e.g. to vLLM's --max-num-seqs)"
    return f"{capacity} ({source})"


def _why(exc: BaseException) -> str:
    """The reason a refused host gives (its public address), else nothing."""
    cause = exc.__cause__ or exc.__context__
    return f": {cause}" if isinstance(cause, UpstreamAddressError) else ""


async def _one_token(client: aiohttp.ClientSession, config: UpstreamConfig, model: str) -> str:
    """Stream a one-token chat completion; the time to its first event and whether usage came with it."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first: str | None = None
    usage = False
    try:
        async with client.post(config.url + "/chat/completions", json=body, allow_redirects=False) as response:
            if response.status != 200:
                return f"failed: HTTP {response.status}"
            async for raw in response.content:
                event = stream_event(raw.strip())  # the relay's own reading of a line
                if not isinstance(event, StreamEvent):
                    continue
                first = first or _ms(start)
                usage = usage or event.usage is not None
    except RequestError as exc:  # a malformed event, or an error mid-stream
        return f"failed: {exc}"
    except FAILURES as exc:
        return f"failed ({type(exc).__name__})"
    counts = "usage reported" if usage else "no usage reported: token counts will be estimated"
    return f"ok, first event in {first or '-'}, done in {_ms(start)}; {counts}"
