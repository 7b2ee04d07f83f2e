"""The policy sweeper: turns time into due events (deletions, expired exports, and billing's tasks).

A :class:`SweepTask` is named and, given ``now``, emits every event due at ``now`` and returns how
many it emitted. Tasks are idempotent: run twice at the same ``now``, the second run emits nothing
(each checks its aggregate's state before acting and decides dueness with ``policies.lifecycle``,
never a second early). :class:`Sweeper` runs its tasks one after the other, on an interval, inside
``ownllm serve``, and once from ``ownllm policies run [--now ...]``. At most one process sweeps at a
time (the reaction runner's lock: a file lock beside SQLite, a PostgreSQL advisory lock); a task that
fails is logged and retried on the next pass, without holding back the others.

The task list lives in one place, :func:`api.sweep_tasks.sweep_tasks`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from projections.reactions import HandlerLock

log = logging.getLogger(__name__)
LOCK_NAME = "policy-sweeper"


class SweepTask(Protocol):
    """One kind of due event; ``run`` is idempotent and returns the number of events it emitted."""

    name: str

    def run(self, now: datetime) -> int:
        """Emit every event due at ``now`` that was not emitted yet."""
        ...


class SweeperBusy(RuntimeError):
    """Another process holds the sweeper's lock."""


@dataclass
class Sweeper:
    """Runs the tasks in order; see the module docstring."""

    tasks: list[SweepTask]
    lock: HandlerLock
    clock: Callable[[], datetime]
    interval_s: float = 60.0
    last: dict[str, int] = field(default_factory=dict)  # events each task emitted on the last pass
    failures: dict[str, str] = field(default_factory=dict)  # the last error of each failing task
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _pass: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def add(self, task: SweepTask) -> None:
        """Sweep one more task (its name must be new)."""
        if any(t.name == task.name for t in self.tasks):
            raise ValueError(f"a sweep task named {task.name!r} exists")
        self.tasks.append(task)

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass at ``now`` (default: the clock); events emitted per task. :class:`SweeperBusy` when
        another process sweeps."""
        if not self.lock.acquire(LOCK_NAME):
            raise SweeperBusy("another process runs the policy sweeper")
        at = now or self.clock()
        with self._pass:
            return {task.name: self._run(task, at) for task in self.tasks_in_order()}

    def tasks_in_order(self) -> Sequence[SweepTask]:
        """The tasks as registered."""
        return list(self.tasks)

    def _run(self, task: SweepTask, now: datetime) -> int:
        try:
            emitted = task.run(now)
        except Exception as exc:  # one failing task holds back only itself
            self.failures[task.name] = type(exc).__name__
            log.warning("sweep task %s failed (%s); retried on the next pass", task.name, type(exc).__name__)
            return 0
        self.failures.pop(task.name, None)
        self.last[task.name] = emitted
        return emitted

    # -- inside `ownllm serve` -----------------------------------------------------------------

    def wake(self) -> None:
        """Sweep soon (an export was requested: build it now rather than at the next interval)."""
        self._wake.set()

    def start(self) -> None:
        """Sweep every ``interval_s`` (and when woken) in a background thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="policy-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping and give the lock back."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.lock.release_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except SweeperBusy:
                pass  # another process sweeps; try to take over on the next interval
            except Exception:
                log.exception("policy sweeper pass failed; retrying")
            self._wake.wait(self.interval_s)
            self._wake.clear()
