"""``ownllm-agent doctor`` for the ``openai`` backend: reachable, models, a one-token completion, latency.

The probe prompt is a fixed word; nothing the server answers is printed except counts and names.
"""

from __future__ import annotations

import time

import httpx
import msgspec

from agent.backends.upstream_config import UpstreamConfig
from agent.backends.upstream_models import ListingError, announced, parse_listing
from agent.backends.upstream_wire import stream_events

Rows = list[tuple[str, str]]


def _ms(start: float) -> str:
    """Milliseconds since ``start``."""
    return f"{(time.perf_counter() - start) * 1000:.0f} ms"


def upstream_rows(config: UpstreamConfig, transport: httpx.BaseTransport | None = None) -> Rows:
    """Rows of (what, finding) about the upstream server."""
    timeout = httpx.Timeout(30.0, connect=config.connect_timeout_s)
    with httpx.Client(trust_env=False, headers=config.headers(), timeout=timeout, transport=transport) as client:
        start = time.perf_counter()
        try:
            listing = client.get(config.url + "/models")
        except httpx.HTTPError as exc:
            return [("upstream", f"{config.url}: not reachable ({type(exc).__name__})")]
        if listing.status_code != 200:
            hint = " (check the upstream key)" if listing.status_code in (401, 403) else ""
            return [("upstream", f"{config.url}: GET /models answered HTTP {listing.status_code}{hint}")]
        rows: Rows = [("upstream", f"{config.url}: reachable, GET /models in {_ms(start)}")]
        try:
            routes = announced(config, parse_listing(listing.content))
        except ListingError as exc:
            return [*rows, ("upstream models", str(exc))]
        shown = ", ".join(f"{public} (context {info.context_length})" for public, (_, info) in routes.items())
        rows.append(("upstream models", shown or "none (check --models against the server's model ids)"))
        if routes:
            public, (upstream_id, _) = next(iter(routes.items()))
            rows.append((f"one-token completion ({public})", _one_token(client, config, upstream_id)))
    return rows


def _one_token(client: httpx.Client, config: UpstreamConfig, model: str) -> str:
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
        with client.stream("POST", config.url + "/chat/completions", json=body) as response:
            if response.status_code != 200:
                return f"failed: HTTP {response.status_code}"
            for line in response.iter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                first = first or _ms(start)
                try:
                    usage = usage or stream_events.decode(line[5:].strip()).usage is not None
                except (msgspec.DecodeError, msgspec.ValidationError):
                    return "failed: the server sent a malformed event"
    except httpx.HTTPError as exc:
        return f"failed ({type(exc).__name__})"
    counts = "usage reported" if usage else "no usage reported: token counts will be estimated"
    return f"ok, first event in {first or '-'}, done in {_ms(start)}; {counts}"
