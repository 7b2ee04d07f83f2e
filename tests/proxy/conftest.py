"""A real stack for proxy tests: embedded nats-server with generated auth, uvicorn, echo agents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from litestar import Litestar

from api.auth import CredentialsRejected
from api.embedded_nats import EmbeddedNats
from api.nats_auth import AgentAccount, hash_password
from api.principal import Principal
from api.proxy import InferenceGateway
from api.settings import Settings
from tests.support.server import ServerThread

REPO = Path(__file__).resolve().parents[2]
TENANT_A = UUID("00000000-0000-4000-8000-00000000000a")
TENANT_B = UUID("00000000-0000-4000-8000-00000000000b")


class KeyRing:
    """An in-memory authenticator: secret -> principal, or a rejection."""

    def __init__(self) -> None:
        self.keys: dict[str, Principal | CredentialsRejected] = {}

    def issue(self, tenant: UUID = TENANT_A, scopes: frozenset[str] = frozenset({"inference"}), plan: str = "team"):
        """A new key for a new user of ``tenant``; returns (secret, principal)."""
        secret = "sk-test-" + uuid4().hex
        principal = Principal(tenant, uuid4(), uuid4(), "member", scopes, plan)
        self.keys[secret] = principal
        return secret, principal

    def authenticate(self, secret: str) -> Principal:
        """The principal, or raise the stored rejection / a 401."""
        found = self.keys.get(secret)
        if found is None:
            raise CredentialsRejected(401, "invalid_api_key", "Incorrect API key provided.")
        if isinstance(found, CredentialsRejected):
            raise found
        return found


class UsageLog:
    """The usage sink: records every call, thread-safe."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, **fields: Any) -> None:
        with self.lock:
            self.records.append(fields)

    def for_request(self, request_id: str) -> list[dict[str, Any]]:
        """Records of one request."""
        with self.lock:
            return [r for r in self.records if r["request_id"] == request_id]

    def wait_for(self, predicate: Any, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Wait until some records match; return them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                found = [r for r in self.records if predicate(r)]
            if found:
                return found
            time.sleep(0.02)
        return []


@dataclass
class Agent:
    """One echo agent process."""

    agent_id: str
    tenant_id: str
    user: str
    password: str
    proc: subprocess.Popen[str] | None = None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final message."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Stack:
    """Everything a proxy test needs."""

    nats: EmbeddedNats
    gateway: InferenceGateway
    server: ServerThread
    keys: KeyRing
    usage: UsageLog
    agents: list[Agent] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def account(self, agent: Agent) -> AgentAccount:
        """The NATS account of an agent."""
        return AgentAccount(agent.agent_id, agent.tenant_id, agent.user, hash_password(agent.password, rounds=4))

    def add_agent(
        self,
        tenant: UUID = TENANT_A,
        models: tuple[str, ...] = ("echo",),
        token_delay_s: float = 0.0,
        capacity: int = 4,
        wait: bool = True,
        **config: Any,
    ) -> Agent:
        """Pair (NATS user + reload) and start an echo agent; wait until the proxy sees it."""
        agent_id = str(uuid4())
        agent = Agent(agent_id, str(tenant), f"agent-{agent_id}", uuid4().hex)
        self.agents.append(agent)
        self.nats.authorization.sync([self.account(a) for a in self.agents])
        options = {
            "agent_id": agent_id,
            "tenant_id": str(tenant),
            "nats_url": self.nats.url,
            "nats_user": agent.user,
            "nats_password": agent.password,
            "heartbeat_interval_s": 0.2,
            "models": list(models),
            "capacity": capacity,
            "token_delay_s": token_delay_s,
            **config,
        }
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        agent.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("echo_agent.py")), json.dumps(options)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert agent.proc.stdout is not None
        line = agent.proc.stdout.readline()
        assert line.strip() == "ready", f"agent did not start: {line!r}"
        if wait:
            self.wait_for_model(tenant, models[0])
        return agent

    def wait_for_model(self, tenant: UUID, model: str, present: bool = True, timeout_s: float = 5.0) -> None:
        """Poll ``/v1/models`` until the model is (or is no longer) listed for the tenant."""
        secret, _ = self.keys.issue(tenant)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            listed = httpx.get(self.base_url + "/v1/models", headers={"Authorization": f"Bearer {secret}"})
            ids = {m["id"] for m in listed.json()["data"]}
            if (model in ids) == present:
                return
            time.sleep(0.05)
        raise AssertionError(f"model {model} presence={present} not seen within {timeout_s}s")

    def stop_agents(self) -> None:
        """Kill every agent process."""
        for agent in self.agents:
            agent.kill()
            if agent.proc is not None and agent.proc.stdout is not None:
                agent.proc.stdout.close()


def build_stack(tmp: Path, keepalive_s: float = 5.0, **settings: Any) -> Stack:
    """Start nats, the gateway inside a Litestar app under uvicorn; no agents yet."""
    base = Settings(var_dir=str(tmp / "var"), **settings)
    nats = EmbeddedNats(base).start()
    keys, usage = KeyRing(), UsageLog()
    gateway = InferenceGateway(nats.settings_for_proxy(), keys, usage, keepalive_s=keepalive_s)
    app = Litestar(route_handlers=[gateway.router()], on_startup=[gateway.start], on_shutdown=[gateway.stop])
    server = ServerThread(app).start()
    return Stack(nats, gateway, server, keys, usage)


def teardown_stack(stack: Stack) -> None:
    """Stop everything (agents first, so nothing generates during shutdown)."""
    stack.stop_agents()
    stack.server.stop()
    stack.nats.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A shared stack with one echo agent for tenant A (fast agent, no token delay)."""
    built = build_stack(tmp_path_factory.mktemp("proxy"))
    try:
        built.add_agent()
        yield built
    finally:
        teardown_stack(built)


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own, for tests that kill or restart parts; add agents in the test."""
    built = build_stack(tmp_path, generation_timeout_s=1.5, accept_timeout_s=1.0, keepalive_s=0.3)
    try:
        yield built
    finally:
        teardown_stack(built)
