"""The proxy's NATS client stops in bounded time, whatever state its connection is in (issue 13)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from api.embedded_nats import EmbeddedNats
from api.proxy.registry import AgentRegistry
from api.proxy.transport import Transport
from api.settings import Settings


def transport_for(nats: EmbeddedNats) -> Transport:
    settings = nats.settings_for_proxy()
    return Transport(
        url=settings.nats_url,
        user=settings.nats_proxy_user,
        password=settings.nats_proxy_password,
        instance_id="shutdown-test",
        registry=AgentRegistry(),
        generation_timeout_s=5.0,
        keepalive_s=5.0,
    )


@pytest.mark.parametrize("server", ["up", "gone", "hung"])
async def test_close_is_bounded_and_stops_reconnecting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, server: str
) -> None:
    nats = EmbeddedNats(Settings(var_dir=str(tmp_path / "var"))).start()
    transport = transport_for(nats)
    try:
        await transport.connect()
        nc = transport.nc
        assert nc is not None and nc.is_connected
        if server == "gone":
            nats.stop(kill=True)  # what a terminal's Ctrl-C did to the embedded server
            await asyncio.sleep(0.6)  # the client is reconnecting now (every 250 ms)
        elif server == "hung":
            os.kill(nats.pid, signal.SIGSTOP)  # connected, but no PONG: a drain would wait 30 s
        caplog.set_level(logging.WARNING, logger="api.proxy.transport")
        started = time.monotonic()
        await transport.close()
        assert time.monotonic() - started < 2.5
        assert nc.is_closed
        caplog.clear()
        await asyncio.sleep(0.8)
        assert not [r for r in caplog.records if "nats error" in r.getMessage()]  # no reconnect attempts left
    finally:
        if server == "hung":
            os.kill(nats.pid, signal.SIGCONT)
        nats.stop()
