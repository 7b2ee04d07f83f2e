"""``flush_in_order``: when it returns, the server had the subscription made before it (a scripted server).

nats-py writes ``flush()``'s PING ahead of a SUB its flusher task has not written yet; the scripted
server notes, for every PING, whether that connection's SUB had arrived, and answers PONG at once.
"""

from __future__ import annotations

import asyncio
import json

import nats

from agent.protocol import flush_in_order

INFO = {"server_id": "scripted", "version": "2.10.0", "proto": 1, "headers": True, "max_payload": 1048576}


class ScriptedServer:
    """Speaks just enough NATS for connect, SUB and PING; for each PING, whether a SUB came before it."""

    def __init__(self) -> None:
        self.pings: list[bool] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"INFO " + json.dumps(INFO).encode() + b"\r\n")
        subscribed = False
        while line := await reader.readline():
            if line.startswith(b"SUB "):
                subscribed = True
            elif line == b"PING\r\n":
                self.pings.append(subscribed)
                writer.write(b"PONG\r\n")
                await writer.drain()
        writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_the_pong_that_ends_the_flush_comes_after_the_subscription() -> None:
    scripted = ScriptedServer()
    url = await scripted.start()
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        await nc.subscribe("ollm.t.job.m", queue="m")
        await flush_in_order(nc)  # a bare nc.flush() here: its only PING is answered before the SUB arrives
        assert scripted.pings[-1] is True
    finally:
        await nc.close()
        scripted.close()
