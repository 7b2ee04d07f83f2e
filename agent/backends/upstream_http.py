"""Connections to the upstream: its host checked again at every new connection, not only at start.

``check_url`` refuses a host that resolves to a public address when the agent starts; a DNS answer
that changes later (a record edited, a rebinding attack) must not send prompts or the upstream key
off the machine's private network either. Everything the agent sends upstream (jobs, model polls
from the first listing on, the doctor's checks) connects through :class:`CheckedResolver`, which
resolves as aiohttp does and refuses the connection when any address is public (the connection
fails as an unreachable upstream does: the job fails retryably, a poll marks the upstream down).
Polls (every few seconds) open a new connection and resolve anew each time; jobs keep their
connections and aiohttp's 10 s cache of checked answers. With ``allow_remote`` nothing is checked;
an IP literal never changes and was checked at start.
"""

from __future__ import annotations

import logging
import socket

import aiohttp
from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from agent.backends.upstream_config import UpstreamAddressError, UpstreamConfig, public_addresses
from agent.backends.upstream_models import ListingError

log = logging.getLogger("ownllm.agent.upstream")
MAX_LISTING = 4 * 1024 * 1024  # a GET /v1/models answer


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a host that resolves to any public address."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()
        self._refused: tuple[str, ...] = ()  # the last refused answer (logged once, not per connection)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The host's addresses, all on loopback or a private network; else raises UpstreamAddressError."""
        results = await self._inner.resolve(host, port, family)
        public = public_addresses(str(r["host"]) for r in results)
        if public:
            if tuple(public) != self._refused:
                self._refused = tuple(public)
                log.warning("upstream %s now resolves to %s, not a private address: not connecting", host,
                            ", ".join(public))  # fmt: skip
            raise UpstreamAddressError(f"upstream {host!r} resolves to a public address ({', '.join(public)})")
        self._refused = ()
        return results

    async def close(self) -> None:
        """Close the resolver it wraps."""
        await self._inner.close()


def upstream_session(
    config: UpstreamConfig, resolver: CheckedResolver | None, connections: int, timeout: aiohttp.ClientTimeout,
    headers: dict[str, str] | None = None, decompress: bool = False, fresh: bool = False,
) -> aiohttp.ClientSession:  # fmt: skip
    """A connection pool to the upstream: its key sent, no proxy from the environment, each new connection
    through ``resolver`` (None only when remote upstreams are allowed), whose checked answers aiohttp
    keeps up to 10 s; ``fresh``: a new connection and a new answer, so a new check, for every request."""
    kept = {"force_close": True, "use_dns_cache": False} if fresh else {"keepalive_timeout": 30}
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, resolver=resolver, **kept),  # type: ignore[arg-type]
        headers={**config.headers(), **(headers or {})},
        timeout=timeout,
        trust_env=False,
        auto_decompress=decompress,
    )


async def bounded_body(content: aiohttp.StreamReader, limit: int) -> bytes:
    """A body, at most ``limit`` bytes."""
    raw = bytearray()
    while len(raw) < limit:
        part = await content.read(limit - len(raw))
        if not part:
            break
        raw += part
    return bytes(raw)


async def fetch_listing(client: aiohttp.ClientSession, config: UpstreamConfig) -> tuple[int, bytes]:
    """``GET /models``: the status and body; ListingError for a body over ``MAX_LISTING`` bytes."""
    async with client.get(config.url + "/models", allow_redirects=False) as response:
        status, body = response.status, await bounded_body(response.content, MAX_LISTING + 1)
    if len(body) > MAX_LISTING:
        raise ListingError(f"a model listing over {MAX_LISTING} bytes")
    return status, body
