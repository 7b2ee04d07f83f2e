"""Zero retention through the ``openai`` backend: canary prompts, relayed and refused, are found in no store or log.

The whole platform (SQLite event store, embedded nats-server) fronts two relay agents paired with the
real CLI: one relays to a second OwnLLM's ``/v1`` (a real OpenAI-compatible server), one to the
scripted server whose error bodies quote the prompt back.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api.runtime import start_platform
from tests.agent.fake_upstream import FakeUpstream
from tests.proxy.conftest import build_stack, teardown_stack
from tests.proxy.upstream_support import start_relay, wait_until
from tests.support.server import ServerThread
from tests.support.stores import holds, store_bytes
from tests.support.terms import TERMS

AGENT_CLI = str(Path(sys.executable).parent / "ownllm-agent")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def persistence() -> str:
    """One store is enough here: the relay path is what is under test."""
    return "sqlite"


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Every log record of this process (both proxies, httpx, uvicorn) at DEBUG, into a file."""
    path = tmp_path / "python-debug.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def pair(base: str, admin_key: str, tmp: Path, name: str) -> Path:
    """Pair an agent with the real CLI."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    secret = httpx.post(base + "/api/v1/pairing-keys", headers=headers).json()["secret"]
    credentials = tmp / f"{name}.json"
    subprocess.run(
        [AGENT_CLI, "pair", "--url", base, "--pairing-key", secret, "--name", name, "--credentials", str(credentials)],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    return credentials


def test_canaries_relayed_and_refused_are_kept_nowhere(make_settings: Any, tmp_path: Path, debug_log: Path) -> None:
    settings = make_settings(inference=True, log_level="debug")
    platform = start_platform(settings)
    server = ServerThread(platform.app()).start()
    upstream = build_stack(tmp_path / "upstream")
    fake_app = FakeUpstream()
    fake = ServerThread(fake_app).start()
    relays: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "relay-real.log", tmp_path / "relay-fake.log"]
    try:
        upstream.add_agent(models=("echo",))
        upstream_key, _ = upstream.keys.issue()
        body = {
            "slug": "acme",
            "name": "Acme",
            "admin_name": "Ada",
            "admin_email": "ada@acme.example",
            "accept_terms": TERMS,
        }
        admin_key = httpx.post(server.base_url + "/api/v1/tenants", json=body).json()["api_key"]["secret"]
        for model in ("echo", "bad", "crash", "cut", "broken", "busy"):  # the admin accepts their licences
            ack = {"model": model, "acknowledge_unlisted": True}
            headers = {"Authorization": f"Bearer {admin_key}"}
            assert httpx.post(server.base_url + "/api/v1/licences", headers=headers, json=ack).status_code == 201
        real = pair(server.base_url, admin_key, tmp_path, "relay-real")
        scripted = pair(server.base_url, admin_key, tmp_path, "relay-fake")
        relays.append(start_relay(logs[0], real, upstream.base_url + "/v1", upstream_key))
        routes = "bad=bad-echo,crash=boom,cut=cut,broken=malformed,busy=busy"
        relays.append(start_relay(logs[1], scripted, fake.base_url + "/v1", None, "--models", routes))
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=admin_key, max_retries=0, timeout=10)
        wanted = {"echo", "bad", "crash", "cut", "broken", "busy"}
        wait_until(lambda: {m.id for m in client.models.list().data} >= wanted, 60, "relayed models")

        canary = f"CANARY{uuid.uuid4().hex[:12]}"
        answer = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": f"repeat {canary} {canary}"}], max_tokens=8
        )
        assert canary in (answer.choices[0].message.content or "")
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": canary}], stream=True
            )
            if c.choices
        )
        assert canary in streamed
        assert canary in client.completions.create(model="echo", prompt=f"{canary} again", max_tokens=4).choices[0].text
        for model, status in (("bad", 400), ("crash", 502), ("cut", 502), ("broken", 502), ("busy", 429)):
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": f"{canary} a b c d"}], max_tokens=8
                )
            assert refused.value.status_code == status
            assert canary not in refused.value.response.text  # the upstream's echoing message is not passed on
            if model == "busy":  # the upstream's 429 is the client's, with the upstream's Retry-After
                assert refused.value.response.headers["retry-after"] == "3"
        assert any(canary in r["messages"][-1]["content"] for r in fake_app.requests)  # it did echo it back
    finally:
        for proc in relays:
            proc.terminate()
            proc.wait(10)
        fake.stop()
        teardown_stack(upstream)
        server.stop()
        platform.stop()

    places: dict[str, bytes] = {"event store": store_bytes(settings)}
    for path in [*Path(settings.var_dir).rglob("*"), *(tmp_path / "upstream").rglob("*"), *logs, debug_log]:
        if path.is_file():
            places[str(path)] = path.read_bytes()
    places["usage records of the upstream"] = repr(upstream.usage.records).encode()
    assert any(holds(raw, "acme") for raw in places.values())  # the search does find clear text
    assert b"upstream" in b"".join(places[str(p)] for p in logs)  # the relays did log (at DEBUG)
    leaks = [where for where, raw in places.items() if holds(raw, canary)]
    assert leaks == [], f"prompt content found in {leaks}"
