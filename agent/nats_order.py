"""Flushing a NATS connection so that the server has everything sent before, subscriptions included."""

from __future__ import annotations

from nats.aio.client import Client as NATS


async def flush_in_order(nc: NATS) -> None:
    """Return once the server has processed every command this connection sent before the call.

    nats-py (2.16) writes ``flush()``'s PING straight to the socket, ahead of commands its flusher task
    has not written yet (a SUB just made), so one flush can come back before the server holds the
    subscription, and a request from another connection then finds no responders. By the time the
    first PONG is read the flusher has written that queue, so the second PING follows it.
    """
    await nc.flush()
    await nc.flush()
