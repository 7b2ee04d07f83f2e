"""Closing the proxy's NATS connection at shutdown without waiting on a dead or hung server."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS

log = logging.getLogger(__name__)


async def drain_then_close(nc: NATS, timeout_s: float) -> None:
    """Drain for at most ``timeout_s``, then close whatever state the connection is in.

    ``drain()`` refuses a reconnecting connection (which would then go on reconnecting for ever)
    and waits up to nats-py's 30 s ``drain_timeout`` on a dead one; ``close()`` ends both.
    """
    if nc.is_closed:
        return
    drain = asyncio.ensure_future(nc.drain())
    drain.add_done_callback(log_drain_failure)
    await asyncio.wait({drain}, timeout=timeout_s)
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout_s)
    if not drain.done():
        drain.cancel()


def log_drain_failure(drain: asyncio.Future[None]) -> None:
    """Log (by class) why a drain at shutdown did not finish; the connection is closed regardless."""
    if not drain.cancelled() and drain.exception() is not None:
        log.info("nats connection closed without a drain: %s", type(drain.exception()).__name__)
