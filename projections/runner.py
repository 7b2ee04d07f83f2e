"""Keeps in-memory projections current by reading the application's notification log.

eventsourcing 9.5.6 cannot subscribe to SQLite, so the runner polls ``select_notifications``
on every recorder alike; a command's caller also calls :meth:`catch_up` right after saving, so
a process reads its own writes at once (revocation is effective on the very next request).
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
        self.position = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self) -> int:
        """Process everything recorded so far; returns how many events were applied."""
        applied = 0
        with self._lock:
            while True:
                batch = self.app.recorder.select_notifications(self.position + 1, BATCH)
                events = [(n.id, self.app.mapper.to_domain_event(n)) for n in batch]
                for _, event in events:
                    for projection in self.projections:
                        projection.process(event)
                for tracked in self.tracked:
                    tracked.process_batch(events)
                if events:
                    self.position = events[-1][0]
                applied += len(batch)
                if len(batch) < BATCH:
                    break
        if applied and self.on_advance is not None:
            self.on_advance()
        return applied

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
