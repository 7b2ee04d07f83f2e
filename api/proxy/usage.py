"""Usage metering: one record of counts per request, handed to the sink by a background thread."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal
from uuid import UUID

log = logging.getLogger(__name__)

UsageSink = Callable[..., Any]
Outcome = Literal["ok", "error", "cancelled", "timeout", "rejected"]


class UsageWriter:
    """A buffer drained by one daemon thread, so recording never adds latency to a request.

    ``put`` only appends to a deque (atomic under the GIL: no lock, no thread wake-up per request);
    the thread wakes every ``interval_s`` and hands everything buffered to the sink. Waking a
    blocked thread for each record cost about a tenth of the proxy's CPU time under load.
    """

    def __init__(self, sink: UsageSink, interval_s: float = 0.02) -> None:
        self._sink = sink
        self._buffer: deque[dict[str, Any]] = deque()
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def start(self) -> None:
        """Start the draining thread."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="ownllm-usage", daemon=True)
            self._thread.start()

    def put(self, fields: dict[str, Any]) -> None:
        """Buffer one record (never blocks)."""
        self._buffer.append(fields)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered, then stop the thread."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(timeout_s)
            self._thread = None
        self._drain()  # anything put after the thread's last pass (or with no thread at all)

    def _run(self) -> None:
        """Drain every ``interval_s`` until stopped, then once more."""
        while not self._stopping.wait(self._interval_s):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        """Hand records to the sink one by one; a failing record is logged by class and dropped."""
        buffer = self._buffer
        while buffer:
            try:
                item = buffer.popleft()
            except IndexError:  # another drainer (stop() racing the thread) took the last one
                return
            try:
                self._sink(**item)
            except Exception as exc:
                self.failures += 1
                log.error("usage record %s not written: %s", item.get("request_id"), type(exc).__name__)


class Meter:
    """The usage of one authenticated request; :meth:`finish` emits its record exactly once."""

    __slots__ = (
        "_started",
        "_writer",
        "agent_id",
        "completion_tokens",
        "counts_corrected",
        "endpoint",
        "finished",
        "key_id",
        "model",
        "prompt_tokens",
        "request_id",
        "stream",
        "tenant_id",
        "ttft_ms",
        "user_id",
    )

    def __init__(
        self,
        writer: UsageWriter,
        request_id: str,
        endpoint: str,
        tenant_id: UUID,
        user_id: UUID,
        key_id: UUID,
    ) -> None:
        self._writer = writer
        self._started = time.perf_counter()
        self.request_id = request_id
        self.endpoint = endpoint
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.key_id = key_id
        self.agent_id: str | None = None
        self.model = ""
        self.stream = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft_ms: int | None = None
        self.counts_corrected = False  # the agent's token counts were not taken as given
        self.finished = False

    def first_token(self) -> None:
        """Note the time to the first generated text (once)."""
        if self.ttft_ms is None:
            self.ttft_ms = int((time.perf_counter() - self._started) * 1000)

    def finish(self, status: Outcome) -> None:
        """Emit the record; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        self._writer.put(
            {
                "tenant_id": self.tenant_id,
                "user_id": self.user_id,
                "key_id": self.key_id,
                "agent_id": self.agent_id,
                "model": self.model,
                "endpoint": self.endpoint,
                "stream": self.stream,
                "status": status,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "ttft_ms": self.ttft_ms,
                "duration_ms": int((time.perf_counter() - self._started) * 1000),
                "request_id": self.request_id,
                "counts_corrected": self.counts_corrected,
            }
        )
