"""How many requests the upstream runs at once, where it says so.

llama.cpp's server reports its slots (``GET /props``: ``total_slots``, its ``--parallel``); SGLang its
``max_running_requests`` (``GET /server_info``, or the older ``/get_server_info``; top level or in
``internal_states``). No endpoint the agent knows reports vLLM's ``--max-num-seqs``, Ollama's
``OLLAMA_NUM_PARALLEL`` or TabbyAPI's batch size: there the capacity is the setting (``--capacity``),
else :data:`DEFAULT_CAPACITY`. A set capacity is never replaced. The answer is untrusted input: a bounded
body, a number within :data:`MAX_UPSTREAM_CAPACITY`, anything else ignored.
"""

from __future__ import annotations

import aiohttp
import msgspec

from agent.backends.upstream_config import UpstreamConfig
from agent.backends.upstream_http import bounded_body

DEFAULT_CAPACITY = 16
MAX_UPSTREAM_CAPACITY = 1024
MAX_INFO_BYTES = 1024 * 1024  # llama.cpp's /props carries the chat template
SOURCES = (("/props", "llama.cpp"), ("/server_info", "SGLang"), ("/get_server_info", "SGLang"))


class _State(msgspec.Struct):
    max_running_requests: int | None = None


class _Info(msgspec.Struct):
    total_slots: int | None = None  # llama.cpp
    max_running_requests: int | None = None  # SGLang's server args
    internal_states: list[_State] | None = None  # SGLang: what the scheduler settled on


_info = msgspec.json.Decoder(_Info)


def server_root(config: UpstreamConfig) -> str:
    """The server's root: the base URL without its ``/v1``."""
    return config.url.removesuffix("/v1")


def reported(body: bytes) -> int | None:
    """The capacity an info body reports, if it is a sane number."""
    try:
        info = _info.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    states = info.internal_states or []
    for value in (info.total_slots, info.max_running_requests, *(s.max_running_requests for s in states[:1])):
        if value is not None and 0 < value <= MAX_UPSTREAM_CAPACITY:
            return value
    return None


async def discover_capacity(client: aiohttp.ClientSession, config: UpstreamConfig) -> tuple[int, str] | None:
    """(capacity, where it came from), from the first source that reports one; None when none does."""
    for path, engine in SOURCES:
        async with client.get(server_root(config) + path, allow_redirects=False) as response:
            if response.status != 200:
                continue
            capacity = reported(await bounded_body(response.content, MAX_INFO_BYTES))  # cut short: not JSON
        if capacity is not None:
            return capacity, f"{engine} {path}"
    return None


FAILURES = (aiohttp.ClientError, TimeoutError, ValueError)  # ValueError: a line over aiohttp's limit


async def capacity_or_default(client: aiohttp.ClientSession, config: UpstreamConfig) -> tuple[int, str | None]:
    """(capacity, where the upstream reported it), or (the default, None) when it reports none or fails to."""
    try:
        found = await discover_capacity(client, config)
    except FAILURES:
        found = None
    return found or (DEFAULT_CAPACITY, None)
