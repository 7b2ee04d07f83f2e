"""Generated NATS authorization against a real nats-server: tenant isolation and revocation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import NoServersError

from agent.protocol import flush_in_order
from api.embedded_nats import EmbeddedNats
from api.nats_auth import AgentAccount, NatsAuthorization, hash_password, render
from api.settings import Settings

A, B = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"


def account(tenant: str, agent: str) -> AgentAccount:
    """An agent account whose password is its user name (tests only)."""
    return AgentAccount(agent, tenant, f"agent-{agent}", hash_password(f"agent-{agent}", rounds=4))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """An embedded nats-server with one agent in tenant A and one in tenant B."""
    embedded = EmbeddedNats(Settings(var_dir=str(tmp_path / "var"))).start()
    embedded.authorization.sync([account(A, "a1"), account(B, "b1")])
    try:
        yield embedded
    finally:
        embedded.stop()


async def connect_agent(server: EmbeddedNats, agent: str, errors: list[str], **options: object) -> nats.NATS:
    """Connect as an agent, collecting asynchronous errors (permission violations)."""

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    user = f"agent-{agent}"
    return await nats.connect(server.url, user=user, password=user, error_cb=on_error, **options)


async def test_agent_cannot_touch_another_tenants_subjects(server: EmbeddedNats) -> None:
    proxy = await nats.connect(server.url, user="ownllm-proxy", password=server.password)
    errors: list[str] = []
    agent_a = await connect_agent(server, "a1", errors)
    received: list[bytes] = []

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    await agent_a.subscribe(f"ollm.{B}.job.>", cb=on_msg)
    await agent_a.subscribe(f"ollm.{A}.job.>", cb=on_msg)
    await flush_in_order(agent_a)
    await asyncio.sleep(0.2)
    await proxy.publish(f"ollm.{B}.job.echo", b"for B")
    await proxy.publish(f"ollm.{A}.job.echo", b"for A")
    spied: list[bytes] = []

    async def on_spied(msg: nats.aio.msg.Msg) -> None:
        spied.append(msg.data)

    await proxy.subscribe(f"ollm.{B}.>", cb=on_spied)
    await flush_in_order(proxy)
    await agent_a.publish(f"ollm.{B}.reply.inst.job1", b"forged")
    await agent_a.publish(f"ollm.{B}.hb.b1", b"forged")
    await agent_a.publish(f"ollm.{A}.hb.b1", b"not my heartbeat subject")
    await flush_in_order(agent_a)
    await asyncio.sleep(0.3)
    assert received == [b"for A"]
    assert spied == []
    violations = [e for e in errors if "permissions violation" in e.lower()]
    assert any("subscription" in e and f"ollm.{B}.job" in e for e in violations)
    assert any("publish" in e and f"ollm.{B}.reply" in e for e in violations)
    assert any("publish" in e and f"ollm.{A}.hb.b1" in e for e in violations)
    await agent_a.close()
    await proxy.close()


async def test_revoked_agent_is_disconnected_and_refused_within_10s(server: EmbeddedNats) -> None:
    errors: list[str] = []
    gone = asyncio.Event()

    async def on_disconnect() -> None:
        gone.set()

    agent_b = await connect_agent(server, "b1", errors, disconnected_cb=on_disconnect, max_reconnect_attempts=2)
    revoked_at = time.monotonic()
    assert server.authorization.sync([account(A, "a1")]) is True
    await asyncio.wait_for(gone.wait(), 10)
    assert time.monotonic() - revoked_at < 10
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await connect_agent(server, "b1", [], allow_reconnect=False, connect_timeout=2)
    kept = await connect_agent(server, "a1", [])  # the others are untouched
    assert kept.is_connected
    await kept.close()
    await agent_b.close()


def test_sync_is_idempotent_and_keeps_the_proxy_hash(tmp_path: Path) -> None:
    reloads: list[int] = []
    path = tmp_path / "auth.conf"
    a1 = account(A, "a1")
    first = NatsAuthorization(path, "ownllm-proxy", "secret", reload=lambda: reloads.append(1))
    assert first.sync([a1]) is True
    assert first.sync([a1]) is False
    again = NatsAuthorization(path, "ownllm-proxy", "secret")  # a restart: same password, same hash
    assert again.sync([a1]) is False
    assert again.sync([]) is True
    assert reloads == [1]  # only the first instance had a reload hook
    assert path.stat().st_mode & 0o777 == 0o600


def test_rendered_permissions_are_the_protocols() -> None:
    text = render("ownllm-proxy", "$2a$04$x", [account(B, "b1"), account(A, "a1")])
    assert text.index("agent-a1") < text.index("agent-b1")  # stable order
    assert f'"ollm.{A}.job.>"' in text and '"_INBOX.>"' in text and '"allow_responses"' in text


def test_embedded_config_has_no_jetstream_and_no_trace(server: EmbeddedNats) -> None:
    config = (server.dir / "nats-server.conf").read_text()
    assert not [line for line in config.splitlines() if line.strip().lower().startswith("jetstream")]
    assert "trace: false" in config and "debug: false" in config
    assert "127.0.0.1" in config
