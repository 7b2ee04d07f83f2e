"""Keeps in-memory projections current by reading the application's notification log.

eventsourcing 9.5.6 cannot subscribe to SQLite, so the runner polls ``select_notifications``
on every recorder alike; a command's caller also calls :meth:`catch_up` right after saving, so
a process reads its own writes at once (revocation is effective on the very next request).
Tracked (persistent) projections are fed from the same batches but keep their own position, so a
database hiccup in one of them never holds back what authentication reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.application import Application

log = logging.getLogger(__name__)
BATCH = 1000


class Projection(Protocol):
    """An in-memory read model: folds events one at a time."""

    def process(self, event: Any) -> None:
        """Apply one event."""
        ...


class TrackedProjection(Protocol):
    """A persistent read model: applies a batch and its tracking record in one transaction."""

    def process_batch(self, events: Sequence[tuple[int, Any]]) -> None:
        """Apply the (notification id, event) pairs it has not applied yet."""
        ...


class ProjectionRunner:
    """Feeds every new event, in notification order and exactly once, to each projection."""

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[Projection],
        tracked: Sequence[TrackedProjection] = (),
        *,
        interval_s: float = 0.1,
        on_advance: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.projections = list(projections)
        self.tracked = list(tracked)
        self.interval_s = interval_s
        self.on_advance = on_advance
        self.position = 0  # of the in-memory projections
        self.tracked_position = 0  # of the tracked ones (each also skips what its own tracking says it has)
        self._tracked_failing = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self) -> int:
        """Process everything recorded so far; returns how many events the in-memory projections applied.

        The in-memory projections (what authentication reads) never wait for the tracked ones: a
        failing tracked projection is logged and retried from its own position on the next call.
        In steady state both are at the same position and share each decoded batch.
        """
        with self._lock:
            applied = 0
            while True:
                in_sync = self.tracked_position == self.position
                events = self._read(self.position)
                for _, event in events:
                    for projection in self.projections:
                        projection.process(event)
                if events:
                    self.position = events[-1][0]
                    applied += len(events)
                    if in_sync:
                        self._feed_tracked(events)
                if len(events) < BATCH:
                    break
            while self.tracked_position < self.position and self._feed_tracked(self._read(self.tracked_position)):
                pass
        if applied and self.on_advance is not None:
            self.on_advance()
        return applied

    def _read(self, after: int) -> list[tuple[int, Any]]:
        """The next batch of (notification id, event) after a position."""
        batch = self.app.recorder.select_notifications(after + 1, BATCH)
        return [(n.id, self.app.mapper.to_domain_event(n)) for n in batch]

    def _feed_tracked(self, events: list[tuple[int, Any]]) -> bool:
        """Give a batch to every tracked projection; False (logged once per outage) when one fails."""
        if not events:
            return False
        try:
            for tracked in self.tracked:
                tracked.process_batch(events)
        except Exception as exc:
            if not self._tracked_failing:
                log.warning("tracked projection failed (%s); retrying from its position", type(exc).__name__)
            self._tracked_failing = True
            return False
        if self._tracked_failing:
            log.info("tracked projection caught up again")
        self._tracked_failing = False
        self.tracked_position = events[-1][0]
        return True

    def start(self) -> None:
        """Poll in a background thread until :meth:`stop`."""
        self.catch_up()
        self._thread = threading.Thread(target=self._run, name="projection-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.catch_up()
            except Exception:  # keep serving; the next poll retries
                log.exception("projection runner failed; retrying")
