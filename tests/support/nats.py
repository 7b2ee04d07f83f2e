"""A real ``nats-server`` for tests: free loopback port, optional config text, stop/kill/restart.

Usage::

    with NatsServer(config="authorization { users = [...] }") as server:
        nc = await nats.connect(server.client_url("user", "pw"))

Core NATS only: JetStream is never enabled and no store directory is set.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from api.embedded_nats import nats_server_binary, wait_until_listening


def free_port() -> int:
    """A TCP port free right now on every address of both stacks (some servers bind ``::``, not loopback)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::", 0))
            return int(s.getsockname()[1])
    except OSError:  # no IPv6 here
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


class NatsServer:
    """One nats-server process on 127.0.0.1, restartable on the same port."""

    def __init__(self, config: str | None = None, port: int | None = None, start_timeout_s: float = 10.0):
        self.port = port or free_port()
        self.config = config
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="nats-test-"))
        self._log = self._dir / "nats.log"

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT`` without credentials."""
        return f"nats://127.0.0.1:{self.port}"

    def client_url(self, user: str, password: str) -> str:
        """The server URL with user and password embedded (URL-quoted)."""
        return f"nats://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start the server and wait until it accepts TCP connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        cmd = [str(nats_server_binary()), "-a", "127.0.0.1", "-p", str(self.port), "-l", str(self._log)]
        if self.config is not None:
            conf = self._dir / "nats.conf"
            conf.write_text(self.config)
            cmd += ["-c", str(conf)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        wait_until_listening(self.proc, self.port, self.start_timeout_s, self.log_text)

    def log_text(self) -> str:
        """The server log (and stderr when it died), for failure messages."""
        text = self._log.read_text() if self._log.exists() else ""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr is not None:
            text += self.proc.stderr.read().decode(errors="replace")
        return text

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()

    def kill(self) -> None:
        """Kill at once (SIGKILL): clients see the connection drop."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._close_pipes()

    def restart(self) -> NatsServer:
        """Stop and start again on the same port with the same config."""
        self.stop()
        self.proc = None
        return self.start()

    def _close_pipes(self) -> None:
        """Close the stderr pipe of the exited process."""
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def nats_server(config: str | None = None) -> Iterator[NatsServer]:
    """A started :class:`NatsServer` for the duration of the block."""
    with NatsServer(config=config) as server:
        yield server


def users_config(users: list[dict[str, object]]) -> str:
    """nats-server ``authorization { users = [...] }`` config text (JSON is valid NATS conf)."""
    return "authorization {\n  users = " + json.dumps(users, indent=2) + "\n}\n"


@pytest.fixture
def nats_server_factory() -> Iterator[Callable[..., NatsServer]]:
    """A pytest fixture: ``make(config=None)`` starts a server; all are stopped at teardown.

    Reuse it from a conftest with ``from tests.support.nats import nats_server_factory``.
    """
    servers: list[NatsServer] = []

    def make(config: str | None = None) -> NatsServer:
        server = NatsServer(config=config).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)
