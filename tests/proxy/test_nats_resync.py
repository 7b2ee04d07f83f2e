"""A revoked agent's NATS access ends even when reloading NATS fails at first: the resync is retried."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from api.embedded_nats import EmbeddedNats
from api.nats_auth import NatsAuthorization, command_reload
from api.runtime import attach_nats_authorization
from api.services import build_services
from api.settings import Settings, load_settings
from domain.context import SYSTEM, Ctx
from projections.status import failure_log_for

FLAKY_RELOAD = """#!/bin/sh
# Fails while $DIR/fail holds a positive count (counting each failure), else reloads nats-server.
left=$(cat "{dir}/fail" 2>/dev/null || echo 0)
if [ "$left" -gt 0 ]; then echo $((left - 1)) > "{dir}/fail"; echo failed >> "{dir}/attempts"; exit 1; fi
echo reloaded >> "{dir}/attempts"
kill -HUP {pid}
"""


@pytest.fixture
def nats_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    embedded = EmbeddedNats(Settings(var_dir=str(tmp_path / "nats-var"))).start()
    yield embedded
    embedded.stop()


def attempts(tmp_path: Path) -> list[str]:
    path = tmp_path / "attempts"
    return path.read_text().split() if path.exists() else []


async def test_the_revoked_agent_is_cut_off_after_the_third_reload_attempt(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    script = tmp_path / "reload.sh"
    script.write_text(FLAKY_RELOAD.format(dir=tmp_path, pid=nats_server.pid))
    script.chmod(0o755)
    authorization = NatsAuthorization(
        nats_server.authorization.path, "ownllm-proxy", nats_server.password, command_reload(str(script))
    )
    services = build_services(load_settings({}, var_dir=str(tmp_path / "var"), inference=False))
    services.reactions.backoff_s = (0.2, 5.0)
    signed = services.command(services.app.signup, slug="acme", name="Acme", admin_name="Ada",
                              admin_email="ada@acme.example", request_id="signup")  # fmt: skip
    ctx = Ctx(actor=SYSTEM, tenant_id=signed.tenant_id, request_id="test")
    pairing = services.command(services.app.issue_pairing_key, ctx)
    agent = services.command(services.app.redeem_pairing_key, secret=pairing.secret, name="gpu-1", request_id="p")
    attach_nats_authorization(services, authorization)
    connection = await nats.connect(nats_server.url, user=agent.nats_user, password=agent.nats_password,
                                    max_reconnect_attempts=0)  # fmt: skip
    assert connection.is_connected

    (tmp_path / "fail").write_text("2")  # the next two reloads fail
    services.command(services.app.revoke_agent, ctx, agent.agent_id, "laptop stolen")
    status = failure_log_for(services.app.recorder)
    deadline = time.monotonic() + 20
    seen_failing = 0
    while connection.is_connected and time.monotonic() < deadline:
        failure = status.load().get("nats-authorization")
        seen_failing = max(seen_failing, failure.failures if failure else 0)
        await asyncio.sleep(0.05)
    assert not connection.is_connected, "the revoked agent kept its NATS connection"
    assert attempts(tmp_path)[-3:] == ["failed", "failed", "reloaded"]
    assert seen_failing == 2  # both failures showed where `ownllm projections status` reads them
    await asyncio.sleep(0.3)
    assert status.load()["nats-authorization"].failures == 0
    with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
        await nats.connect(nats_server.url, user=agent.nats_user, password=agent.nats_password,
                           allow_reconnect=False, connect_timeout=2)  # fmt: skip
    await connection.close()
    services.close()
