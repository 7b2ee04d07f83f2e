"""The whole platform as a user meets it: signup over HTTP, a real agent paired with the CLI, the
official OpenAI SDK through the proxy, usage on the dashboard API, revocation cutting the agent off,
and a canary prompt that no store, log or stream keeps."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api.runtime import Platform, start_platform
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from tests.support.server import ServerThread
from tests.support.stores import holds, store_bytes
from tests.support.terms import TERMS

AGENT_CLI = str(Path(sys.executable).parent / "ownllm-agent")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    platform: Platform
    server: ServerThread
    admin_key: str
    tmp: Path
    agents: list[subprocess.Popen[bytes]]

    @property
    def base(self) -> str:
        return self.server.base_url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def pair_agent(self, name: str) -> tuple[str, Path]:
        """Issue a pairing key over the API and redeem it with the real `ownllm-agent pair` CLI."""
        secret = self.api("POST", "/api/v1/pairing-keys").json()["secret"]
        credentials = self.tmp / f"{name}.json"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run(
            [AGENT_CLI, "pair", "--url", self.base, "--pairing-key", secret, "--name", name,
             "--credentials", str(credentials)],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        assert credentials.stat().st_mode & 0o777 == 0o600
        agent_id = next(a["id"] for a in self.api("GET", "/api/v1/agents").json() if a["name"] == name)
        return agent_id, credentials

    def start_agent(self, credentials: Path, log: Path, backend: str = "echo") -> subprocess.Popen[bytes]:
        """`ownllm-agent serve` in its own process (killable like a real GPU box); echo serves `echo`."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OWNLLM_AGENT_LOG_LEVEL": "DEBUG"}
        models = ["--no-builtin"] if backend == "echo" else []
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [AGENT_CLI, "serve", "--backend", backend, *models, "--credentials", str(credentials),
                 "--heartbeat-interval", "0.3"],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        self.agents.append(proc)
        return proc

    def sdk(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key or self.admin_key, max_retries=0, timeout=10)

    def wait_for_models(self, present: bool, timeout_s: float = 10, model: str = "echo") -> float:
        """Seconds until /v1/models lists (or stops listing) the model."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            ids = {m.id for m in self.sdk().models.list().data}
            if (model in ids) == present:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{model} presence={present} not reached in {timeout_s}s")


@pytest.fixture
def stack(make_settings: Any, tmp_path: Path) -> Iterator[Stack]:
    settings: Settings = make_settings(inference=True, log_level="debug")
    platform = start_platform(settings)
    server = ServerThread(platform.app()).start()
    try:
        body = {
            "slug": "acme",
            "name": "Acme",
            "admin_name": "Ada",
            "admin_email": "ada@acme.example",
            "accept_terms": TERMS,
        }
        admin_key = httpx.post(server.base_url + "/api/v1/tenants", json=body).json()["api_key"]["secret"]
        built = Stack(platform, server, admin_key, tmp_path, [])
        # The admin accepts the licences of the models its agents serve (terms §9) before anyone calls them.
        assert built.api("POST", "/api/v1/licences", json={"key": "smollm2"}).status_code == 201
        unlisted = {"model": "echo", "acknowledge_unlisted": True}
        assert built.api("POST", "/api/v1/licences", json=unlisted).status_code == 201
        yield built
    finally:
        for proc in built.agents:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        server.stop()
        platform.stop()


def test_a_user_calls_a_paired_agent_and_nothing_keeps_the_prompt(stack: Stack, tmp_path: Path) -> None:
    debug_log = tmp_path / "python-debug.log"
    handler = logging.FileHandler(debug_log)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        _, credentials = stack.pair_agent("gpu-1")
        agent_log = tmp_path / "agent.log"
        stack.start_agent(credentials, agent_log)
        stack.wait_for_models(present=True)
        (listed,) = stack.api("GET", "/v1/models").json()["data"]
        assert listed["licence"] == {
            "key": "unlisted:echo", "name": "", "url": "", "accepted": True, "catalogued": False,
            "announced": ["Apache-2.0"], "announced_agrees": True,
        }  # fmt: skip

        canary = f"CANARY{uuid.uuid4().hex[:12]}"
        client = stack.sdk()
        answer = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": f"please repeat {canary} {canary}"}], max_tokens=16
        )
        assert canary in (answer.choices[0].message.content or "")
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": canary}], stream=True
            )
            if chunk.choices
        )
        assert canary in streamed
        completion = client.completions.create(model="echo", prompt=f"{canary} again", max_tokens=4)
        assert canary in completion.choices[0].text

        # Exactly one usage record per request, counts only, on the dashboard API.
        usage = _wait(lambda: _usage_requests(stack) == 3, timeout_s=5)
        assert usage, stack.api("GET", "/api/v1/usage").text
        rows = stack.api("GET", "/api/v1/usage").json()
        assert rows[0]["model"] == "echo" and rows[0]["by_status"] == {"ok": 3}
        assert rows[0]["completion_tokens"] > 0
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()

    settings = stack.platform.settings
    places: dict[str, bytes] = {"event store": store_bytes(settings)}
    var = Path(settings.var_dir)
    for path in [*var.rglob("*"), agent_log, debug_log]:
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert any(holds(raw, "acme") for raw in places.values())  # the search does find clear text
    leaks = [where for where, raw in places.items() if holds(raw, canary)]
    assert leaks == [], f"prompt content found in {leaks}"
    assert not any("jetstream" in str(p).lower() for p in var.rglob("*")), "nothing may persist NATS messages"
    config = (var / "nats" / "nats-server.conf").read_text().lower()
    assert not re.search(r"^\s*jetstream\b", config, re.MULTILINE)
    assert not re.search(r"^\s*trace:\s*true", config, re.MULTILINE)


def test_revoking_an_agent_cuts_it_off_within_ten_seconds(stack: Stack, tmp_path: Path) -> None:
    agent_id, credentials = stack.pair_agent("gpu-2")
    stack.start_agent(credentials, tmp_path / "agent.log")
    stack.wait_for_models(present=True)
    assert stack.api("DELETE", f"/api/v1/agents/{agent_id}").status_code == 204
    revoked_at = time.monotonic()
    stack.wait_for_models(present=False, timeout_s=10)
    with pytest.raises(openai.APIStatusError) as refused:
        stack.sdk().chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code in (404, 503)
    assert time.monotonic() - revoked_at < 10
    log = (Path(stack.platform.settings.var_dir) / "nats" / "nats-server.log").read_text()
    assert "authorization" in log.lower()  # nats-server refused the revoked agent's login


def test_suspensions_and_revocations_flip_the_proxy_at_once(stack: Stack) -> None:
    services = stack.platform.services
    member = stack.api("POST", "/api/v1/keys", json={"name": "sdk", "scopes": ["inference"]}).json()
    client = stack.sdk(member["secret"])
    assert client.models.list().data == []  # authenticated; no agent yet
    stack.api("DELETE", f"/api/v1/keys/{member['id']}")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    tenant_id = next(iter(services.directory.tenants))
    services.command(services.app.suspend_tenant, Ctx(SYSTEM, tenant_id, "test"), "unpaid")
    with pytest.raises(openai.PermissionDeniedError):
        stack.sdk().models.list()
    services.command(services.app.reinstate_tenant, Ctx(SYSTEM, tenant_id, "test"), "paid")
    assert stack.sdk().models.list().data == []


def _usage_requests(stack: Stack) -> int:
    return sum(row["requests"] for row in stack.api("GET", "/api/v1/usage").json())


def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_the_real_cpu_model_answers_through_the_whole_path(stack: Stack, tmp_path: Path) -> None:
    """SmolLM2-135M (the wheel's GGUF) on the transformers backend, asked with the official SDK."""
    _, credentials = stack.pair_agent("cpu-1")
    stack.start_agent(credentials, tmp_path / "agent.log", backend="transformers")
    model = "smollm2-135m-instruct"
    stack.wait_for_models(present=True, timeout_s=120, model=model)
    licence = stack.api("GET", f"/v1/models/{model}").json()["licence"]
    assert licence["name"] == "Apache License 2.0" and licence["accepted"] is True
    assert licence["announced_agrees"] is True  # the agent's "apache-2.0" is what the catalogue lists
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = stack.sdk().chat.completions.create(model=model, messages=question, temperature=0, max_tokens=24)
    assert "Paris" in (answer.choices[0].message.content or "")
    assert answer.usage is not None and answer.usage.prompt_tokens > 5
    stream = stack.sdk().chat.completions.create(
        model=model, messages=question, temperature=0, max_tokens=24, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content  # greedy: the same words, streamed
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
