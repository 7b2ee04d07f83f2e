"""Ctrl-C on `ownllm serve --demo` (what `make run` runs) stops everything it started, in order and
at once; killing it hard leaves nothing behind for long; its banner's "try it" command pastes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from api.runtime import shell_lines, try_it_lines

OWNLLM = str(Path(sys.executable).parent / "ownllm")
REPO = Path(__file__).resolve().parents[2]
SHUTDOWN_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    log: Path
    agent_log: Path
    ports: tuple[int, int]  # the API's and the embedded nats-server's
    processes: list[psutil.Process]  # the server, its nats-server and its agent

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """`ownllm serve --demo` (echo backend) in a process group of its own, as a terminal starts a job."""
    port = free_port()
    var = tmp_path / "var"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OWNLLM_VAR_DIR": str(var), "OWNLLM_PORT": str(port),
           "OWNLLM_DEMO_BACKEND": "echo", "COLUMNS": "80"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([OWNLLM, "serve", "--demo"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    processes: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while "France?" not in log.read_text(errors="replace"):  # the banner's last line is out
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        output = log.read_text(errors="replace")
        nats = re.search(r"NATS\s+nats://127\.0\.0\.1:(\d+)", output)
        assert nats, output
        processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        names = [" ".join(p.cmdline()) for p in processes]
        assert any("nats-server" in n for n in names) and any("ownllm-agent serve" in n for n in names), names
        yield Demo(proc, log, var / "demo-agent" / "agent.log", (port, int(nats.group(1))), processes)
    finally:
        for process in processes:
            if process.is_running():
                process.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_ctrl_c_stops_everything_within_five_seconds(demo: Demo) -> None:
    assert all(listening(port) for port in demo.ports)
    started = time.monotonic()
    os.killpg(demo.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground process group
    _, alive = psutil.wait_procs(demo.processes, timeout=SHUTDOWN_S)
    took = time.monotonic() - started
    assert alive == [], f"still running {took:.1f} s after Ctrl-C: {[p.cmdline() for p in alive]}\n{demo.output()}"
    assert not any(listening(port) for port in demo.ports)
    output = demo.output()
    assert "nats error" not in output, output  # the proxy closed its NATS client before the server went
    assert "nats error" not in demo.agent_log.read_text(errors="replace")
    assert "Application shutdown complete" in output
    print(f"stopped everything {took:.2f} s after Ctrl-C")


def test_children_do_not_outlive_a_killed_server(demo: Demo) -> None:
    server, *children = demo.processes
    server.kill()  # no shutdown hook runs
    _, alive = psutil.wait_procs(children, timeout=SHUTDOWN_S)
    assert alive == [], [p.cmdline() for p in alive]
    assert not any(listening(port) for port in demo.ports)


def test_the_banner_command_fits_80_columns_and_runs_when_pasted(demo: Demo, tmp_path: Path) -> None:
    lines = demo.output().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("try it"))
    command = lines[start + 1 : next(i for i in range(start + 1, len(lines)) if not lines[i].endswith("\\")) + 1]
    banner = lines[next(i for i, line in enumerate(lines) if "OwnLLM is running" in line) : start + len(command) + 1]
    assert all(len(line) <= 80 for line in banner), banner
    assert sys.executable in "".join(command) or str(Path(sys.executable).parent) in "".join(command)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYTHONPATH"))}
    pasted = subprocess.run(["bash", "-c", "\n".join(command)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    assert pasted.stdout.strip()


def test_shell_lines_stay_within_the_width_and_keep_the_words() -> None:
    key = "ollm_" + "k" * 43
    for base in ("http://127.0.0.1:8000", "https://ownllm.example.internal:8443"):
        lines = try_it_lines(base, key)
        assert all(len(line) <= 80 for line in lines), lines
        assert all(line.endswith(" \\") for line in lines[:-1]) and not lines[-1].endswith("\\")
    words = ["a" * 30, "b" * 30, "c" * 30, "'d e'"]
    lines = shell_lines(words, 40)
    assert lines == [f"  {'a' * 30} \\", f"  {'b' * 30} \\", f"  {'c' * 30} 'd e'"]
    assert " ".join(line.removesuffix(" \\").strip() for line in lines) == " ".join(words)


def test_the_tracked_read_models_run_in_a_process_of_their_own(demo: Demo) -> None:
    names = [" ".join(p.cmdline()) for p in demo.processes]
    assert any("projections run" in n for n in names), names  # OWNLLM_PROJECTOR=process, the default
    key = re.search(r"demo admin key\s+(ollm_\S+)", demo.output())
    assert key, demo.output()
    base, headers = f"http://127.0.0.1:{demo.ports[0]}", {"Authorization": f"Bearer {key.group(1)}"}
    model = httpx.get(f"{base}/v1/models", headers=headers, timeout=5).json()["data"][0]["id"]
    answer = httpx.post(f"{base}/v1/chat/completions", headers=headers, timeout=30,
                        json={"model": model, "messages": [{"role": "user", "content": "hello there"}]})  # fmt: skip
    assert answer.status_code == 200, answer.text
    deadline, usage = time.monotonic() + 10, []
    while not usage and time.monotonic() < deadline:  # projected by the child, read by the server
        usage = httpx.get(f"{base}/api/v1/usage", headers=headers, timeout=5).json()
        time.sleep(0.1)
    assert usage and usage[0]["requests"] >= 1
    trail = httpx.get(f"{base}/api/v1/audit?action=usage.*", headers=headers, timeout=5).json()
    assert trail and trail[0]["action"] == "usage.hourly"
