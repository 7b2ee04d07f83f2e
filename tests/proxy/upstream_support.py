"""Start the real ``ownllm-agent serve --backend openai`` relaying to an upstream URL, for the relay tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

from agent import credentials as creds
from tests.proxy.conftest import TENANT_A, Agent, Stack

AGENT_CLI = str(Path(sys.executable).parent / "ownllm-agent")
REPO = Path(__file__).resolve().parents[2]


def start_relay(
    log: Path,
    credentials: Path,
    upstream_url: str,
    key: str | None = None,
    *options: str,
) -> subprocess.Popen[bytes]:
    """The agent CLI relaying to ``upstream_url``; the key travels in the environment, never in argv."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OWNLLM_AGENT_LOG_LEVEL": "DEBUG",
        "OWNLLM_AGENT_UPSTREAM_POLL_INTERVAL_S": "0.2",
    }
    if key is not None:
        env["OWNLLM_AGENT_UPSTREAM_KEY"] = key
    with log.open("ab") as out:
        return subprocess.Popen(
            [AGENT_CLI, "serve", "--backend", "openai", "--upstream-url", upstream_url,
             "--credentials", str(credentials), "--heartbeat-interval", "0.3", *options],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def pair_relay(stack: Stack, tmp: Path, name: str) -> tuple[Agent, Path]:
    """A NATS account on the test stack for a relay agent, and its credentials file (mode 0600)."""
    agent_id = str(uuid4())
    agent = Agent(agent_id, str(TENANT_A), f"agent-{agent_id}", uuid4().hex)
    stack.agents.append(agent)
    stack.nats.authorization.sync([stack.account(a) for a in stack.agents])
    stored = creds.Credentials(agent_id, str(TENANT_A), stack.nats.url, agent.user, agent.password)
    return agent, creds.save(stored, tmp / f"{name}.json")


def wait_until(check, timeout_s: float = 10.0, what: str = "condition") -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``check()`` holds."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what} not reached within {timeout_s}s")
        time.sleep(0.02)
    return time.monotonic() - start
