"""Keeps read models current by reading the application's notification log, each only its own topics.

eventsourcing 9.5.6 cannot subscribe to SQLite, so the runner polls the log on every recorder alike;
a command's caller also calls :meth:`ProjectionRunner.catch_up` right after saving, so a process
reads its own writes at once (revocation is effective on the very next request).

Reading by topic. Every read model declares the event classes it needs (``topics``: eventsourcing
topic strings, see :func:`projections.log.topics_of`; ``()`` means every event) and the runner
reads only those, through :class:`projections.log.NotificationLog` and its ``(topic, id)`` index.
Usage records are nearly the whole log, and neither the directory (what authentication reads) nor
anything else but the usage view needs them: a process now starts, and polls, in time proportional
to the tenancy events, not to the traffic. Two alternatives were weighed and not taken:

- usage records in a log of their own (a second application or recorder): start-up would be as
  cheap, but the platform would lose its single total order of events, which the integrity ledger
  hashes and the reaction handlers follow, and every tracked reader would need two positions and a
  merge; it also changes the write path of every request.
- directory snapshots: start-up would load a snapshot and read the tail, but the tail still has
  to be read and decoded whole (usage included) in every process on every poll, and snapshots
  need a format, versioning, sealing of the personal data they hold, and a writer.

Reading by topic needs only an index, changes neither the write path nor the domain, and removes
the usage cost from start-up *and* from steady state. A topic renamed with ``register_topic`` would
need both of its names in ``topics``; none is renamed today.

Positions. Each reader's position means "everything up to here of my topics is applied". A read
goes up to the head of the log, taken once per catch-up; a batch shorter than the limit means no
event of those topics exists up to the head, so the reader's position moves to the head even when
the last events were not its own. This is sound because notification ids become visible in commit
order (eventsourcing's recorders take a table lock, or SQLite's single writer, and we never enable
``POSTGRES_ENABLE_DB_FUNCTIONS``, see FACTS.md): no id at or below a visible head appears later.
So every reader reaches the same head after a catch-up, and the lag of a reader is simply the head
minus its position, whatever its topics.

- In-memory projections (the directory) share one position and one read of the union of their
  topics, under their own lock: nothing a tracked projection does can hold them back.
- Each tracked projection reads from its own position, kept in its tracking record and written in
  the same transaction as its rows (exactly once; racing runners re-read it, see UsageProjection),
  and receives :class:`projections.log.Recorded` items: the stored record (bytes as stored, what a
  ledger hashes) with the decoded event. A failing one is logged once per outage, counted in the
  failure log (``ownllm projections status``) and retried from its position on the next poll.
- A tracked projection with only ``process_batch`` (pairs of notification id and event) gets every
  event from position 0 of this process, as before.

:meth:`ProjectionRunner.start` brings only the in-memory projections up to date before returning:
a tracked backlog (a new read model, a rebuild) is worked off by the polling thread, at most
``TRACKED_BATCHES_PER_POLL`` batches between two in-memory catch-ups, so neither start-up nor
another process's revocation waits for it. While the polling thread runs it owns the tracked work:
``catch_up`` from a request thread then does the in-memory part only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from projections.log import NotificationLog, Recorded
from projections.read_model_types import Projection, TrackedProjection, TrackedReadModel
from projections.status import FailureLog, utc_now

log = logging.getLogger(__name__)
BATCH = 1000  # events per read of the in-memory projections
TRACKED_BATCH = 10_000  # records per batch of a tracked read model (one transaction each)
TRACKED_BATCHES_PER_POLL = 2  # then the in-memory projections catch up again (20,000 events, as before)
Read = tuple[list[Recorded], int]  # records and the position they complete (NotificationLog.records)
FAILURE_WRITE_EVERY_S = 5.0  # a reader failing at every poll updates its persisted count at most this often


class ProjectionRunner:
    """Feeds new events, in notification order and exactly once, to each projection."""

    def __init__(
        self,
        app: Application[Any],
        projections: Sequence[Projection],
        tracked: Sequence[TrackedReadModel | TrackedProjection] = (),
        *,
        interval_s: float = 0.1,
        on_advance: Callable[[], None] | None = None,
        failure_log: FailureLog | None = None,
    ) -> None:
        self.app = app
        self.log = NotificationLog(app.recorder)
        self.projections = list(projections)
        self.tracked = list(tracked)
        self.interval_s = interval_s
        self.on_advance = on_advance
        self.failure_log = failure_log
        self.position = 0  # of the in-memory projections
        self.caught_up_at: float | None = None  # time.monotonic() of the last successful in-memory catch-up
        self._cursors: dict[int, int] = {}  # positions of the tracked projections that keep none
        self._failures: dict[str, int] = {}  # consecutive failures by tracked projection
        self._failure_written: dict[str, float] = {}
        self._memory_lock = threading.Lock()
        self._tracked_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tracked_position(self) -> int:
        """The position of the tracked projection furthest behind (the in-memory one when none)."""
        return min((self._position_of(t) for t in self.tracked), default=self.position)

    def seconds_behind(self) -> float:
        """Seconds since the in-memory projections last reached the head (infinite before the first time)."""
        at = self.caught_up_at
        return float("inf") if at is None else time.monotonic() - at

    def catch_up(self) -> int:
        """Process everything recorded so far; returns how many events the in-memory projections applied.

        The in-memory projections (what authentication reads) never wait for the tracked ones: they
        have their own lock and read, and a failing tracked projection is logged and retried from its
        own position on the next call. While the polling thread runs, it does the tracked part.
        """
        applied, head = self._catch_up_memory()
        polling = self._thread is not None and self._thread.is_alive()
        if not polling or threading.current_thread() is self._thread:
            self._catch_up_tracked(head, max_batches=None)
        return applied

    def _catch_up_memory(self) -> tuple[int, int]:
        """Bring the in-memory projections to the head; (events applied, that head)."""
        self.log.ensure_index()  # once per process: the topic index, created where it is missing
        with self._memory_lock:
            head = self.log.head()
            topics = self._memory_topics()
            applied = 0
            if not self.projections:  # nothing to feed (a runner of tracked models only): read nothing
                self.position = head
            while self.position < head:
                batch = self.log.read(self.position, head, topics, BATCH)
                for notification in batch:
                    event = self.app.mapper.to_domain_event(notification)
                    for projection in self.projections:
                        projection.process(event)
                    self.position = notification.id
                    applied += 1
                if len(batch) < BATCH:
                    self.position = head  # nothing else of these topics up to the head
            self.caught_up_at = time.monotonic()
        if applied and self.on_advance is not None:
            self.on_advance()
        return applied, head

    def _memory_topics(self) -> tuple[str, ...]:
        """The union of the in-memory projections' topics; () (every event) if one has none."""
        topics: set[str] = set()
        for projection in self.projections:
            declared = getattr(projection, "topics", ())
            if not declared:
                return ()
            topics.update(declared)
        return tuple(sorted(topics))

    def _catch_up_tracked(self, head: int, max_batches: int | None) -> bool:
        """Bring each tracked projection towards ``head``; True when one has batches left.

        The projections go forward together, a batch each per round, and those standing at the same
        position with the same topics get the same records from one read (the audit log and the
        ledger both read every event: one read, and one decode of each event, for both).
        """
        with self._tracked_lock:
            pending, rounds = list(self.tracked), 0
            while pending:
                if max_batches is not None and rounds >= max_batches:
                    return True
                reads: dict[tuple[int, tuple[str, ...]], Read] = {}
                pending = [tracked for tracked in pending if self._feed(tracked, head, reads)]
                rounds += 1
        return False

    def _feed(self, tracked: Any, head: int, reads: dict[tuple[int, tuple[str, ...]], Read]) -> bool:
        """Feed one tracked projection one batch towards ``head``; True when it is still behind it."""
        name = _name(tracked)
        try:
            after = self._position_of(tracked)
            if after < head:
                records = hasattr(tracked, "process_records")  # it chose stored records over bare events
                topics = tuple(tracked.topics) if records else ()
                if (after, topics) not in reads:
                    reads[after, topics] = self.log.records(after, head, topics, TRACKED_BATCH, self._decode)
                batch, through = reads[after, topics]
                if records:
                    tracked.process_records(batch, through)
                    if tracked.position == after:
                        raise RuntimeError(f"tracked projection {name} did not move from {after} to {through}")
                else:
                    if batch:
                        tracked.process_batch([(r.notification_id, r.event) for r in batch])
                    self._cursors[id(tracked)] = through
                if self._position_of(tracked) < head:
                    return True
        except Exception as exc:
            self._failed(name, exc)
            return False
        self._recovered(name)
        return False

    def _decode(self, notification: Notification) -> Any:
        return self.app.mapper.to_domain_event(notification)

    def _position_of(self, tracked: Any) -> int:
        if hasattr(tracked, "process_records"):
            return int(tracked.position)
        return self._cursors.get(id(tracked), 0)

    def _failed(self, name: str, exc: Exception) -> None:
        count = self._failures[name] = self._failures.get(name, 0) + 1
        if count == 1:
            log.warning("tracked projection %s failed (%s); retrying from its position", name, type(exc).__name__)
        now = time.monotonic()
        if self.failure_log is None or (count > 1 and now - self._failure_written.get(name, 0) < FAILURE_WRITE_EVERY_S):
            return
        self._failure_written[name] = now
        try:
            self.failure_log.failed(name, type(exc).__name__, utc_now(), count)
        except Exception as write_error:  # the same database may be down: the log line above stays
            log.debug("could not record the failure of %s (%s)", name, type(write_error).__name__)

    def _recovered(self, name: str) -> None:
        if not self._failures.pop(name, 0):
            return
        log.info("tracked projection %s caught up again", name)
        self._failure_written.pop(name, None)
        if self.failure_log is not None:
            try:
                self.failure_log.recovered(name)
            except Exception as write_error:
                log.debug("could not record the recovery of %s (%s)", name, type(write_error).__name__)

    def start(self) -> None:
        """Bring the in-memory projections up to date, then poll in a background thread until :meth:`stop`."""
        self._catch_up_memory()
        self._thread = threading.Thread(target=self._run, name="projection-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        more = False
        while more or not self._stop.wait(self.interval_s):
            if self._stop.is_set():
                return
            try:
                _, head = self._catch_up_memory()
                more = self._catch_up_tracked(head, max_batches=TRACKED_BATCHES_PER_POLL)
            except Exception:  # keep serving; the next poll retries
                more = False
                log.exception("projection runner failed; retrying")


def _name(tracked: Any) -> str:
    return str(getattr(tracked, "name", type(tracked).__name__))
