"""Usage metering: one record of counts per authenticated request, handed to the usage writer.

How the records are written, and kept when the store is down: :mod:`api.proxy.usage_writer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal
from uuid import UUID

from api.proxy.usage_writer import BatchSink, UsageWriter

__all__ = ["BatchSink", "Meter", "Outcome", "UsageSink", "UsageWriter", "is_tally", "one_by_one"]

UsageSink = Callable[..., Any]
Outcome = Literal["ok", "error", "cancelled", "timeout", "rejected"]


def is_tally(record: dict[str, Any]) -> bool:
    """A rejection tally (see :mod:`api.proxy.rejections`), not one request's usage."""
    return "tally_id" in record


def one_by_one(sink: UsageSink) -> BatchSink:
    """A batch sink over a one-record sink (tests, benchmarks); tallies are not passed on."""

    def write(records: list[dict[str, Any]]) -> None:
        for record in records:
            if not is_tally(record):
                sink(**record)

    return write


class Meter:
    """The usage of one authenticated request; :meth:`finish` emits its record exactly once."""

    __slots__ = (
        "_started",
        "_writer",
        "agent_id",
        "completion_tokens",
        "counts_corrected",
        "counts_estimated",
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
        self.counts_estimated = False  # the agent estimated them (its engine reported none)
        self.finished = False

    def first_token(self) -> None:
        """Note the time to the first generated text (once)."""
        if self.ttft_ms is None:
            self.ttft_ms = int((time.perf_counter() - self._started) * 1000)

    def refuse(self, status: int, reason: str | None) -> None:
        """The request was refused (401/403/429): counted for the interval's tally, not recorded alone."""
        if not self.finished:
            self.finished = True
            self._writer.refused(status, reason or "refused", self.tenant_id, self.user_id, self.key_id)

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
                "counts_estimated": self.counts_estimated,
            }
        )
