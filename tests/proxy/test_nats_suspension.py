"""A suspended tenant's agents lose NATS access (real nats-server) and get it back on reinstatement."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest

from api.embedded_nats import EmbeddedNats
from api.reactions import NatsAuthorizationResync
from api.runtime import attach_nats_authorization
from api.services import Services, build_services
from api.settings import Settings, load_settings
from domain.context import SYSTEM, Ctx
from domain.tenant import Tenant


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    embedded = EmbeddedNats(Settings(var_dir=str(tmp_path / "nats-var"))).start()
    yield embedded
    embedded.stop()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({}, var_dir=str(tmp_path / "var"), inference=False))
    yield built
    built.close()


def paired_agent(services: Services, slug: str) -> tuple[Ctx, str, str]:
    """A tenant with one paired agent: the operator's context for it and the agent's NATS login."""
    signed = services.command(services.app.signup, slug=slug, name=slug, admin_name="Ada",
                              admin_email=f"ada@{slug}.example", request_id="signup")  # fmt: skip
    ctx = Ctx(actor=SYSTEM, tenant_id=signed.tenant_id, request_id="test")
    pairing = services.command(services.app.issue_pairing_key, ctx)
    agent = services.command(services.app.redeem_pairing_key, secret=pairing.secret, name="gpu", request_id="p")
    return ctx, agent.nats_user, agent.nats_password


async def can_connect(server: EmbeddedNats, user: str, password: str) -> bool:
    """Whether the server takes this login now."""
    try:
        connection = await nats.connect(server.url, user=user, password=password, allow_reconnect=False,
                                        connect_timeout=2)  # fmt: skip
    except (nats.errors.NoServersError, nats.errors.Error, OSError):
        return False
    await connection.close()
    return True


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    """Poll an async predicate until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"not within {timeout_s} s: {what}")


def test_the_resync_reacts_to_suspension_and_reinstatement() -> None:
    for event in (Tenant.Suspended, Tenant.Reinstated):
        assert any(topic.endswith(event.__qualname__) for topic in NatsAuthorizationResync.topics)


async def test_a_suspended_tenants_agent_is_cut_off_and_comes_back(
    nats_server: EmbeddedNats, services: Services
) -> None:
    ctx, user, password = paired_agent(services, "shady")
    _, other_user, other_password = paired_agent(services, "honest")
    attach_nats_authorization(services, nats_server.authorization)
    connection = await nats.connect(nats_server.url, user=user, password=password, max_reconnect_attempts=0)
    bystander = await nats.connect(nats_server.url, user=other_user, password=other_password)

    services.command(services.app.suspend_tenant, ctx, "unpaid")

    async def cut_off() -> bool:
        return not connection.is_connected

    await until(cut_off, "the suspended tenant's agent lost its connection")
    assert not await can_connect(nats_server, user, password)
    assert bystander.is_connected, "another tenant's agent was disturbed"

    services.command(services.app.reinstate_tenant, ctx, "paid")

    async def back() -> bool:
        return await can_connect(nats_server, user, password)

    await until(back, "the reinstated tenant's agent may connect again")
    await bystander.close()
