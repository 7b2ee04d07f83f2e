"""Two API processes on one PostgreSQL, 64 concurrent requests on a nearly empty balance: each
process admits no more than the balance, and the ledger is overdrawn by no more than the bound of
``api/proxy/balance.py`` ((N - 1) x the balance for a burst; here N = 2)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from api.embedded_nats import EmbeddedNats
from api.nats_auth import AgentAccount, hash_password
from api.services import build_services
from api.settings import Settings, load_settings
from policies.prices import ModelPrice, cost_micro
from tests.support.clock import ManualClock
from tests.support.postgres import create_schema

REPO = Path(__file__).resolve().parents[2]
PROMPT = " ".join(f"w{i}" for i in range(16))  # the echo agent answers 16 tokens
MAX_TOKENS = 16
OUTPUT_PRICE = 6_250_000_000  # micro-cents per million tokens: 16 tokens = 100,000 micro-cents (0.1 cent)
BALANCE_CENTS = 1  # ten requests' worth
SECRET = "sk-credit-gate"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def tenant_on_postgres(postgres_dsn: str, tmp_path: Path) -> Iterator[tuple[dict[str, object], UUID]]:
    """A tenant in credits mode with one 1-cent lot, and the echo model priced from 10 days ago."""
    base: dict[str, object] = {"persistence": "postgres", "postgres_dsn": postgres_dsn,
                               "postgres_schema": create_schema(postgres_dsn)}  # fmt: skip
    real_now = datetime.now(UTC)
    clock = ManualClock(real_now - timedelta(days=40))
    services = build_services(load_settings({}, **base, var_dir=str(tmp_path / "setup"), inference=False,
                                            nats_public_url="tls://nats.test:4222"), clock=clock)  # fmt: skip
    try:
        app = services.app
        tenant = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                            request_id="r1").tenant_id  # fmt: skip
        app.schedule_price_change("echo", 0, OUTPUT_PRICE, real_now - timedelta(days=10))
        app.set_billing_mode(tenant, "credits")
        app.purchase_credits(tenant, BALANCE_CENTS, "pi_small", real_now - timedelta(days=1))
    finally:
        services.close()
    yield base, tenant


def test_two_processes_never_overdraw_beyond_the_bound(tenant_on_postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, tenant = tenant_on_postgres
    nats = EmbeddedNats(Settings(var_dir=str(tmp_path / "nats"))).start()
    procs: list[subprocess.Popen[str]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proxy = nats.settings_for_proxy()
        agent_id, password = str(uuid4()), uuid4().hex
        nats.authorization.sync(
            [AgentAccount(agent_id, str(tenant), f"agent-{agent_id}", hash_password(password, rounds=4))]
        )
        agent_options = {"agent_id": agent_id, "tenant_id": str(tenant), "nats_url": nats.url,
                         "nats_user": f"agent-{agent_id}", "nats_password": password, "heartbeat_interval_s": 0.2,
                         "models": ["echo"], "capacity": 64, "token_delay_s": 0.01}  # fmt: skip
        agent = subprocess.Popen([sys.executable, str(REPO / "tests/proxy/echo_agent.py"), json.dumps(agent_options)],
                                 stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        procs.append(agent)
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        ports = [free_port(), free_port()]
        for n, port in enumerate(ports):
            settings = {**base, "var_dir": str(tmp_path / f"api{n}"), "nats_url": proxy.nats_url,
                        "nats_proxy_password": proxy.nats_proxy_password, "inference": False,
                        "nats_public_url": "tls://nats.test:4222"}  # fmt: skip
            config = {"settings": settings, "port": port, "tenant": str(tenant), "secret": SECRET}
            api = subprocess.Popen([sys.executable, str(REPO / "tests/credits/gate_api.py"), json.dumps(config)],
                                   stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
            procs.append(api)
            assert api.stdout is not None and api.stdout.readline().strip() == "ready"
        headers = {"Authorization": f"Bearer {SECRET}"}
        for port in ports:
            wait_until(lambda port=port: _serves_echo(port, headers), 30, "the echo model never showed")

        statuses = asyncio.run(_burst(ports, headers, 64))

        admitted = {port: sum(1 for p, status, _ in statuses if p == port and status == 200) for port in ports}
        refused = [code for _, status, code in statuses if status != 200]
        assert set(refused) == {"insufficient_quota"}, statuses
        reserve = cost_micro(ModelPrice(0, OUTPUT_PRICE), 0, MAX_TOKENS)
        balance = BALANCE_CENTS * 1_000_000
        assert all(count <= balance // reserve for count in admitted.values()), admitted  # each process: B at most
        assert sum(admitted.values()) >= balance // reserve  # and the balance was used, not refused wholesale

        ledger = _settled_ledger(base, tmp_path, tenant, sum(admitted.values()))
        totals = ledger.totals
        assert totals["shortfall"] <= (len(ports) - 1) * balance, totals  # the documented bound, N = 2
        assert totals["purchased"] == totals["debited"] + ledger.balance_micro(datetime.now(UTC))
        assert totals["debited"] + totals["shortfall"] == sum(admitted.values()) * reserve
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
        nats.stop()


def _serves_echo(port: int, headers: dict[str, str]) -> bool:
    try:
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers, timeout=2)
    except httpx.HTTPError:
        return False
    return listed.status_code == 200 and any(m["id"] == "echo" for m in listed.json()["data"])


async def _burst(ports: list[int], headers: dict[str, str], count: int) -> list[tuple[int, int, str]]:
    """``count`` chat requests at once, alternating between the processes: (port, status, error code)."""
    body = {"model": "echo", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as client:

        async def one(port: int) -> tuple[int, int, str]:
            answer = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers)
            code = "" if answer.status_code == 200 else str(answer.json()["error"]["code"])
            return port, answer.status_code, code

        return list(await asyncio.gather(*(one(ports[n % len(ports)]) for n in range(count))))


def _settled_ledger(base: dict[str, object], tmp_path: Path, tenant: UUID, admitted: int):  # type: ignore[no-untyped-def]
    """The tenant's ledger once every admitted request is debited (read from PostgreSQL)."""
    services = build_services(load_settings({}, **base, var_dir=str(tmp_path / "check"), inference=False,
                                            nats_public_url="tls://nats.test:4222"), start_runner=False)  # fmt: skip
    try:

        def debited() -> int:
            ledger = services.app.credit_ledger(tenant)
            assert ledger is not None
            return len(ledger.recent_debits)

        wait_until(lambda: debited() >= admitted, 60, "the admitted requests were not all debited")
        return services.app.credit_ledger(tenant)
    finally:
        services.close()
