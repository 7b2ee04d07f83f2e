"""The upstream's host checked again at every new connection, not only at start.

``check_url`` refuses a host that resolves to a public address when the agent starts; a DNS answer
that changes later (a record edited, a rebinding attack) must not send prompts or the upstream key
off the machine's private network either. Jobs and model polls connect through
:class:`CheckedResolver`, which resolves as aiohttp does and refuses the connection when any
address is public (the connection fails as an unreachable upstream does: the job fails retryably, a
poll marks the upstream down). With ``allow_remote`` nothing is checked; an IP literal never
changes and was checked at start.
"""

from __future__ import annotations

import logging
import socket

from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from agent.backends.upstream_config import UpstreamAddressError, public_addresses

log = logging.getLogger("ownllm.agent.upstream")


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
