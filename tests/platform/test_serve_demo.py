"""`ownllm serve --demo` (what `make run` runs): the printed key works with the SDK at once, and
stopping the server stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil

OWNLLM = str(Path(sys.executable).parent / "ownllm")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_demo_prints_a_working_key_and_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OWNLLM_VAR_DIR": str(tmp_path / "var"),
           "OWNLLM_PORT": str(port), "OWNLLM_DEMO_BACKEND": "echo"}  # fmt: skip
    server = subprocess.Popen([OWNLLM, "serve", "--demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = ""
    children: list[psutil.Process] = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 90
        while "demo admin key" not in output and time.monotonic() < deadline:
            line = server.stdout.readline().decode(errors="replace")
            if not line and server.poll() is not None:
                break
            output += line
        key = re.search(r"demo admin key\s+(ollm_\S+)", output)
        assert key, output
        for url in (f"http://127.0.0.1:{port}/api/v1", f"http://127.0.0.1:{port}/schema"):
            assert url in output
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1), max_retries=0)
        model = client.models.list().data[0].id  # listed before the banner: works at once
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
        assert answer.choices[0].message.content
        children = psutil.Process(server.pid).children(recursive=True)
        assert {c.name() for c in children} >= {"nats-server"}
        assert any("ownllm-agent" in " ".join(c.cmdline()) for c in children)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running after shutdown: {[p.cmdline() for p in alive]}"
