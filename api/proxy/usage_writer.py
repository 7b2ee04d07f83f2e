"""The usage writer: records buffered in memory, written in batches by a background thread.

Durability (issue 13): a record is never dropped. The writer hands the store batches (one
transaction each); when the store fails, the batch is kept and retried with backoff; when the
buffer is past its bound, or the process stops with the store down, records go to a local spool
file (``api/proxy/usage_spool.py``) that is replayed once the store takes records again (at the
latest at the next start). Replays and retries may send a record twice: the store records each
request id once. What is lost: records in memory when the process is killed (SIGKILL, a crash).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from api.proxy.rejections import RejectionCounter, TallySchedule
from api.proxy.usage_spool import Spool

log = logging.getLogger(__name__)

BatchSink = Callable[[list[dict[str, Any]]], Any]


class Backoff:
    """Exponential retry delays, from ``first_s`` doubling up to ``max_s``."""

    def __init__(self, first_s: float = 0.1, max_s: float = 5.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.delay_s = 0.0

    def failed(self) -> float:
        """The delay before the next try."""
        self.delay_s = min(self.max_s, self.delay_s * 2 or self.first_s)
        return self.delay_s

    def succeeded(self) -> None:
        self.delay_s = 0.0


class UsageWriter:
    """A bounded buffer drained in batches by one daemon thread; a record is never dropped.

    ``put`` only appends to a deque (atomic under the GIL: no lock, no thread wake-up per request);
    the thread wakes every ``interval_s`` and hands the sink up to ``batch_size`` records per call
    (one transaction). Waking a blocked thread for each record cost about a tenth of the proxy's
    CPU time under load, and one transaction per record most of the rest.
    """

    def __init__(
        self,
        sink: BatchSink,
        *,
        spool: Spool | None = None,
        bound: int = 20_000,
        batch_size: int = 500,
        interval_s: float = 0.02,
        tally_interval_s: float = 60.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sink = sink
        self.spool = spool
        self.bound = bound  # past it, put() spills to the spool (without a spool, memory holds all)
        self.batch_size = batch_size
        self._buffer: deque[dict[str, Any]] = deque()
        self._pending: list[dict[str, Any]] = []  # the batch the sink refused last, retried first
        self._interval_s = interval_s
        self._backoff = backoff or Backoff()
        self._retry_at = 0.0
        self._clock = clock
        self.rejections = RejectionCounter()
        self._tallies = TallySchedule(self.rejections, tally_interval_s, clock, wall_clock)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0  # sink calls that raised
        self.spilled = 0  # records written to the spool
        self.written = 0  # records the sink took (replays included)

    # -- the serving side ---------------------------------------------------------------------

    def put(self, fields: dict[str, Any]) -> None:
        """Buffer one record (never blocks on the store; past the bound, one append to the spool)."""
        if len(self._buffer) < self.bound or self.spool is None:
            self._buffer.append(fields)
        else:
            self.spilled += self.spool.append([fields])

    def refused(self, status: int, reason: str, tenant_id: UUID | None = None, user_id: UUID | None = None,
                key_id: UUID | None = None) -> None:  # fmt: skip
        """Count a refused request (tallied per interval, never one event each)."""
        self.rejections.count(status, reason, tenant_id, user_id, key_id)

    def backlog(self) -> int:
        """Records held in memory, not yet taken by the store."""
        return len(self._buffer) + len(self._pending)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the draining thread (it replays the spool first)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="ownllm-usage", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered (or spool it when the store is down), then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join(timeout_s)
            if thread.is_alive():  # stuck in the store: keep its batch too (a double is deduped)
                self._spill_held()
                return
        self._tally(force=True)
        self._final()

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        """A pass at once (it replays what an earlier run spooled), then every ``interval_s`` until stopped."""
        while True:
            try:
                self.step()
            except Exception:  # never let the thread die: the next pass tries again
                log.exception("usage writer pass failed")
            if self._stopping.wait(self._interval_s):
                break
        self._tally(force=True)
        self._final()

    def step(self) -> None:
        """One pass: tally refusals when due, write what is buffered, replay the spool when healthy."""
        if self.spool is not None:
            self.spool.sync()  # what put() spilled since the last pass
        self._tally()
        if self._clock() < self._retry_at:
            return
        if self._flush() and self.spool is not None and self.spool.has_records:
            self._replay()

    def _flush(self) -> bool:
        """Write buffered records in batches; False when the store refused one (kept for a retry)."""
        while self._pending or self._buffer:
            if not self._pending:
                self._pending = self._take(self.batch_size)
            if not self._write(self._pending):
                return False
            self._pending = []
        return True

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        """One sink call; on failure, note it and schedule the retry."""
        try:
            self._sink(batch)
        except Exception as exc:
            self.failures += 1
            delay = self._backoff.failed()
            self._retry_at = self._clock() + delay
            log.error("usage batch of %d not written (%s); retry in %.1f s", len(batch), type(exc).__name__, delay)
            return False
        self._backoff.succeeded()
        self.written += len(batch)
        return True

    def _replay(self) -> None:
        """Send the spool's records to the store, file by file; a file goes once all of it is stored."""
        spool = self.spool
        assert spool is not None
        for path in spool.take():
            batch: list[dict[str, Any]] = []
            for record in spool.read(path):
                batch.append(record)
                if len(batch) == self.batch_size:
                    if not self._write(batch):
                        return
                    batch = []
            if batch and not self._write(batch):
                return
            spool.done(path)
            log.info("usage spool %s replayed", path.name)

    def _final(self) -> None:
        """At stop: one more write unless the store is failing; whatever is left goes to the spool."""
        if self._retry_at == 0.0 or self._clock() >= self._retry_at:
            self._retry_at = 0.0
            if self._flush():
                if self.spool is not None:
                    self.spool.close()
                return
        self._spill_held()
        self._pending = []

    def _spill(self, records: list[dict[str, Any]]) -> None:
        """Records to the spool, fsynced; without a spool they stay in memory (logged)."""
        if not records:
            return
        if self.spool is None:
            log.error("%d usage records not written and no spool to keep them", len(records))
            self._buffer.extendleft(reversed(records))
            return
        self.spilled += self.spool.append(records, sync=True)
        self.spool.close()
        log.warning("%d usage records spooled to %s for the next start", len(records), self.spool.directory)

    def _take(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` records off the buffer."""
        buffer, batch = self._buffer, list[dict[str, Any]]()
        while buffer and len(batch) < limit:
            try:
                batch.append(buffer.popleft())
            except IndexError:
                break
        return batch

    def _spill_held(self) -> None:
        """Spill the refused batch and the whole buffer (see :meth:`_spill`)."""
        self._spill([*self._pending, *self._take(len(self._buffer) + 1)])

    def _tally(self, force: bool = False) -> None:
        """When due, turn the refusal counters into one tally record per tenant, written like usage."""
        self._buffer.extend(self._tallies.due(force))
