"""The one way anything reacts to events: named handlers fed the log in order, each from its own position.

A :class:`Reaction` names the event topics it wants and handles one event at a time. It may issue
ordinary commands: the runner runs it inside ``app.reacting(Tracking(name, id))``, so the events
those commands save are written in ONE transaction with the handler's new position. A reaction
therefore happens exactly once or not at all, whatever point the process is killed at. A handler
with an effect outside the event store (rewriting NATS's authorization, sending a mail) is run at
least once: its position is saved after the effect, so the effect must be idempotent.

Each handler has its own position (eventsourcing's tracking table, keyed by the handler's name),
its own failure count and backoff, and its own lock: at most one process runs a handler at a time
(a PostgreSQL advisory lock, or a file lock next to the SQLite store), and a failing handler holds
back only itself. Failures are persisted (``projections.status.FailureLog``, shared with the read
models) so ``ownllm projections status`` in another process shows them: the exception's type only,
plus the message of a domain error (safe to show by contract), never text that may quote data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventsourcing.persistence import IntegrityError, Notification, Tracking

from domain.errors import DomainError
from projections.log import recorded
from projections.reaction_ports import BatchReaction, HandlerLock, Log, Positions, ReactingApp, Reaction
from projections.status import FailureLog

log = logging.getLogger(__name__)
BATCH = 100
SKIP_AHEAD_EVERY_S = 5.0  # how often an idle handler records that it has seen the rest of the log
MAX_ERROR_CHARS = 500


@dataclass
class _HandlerState:
    failures: int = 0
    due: float = 0.0  # monotonic time before which a failing handler is not retried
    skipped_at: float = 0.0
    settled_at: int = -1  # a log head this handler's stored position reached: nothing to do until the head moves
    running: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ReactionRunner:
    """Runs each reaction from its own position, in notification order; see the module docstring."""

    app: ReactingApp
    log: Log
    positions: Positions
    reactions: list[Reaction]
    locks: HandlerLock
    status: FailureLog
    interval_s: float = 0.25
    batch: int = BATCH
    backoff_s: tuple[float, float] = (0.5, 60.0)  # first retry, longest wait
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _state: dict[str, _HandlerState] = field(default_factory=dict)
    _started: bool = False
    _stopped: bool = False
    _wakes: int = 0  # bumped by wake(); each handler's thread waits for a new value or its interval
    _signal: threading.Condition = field(default_factory=threading.Condition)
    _threads: list[threading.Thread] = field(default_factory=list)
    _head_read: tuple[float, int] | None = None  # (when, head): one read of the head serves every idle thread
    _head_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        reactions, self.reactions = list(self.reactions), []
        for reaction in reactions:
            self.add(reaction)

    def add(self, reaction: Reaction) -> None:
        """Run one more handler (its name must be new); in its own thread once the runner is started."""
        with self._signal:
            if reaction.name in self._state:
                raise ValueError(f"a reaction named {reaction.name!r} is already running")
            self.reactions.append(reaction)
            self._state[reaction.name] = _HandlerState()
            if self._started:
                self._start_thread(reaction)

    def run_once(self) -> int:
        """Advance every due reaction whose lock this process holds; returns how many events were handled."""
        self._forget_head()
        return sum(self._run(reaction) for reaction in list(self.reactions))

    def _head(self) -> int:
        """The log's head, read at most once per half interval by all this runner's threads together (an idle
        process polls once, not once per handler; :meth:`wake` and :meth:`run_once` read it afresh)."""
        with self._head_lock:
            at = self.monotonic()
            if self._head_read is not None and at - self._head_read[0] < self.interval_s / 2:
                return self._head_read[1]
            head = self.log.head()
            self._head_read = (at, head)
            return head

    def _forget_head(self) -> None:
        with self._head_lock:
            self._head_read = None

    def _run(self, reaction: Reaction) -> int:
        """Advance one handler if it is due and this process holds its lock (one caller at a time)."""
        state = self._state[reaction.name]
        with state.running:
            head = self._head()
            if head == state.settled_at or self.monotonic() < state.due or not self.locks.acquire(reaction.name):
                return 0
            try:
                handled = self._advance(reaction, state, head)
            except Exception as exc:  # the handler, its position or the log: retried with backoff
                self._failed(reaction, state, exc)
                return 0
            if state.failures:
                self._recovered(reaction, state)
            return handled

    def position(self, name: str) -> int:
        """A handler's stored position."""
        return self.positions.max_tracking_id(name) or 0

    def _advance(self, reaction: Reaction, state: _HandlerState, head: int) -> int:
        position, handled = self.position(reaction.name), 0
        while position < head:
            batch = self.log.read(position, head, reaction.topics, getattr(reaction, "batch_size", self.batch))
            if not batch:
                position = self._skip_ahead(reaction.name, position, head, state)
                break
            position = self._handle_batch(reaction, batch)
            handled += len(batch)
        if position >= head:
            state.settled_at = head
        return handled

    def _handle_batch(self, reaction: Reaction, batch: Sequence[Notification]) -> int:
        """Handle a batch; the position of events that caused no command is saved once, at the end."""
        if isinstance(reaction, BatchReaction):
            return self._handle_whole(reaction, batch)
        unsaved: int | None = None
        try:
            for notification in batch:
                recorded_with_position = self._handle(reaction, notification)
                unsaved = None if recorded_with_position else notification.id
        finally:
            if unsaved is not None:  # also when a later event failed: what succeeded stays done
                self.positions.insert_tracking(Tracking(reaction.name, unsaved))
        return batch[-1].id

    def _handle(self, reaction: Reaction, notification: Notification) -> bool:
        """Handle one event; True when its commands were recorded together with the new position."""
        event = self.app.mapper.to_domain_event(notification)
        try:
            with self.app.reacting(Tracking(reaction.name, notification.id)) as unit:
                reaction.handle(event, notification.id)
        except IntegrityError:
            if self.position(reaction.name) >= notification.id:  # another runner got there first
                return True
            raise
        return bool(unit.events)

    def _handle_whole(self, reaction: BatchReaction, batch: Sequence[Notification]) -> int:
        """A batch handler's commands for the whole batch, recorded in one transaction with its last position."""
        items = [recorded(n, self.app.mapper.to_domain_event) for n in batch]  # decoded when read
        try:
            with self.app.reacting(Tracking(reaction.name, batch[-1].id)) as unit:
                reaction.handle_batch(items)
        except IntegrityError:
            if self.position(reaction.name) >= batch[-1].id:  # another runner got there first
                return batch[-1].id
            raise
        if not unit.events:
            self.positions.insert_tracking(Tracking(reaction.name, batch[-1].id))
        return batch[-1].id

    def _skip_ahead(self, name: str, position: int, head: int, state: _HandlerState) -> int:
        """Nothing for this handler up to ``head``: record that now and then, so its lag reads true; the
        position stored."""
        if self.monotonic() - state.skipped_at < SKIP_AHEAD_EVERY_S:
            return position
        state.skipped_at = self.monotonic()
        self.positions.insert_tracking(Tracking(name, head))
        return head

    def _failed(self, reaction: Reaction, state: _HandlerState, exc: Exception) -> None:
        state.failures += 1
        first, longest = self.backoff_s
        wait = min(longest, first * 2 ** (state.failures - 1))
        state.due = self.monotonic() + wait
        error = type(exc).__name__ + (f": {exc}" if isinstance(exc, DomainError) else "")
        error = error[:MAX_ERROR_CHARS]
        log.warning(
            "reaction %s failed (%d in a row; next try in %.1f s): %s", reaction.name, state.failures, wait, error
        )
        try:
            self.status.failed(reaction.name, error, self.now(), state.failures)
        except Exception:
            log.exception("could not record the failure of reaction %s", reaction.name)

    def _recovered(self, reaction: Reaction, state: _HandlerState) -> None:
        log.info("reaction %s works again after %d failures", reaction.name, state.failures)
        state.failures, state.due = 0, 0.0
        try:
            self.status.recovered(reaction.name)
        except Exception:
            log.exception("could not record the recovery of reaction %s", reaction.name)

    # -- the background threads: one per handler, so a slow one delays no other ---------------

    def wake(self) -> None:
        """Run soon (after a command, so reactions follow it without waiting for the next poll)."""
        self._forget_head()
        with self._signal:
            self._wakes += 1
            self._signal.notify_all()

    def start(self) -> None:
        """Run every handler in a thread of its own until :meth:`stop` (handlers added later too)."""
        with self._signal:
            self._started = True
            for reaction in self.reactions:
                self._start_thread(reaction)

    def stop(self) -> None:
        """Stop running and give the handlers' locks back."""
        with self._signal:
            self._stopped = True
            self._signal.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=10)
        self.locks.release_all()

    def _start_thread(self, reaction: Reaction) -> None:
        thread = threading.Thread(target=self._loop, args=(reaction,), name=f"reaction-{reaction.name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _loop(self, reaction: Reaction) -> None:
        seen = -1  # the wakes this thread has acted on (-1: run at once on start)

        def woken() -> bool:
            return self._stopped or self._wakes != seen

        while True:
            with self._signal:
                self._signal.wait_for(woken, timeout=self.interval_s)
                if self._stopped:
                    return
                seen = self._wakes
            try:
                self._run(reaction)
            except Exception:  # never let the thread die; the handler's own failures are handled in _run
                log.exception("reaction runner failed on %s; retrying", reaction.name)
