"""The proxy's NATS login works only on the standard (private) port; agents may use the websocket
(public) listener; every connection is bounded in subscriptions and payload (real nats-server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from agent.protocol import flush_in_order
from api.embedded_nats import MAX_CONNECTIONS, MAX_SUBSCRIPTIONS, EmbeddedNats, nats_server_binary
from api.nats_auth import AgentAccount, hash_password, render
from api.settings import Settings
from tests.support.nats import NatsServer, free_port
from tests.support.tls_certs import make_tls_files

TENANT, AGENT = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-0000000000a1"
PROXY_PASSWORD = "proxy-password"
DEPLOY_CONF = Path(__file__).parents[2] / "deploy" / "nats" / "nats-server.conf"


@pytest.fixture(scope="module")
def two_listeners() -> Iterator[tuple[NatsServer, int]]:
    """A server with the generated users, its standard port and a websocket listener (plain, loopback)."""
    ws_port = free_port()
    agent = AgentAccount(AGENT, TENANT, f"agent-{AGENT}", hash_password(f"agent-{AGENT}", rounds=4))
    config = render("ownllm-proxy", hash_password(PROXY_PASSWORD, rounds=4), [agent])
    config += f'websocket {{\n  listen: "127.0.0.1:{ws_port}"\n  no_tls: true\n}}\n'
    with NatsServer(config=config) as server:
        yield server, ws_port


async def logs_in(url: str, user: str, password: str) -> bool:
    """Whether the server takes this login at this URL."""
    try:
        connection = await nats.connect(url, user=user, password=password, allow_reconnect=False, connect_timeout=3)
    except (nats.errors.NoServersError, nats.errors.Error, OSError):
        return False
    await connection.close()
    return True


async def test_the_proxy_login_is_refused_on_the_agents_listener(two_listeners: tuple[NatsServer, int]) -> None:
    server, ws_port = two_listeners
    assert await logs_in(server.url, "ownllm-proxy", PROXY_PASSWORD)
    assert not await logs_in(f"ws://127.0.0.1:{ws_port}", "ownllm-proxy", PROXY_PASSWORD)


async def test_agents_log_in_on_the_websocket_listener(two_listeners: tuple[NatsServer, int]) -> None:
    _, ws_port = two_listeners
    user = f"agent-{AGENT}"
    assert await logs_in(f"ws://127.0.0.1:{ws_port}", user, user)


def test_the_generated_users_name_their_listeners() -> None:
    text = render("p", "hash", [AgentAccount(AGENT, TENANT, "a", "hash")])
    assert text.count('"allowed_connection_types"') == 2
    assert re.search(r'"user": "p".*?"allowed_connection_types": \[\s*"STANDARD"\s*\]', text, re.S)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The embedded server with one agent."""
    server = EmbeddedNats(Settings(var_dir=str(tmp_path_factory.mktemp("var"))))
    agent = AgentAccount(AGENT, TENANT, f"agent-{AGENT}", hash_password(f"agent-{AGENT}", 4))
    server.authorization.sync([agent])  # written before the start: no reload to wait for
    server.start()
    yield server
    server.stop()


async def test_an_agent_connection_cannot_hold_unbounded_subscriptions(embedded: EmbeddedNats) -> None:
    user = f"agent-{AGENT}"
    connection = await nats.connect(embedded.url, user=user, password=user, allow_reconnect=False)
    for i in range(MAX_SUBSCRIPTIONS):
        await connection.subscribe(f"ollm.{TENANT}.job.model-{i}")
    await flush_in_order(connection)
    assert connection.is_connected  # up to the bound is fine
    await connection.subscribe(f"ollm.{TENANT}.job.one-too-many")
    with contextlib.suppress(nats.errors.ConnectionClosedError, nats.errors.FlushTimeoutError):
        await connection.flush(timeout=5)
    deadline = time.monotonic() + 10  # the server answers -ERR and closes; the client notices in its own time
    while connection.is_connected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not connection.is_connected
    assert "maximum subscriptions exceeded" in embedded.log_tail(50)
    await connection.close()


async def test_the_payload_bound_is_announced(embedded: EmbeddedNats) -> None:
    user = f"agent-{AGENT}"
    connection = await nats.connect(embedded.url, user=user, password=user)
    assert 1024 * 1024 <= connection.max_payload <= 8 * 1024 * 1024
    await connection.close()


def test_the_production_config_sets_the_same_limits() -> None:
    text = DEPLOY_CONF.read_text()
    assert re.search(rf"^max_subscriptions:\s*{MAX_SUBSCRIPTIONS}\b", text, re.M)
    assert re.search(rf"^max_connections:\s*{MAX_CONNECTIONS}\b", text, re.M)
    assert re.search(r"^\s*handshake_first:\s*true\b", text, re.M)
    assert re.search(r"^websocket\s*\{", text, re.M)


def test_the_production_config_is_valid_for_nats_server(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    text = DEPLOY_CONF.read_text().replace("/run/nats/", f"{tmp_path}/").replace("port: 443", f"port: {free_port()}")
    for name in ("server", "public"):
        text = text.replace(f"/etc/nats/tls/{name}.crt", str(tls.cert))
        text = text.replace(f"/etc/nats/tls/{name}.key", str(tls.key))
    (tmp_path / "nats-server.conf").write_text(text)
    (tmp_path / "auth.conf").write_text(render("ownllm-proxy", hash_password("x", rounds=4), []))
    env = {"NATS_SERVER_NAME": "n1", "NATS_PRIVATE_ADDRESS": "127.0.0.1", "PATH": os.environ.get("PATH", "")}
    checked = subprocess.run([nats_server_binary(), "-t", "-c", str(tmp_path / "nats-server.conf")],
                             capture_output=True, text=True, env=env, timeout=30)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
