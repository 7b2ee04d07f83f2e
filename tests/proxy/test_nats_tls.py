"""``tls://`` NATS URLs require TLS from the first byte, for the proxy and the agent alike (real nats-server)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from agent.backends.echo import EchoBackend
from agent.cli import run_loop
from agent.protocol import NatsUrlError, tls_options
from agent.worker import Worker, WorkerConfig
from api.proxy.registry import AgentRegistry
from api.proxy.transport import Transport
from tests.support.nats import NatsServer, users_config
from tests.support.tls_certs import TlsFiles, make_tls_files

USER, PASSWORD = "ownllm-proxy", "s3cret-password-never-in-clear"
USERS = users_config(
    [
        {"user": USER, "password": PASSWORD},
        {"user": "agent-a1", "password": PASSWORD, "permissions": {"publish": [">"], "subscribe": [">"]}},
    ]
)
Connect = Callable[..., Awaitable[Callable[[], Awaitable[None]]]]
REFUSED_WITHIN_S = 2.0  # these clients retry forever: "fails" means "not connected after retrying a while"


async def proxy_connect(url: str, ca_file: str | None, within_s: float = 10) -> Callable[[], Awaitable[None]]:
    """Connect the proxy's transport; return its close."""
    transport = Transport(url, USER, PASSWORD, "inst", AgentRegistry(), generation_timeout_s=30, keepalive_s=5)
    await asyncio.wait_for(transport.connect(ca_file=ca_file), within_s)
    assert transport.connected
    return transport.close


async def agent_connect(url: str, ca_file: str | None, within_s: float = 10) -> Callable[[], Awaitable[None]]:
    """Start an echo agent's worker; return its stop."""
    config = WorkerConfig("a1", "t", url, "agent-a1", PASSWORD, nats_ca_file=ca_file)
    worker = Worker(EchoBackend(), config)
    await asyncio.wait_for(worker.start(), within_s)
    assert worker.nc is not None and worker.nc.is_connected
    return worker.stop


CLIENTS = pytest.mark.parametrize("connect", [proxy_connect, agent_connect], ids=["proxy", "agent"])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def tls_config(certs: TlsFiles) -> str:
    """A server that requires TLS and takes the handshake before sending INFO."""
    return USERS + f'tls {{\n  cert_file: "{certs.cert}"\n  key_file: "{certs.key}"\n  handshake_first: true\n}}\n'


@CLIENTS
async def test_tls_url_against_a_plaintext_server_fails(connect: Connect, certs: TlsFiles) -> None:
    with NatsServer(config=USERS) as server, pytest.raises(Exception):  # noqa: B017 - it must never connect
        close = await connect(f"tls://127.0.0.1:{server.port}", str(certs.ca), REFUSED_WITHIN_S)
        await close()


@CLIENTS
async def test_tls_url_with_the_ca_connects(connect: Connect, certs: TlsFiles) -> None:
    with NatsServer(config=tls_config(certs)) as server:
        close = await connect(f"tls://127.0.0.1:{server.port}", str(certs.ca))
        await close()


def test_the_agents_own_loop_connects_over_tls(certs: TlsFiles) -> None:
    """``ownllm-agent serve`` runs on uvloop (``run_loop``), whose TLS is its own: the same handshake-first
    connection works there, not only on the asyncio loop the other tests run on."""
    loops: list[str] = []

    async def connect_once(url: str) -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)
        stop = await agent_connect(url, str(certs.ca))
        await stop()

    with NatsServer(config=tls_config(certs)) as server:
        run_loop(connect_once(f"tls://127.0.0.1:{server.port}"))
    assert loops == ["uvloop"]


@CLIENTS
async def test_tls_url_without_the_ca_is_refused(connect: Connect, certs: TlsFiles) -> None:
    with NatsServer(config=tls_config(certs)) as server, pytest.raises(Exception):  # noqa: B017 - never connects
        close = await connect(f"tls://127.0.0.1:{server.port}", None, REFUSED_WITHIN_S)
        await close()


class PlaintextImpostor:
    """A man in the middle: answers every connection with a plaintext INFO and records what it gets."""

    INFO = b'INFO {"server_id":"x","version":"2.15.1","proto":1,"max_payload":1048576,"auth_required":true}\r\n'

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    conn.sendall(self.INFO)
                    conn.settimeout(1.0)
                    with contextlib.suppress(OSError):
                        while chunk := conn.recv(65536):
                            self.received += chunk

    def close(self) -> None:
        """Stop accepting."""
        self.sock.close()


@pytest.fixture
def impostor() -> Iterator[PlaintextImpostor]:
    """A plaintext INFO sender on a free port."""
    server = PlaintextImpostor()
    try:
        yield server
    finally:
        server.close()


@CLIENTS
async def test_a_stripped_tls_never_sends_the_password(connect: Connect, impostor: PlaintextImpostor) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the handshake fails one way or another
        close = await connect(f"tls://127.0.0.1:{impostor.port}", None, REFUSED_WITHIN_S)
        await close()
    assert impostor.received, "the client spoke to the impostor (a TLS ClientHello)"
    assert PASSWORD.encode() not in impostor.received
    assert b"CONNECT" not in impostor.received


def test_plain_urls_get_no_tls_options_and_mixing_is_refused(tmp_path: Path) -> None:
    assert tls_options("nats://127.0.0.1:4222") == {}
    assert tls_options("wss://nats.example:443")["tls"] is not None
    assert "tls_handshake_first" not in tls_options("wss://nats.example:443")
    assert tls_options("TLS://nats.example:4222")["tls_handshake_first"] is True
    with pytest.raises(NatsUrlError):
        tls_options(["tls://a:4222", "nats://b:4222"])
