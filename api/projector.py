"""The projector: the tracked read models (usage view, audit log, integrity ledger) in a process of
their own, so that projecting every request's usage event costs the request-serving process nothing.

``ownllm serve`` starts it as a child (``OWNLLM_PROJECTOR=process``, the default) and runs its own
services with ``run_projections`` off; the API still reads those models from the database (an audit
query waits for the log to include what was written before it). Measured with ``bench/proxy.py
--quick``: the tracked models cost the serving process 0.2-0.5 ms of CPU per request in threads.
``OWNLLM_PROJECTOR=in-process`` keeps them as threads of the API process (one process to run).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec

from api.settings import PREFIX, Settings

STOP_TIMEOUT_S = 3.0
PARENT_CHECK_S = 1.0


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings that differ from the defaults as ``OWNLLM_*`` variables (for the child's
    environment: never on its command line, where ``ps`` would show a password)."""
    defaults, env = Settings(), {}
    for name in Settings.__struct_fields__:
        value: Any = getattr(settings, name)
        if value != getattr(defaults, name):
            env[PREFIX + name.upper()] = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return env


class Projector:
    """The child process running ``ownllm projections run`` for this server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child in its own session (the terminal's Ctrl-C reaches the parent, which stops it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX) or k.startswith("OWNLLM_AGENT_")}
        env |= settings_env(msgspec.structs.replace(self.settings, run_projections=True, inference=False))
        log_path = Path(self.settings.var_dir) / "projector.log"
        with open(log_path, "ab") as log:
            os.chmod(log_path, 0o600)
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "ownllm"), "projections", "run", "--parent-pid", str(os.getpid())],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT_S)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_until_stopped(parent_pid: int | None) -> None:
    """Run the tracked read models (``build_services`` with them on) until SIGTERM/SIGINT or the parent dies."""
    from api.services import build_services
    from api.settings import load_settings

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    services = build_services(load_settings(run_projections=True, inference=False))
    try:
        while not stop.wait(PARENT_CHECK_S):
            if parent_pid is not None and os.getppid() != parent_pid:  # orphaned: re-parented at the parent's exit
                return
        services.runner.stop()
        services.runner.catch_up()  # what the server wrote while stopping (its last usage batch)
    finally:
        services.close()
