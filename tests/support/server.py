"""Run an ASGI app with uvicorn in a background thread on a free loopback port, for tests and benches.

Usage::

    with serve(app) as base_url:
        httpx.get(base_url + "/v1/models")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


class ServerThread:
    """uvicorn serving ``app`` from its own thread and event loop (lifespan on)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", start_timeout_s: float = 20.0, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))  # bound before uvicorn starts: no race for the port
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        options = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 5, **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, **options))
        self.start_timeout_s = start_timeout_s
        self.thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)
        self.error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    def start(self) -> ServerThread:
        """Start and wait until uvicorn serves (lifespan startup done)."""
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit (runs lifespan shutdown) and join the thread."""
        self.server.should_exit = True
        self.thread.join(15)
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` for the duration of the block and yield its base URL."""
    server = ServerThread(app, **config).start()
    try:
        yield server.base_url
    finally:
        server.stop()
