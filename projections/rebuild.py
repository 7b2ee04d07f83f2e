"""Rebuilding a persistent read model from the log: drop it, then replay its topics (``ownllm projections
rebuild``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from eventsourcing.persistence import Notification

from projections import runner
from projections.gc_pause import fewer_collections
from projections.log import NotificationLog, Recorded
from projections.read_model_types import TrackedReadModel
from projections.runner import Read


@runtime_checkable
class SplitBatches(Protocol):
    """A read model whose batch is worked out in Python first and written afterwards, so a rebuild can
    write one batch while it works out the next (``process_records`` is the two in one)."""

    def prepare(self, records: Sequence[Recorded]) -> Any:
        """What ``records`` (all newer than the position) become: no I/O."""
        ...

    def write(self, prepared: Any, through: int) -> None:
        """Write what :meth:`prepare` gave and move the position to ``through``, atomically."""
        ...


def rebuild(
    model: TrackedReadModel,
    log_: NotificationLog,
    decode: Callable[[Notification], Any],
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Drop a tracked read model and replay its topics into it; returns (events replayed, head reached).

    On PostgreSQL the next batch is read in a second thread while this one is applied (the server
    works on the read, and the driver waits on it, while this thread decodes and writes); whatever
    the model's position after a batch, the next read starts there. A model that splits its batches
    (:class:`SplitBatches`) has each written in a third thread while the next is worked out.
    """
    model.clear()
    head = log_.head()

    def read(after: int) -> Read:
        return log_.records(
            after, head, model.topics, runner.TRACKED_BATCH, decode
        )  # read at each call (tests shrink it)

    with (
        fewer_collections(),
        getattr(model, "bulk_load", contextlib.nullcontext)(),  # e.g. secondary indexes built once at the end
        ThreadPoolExecutor(1, thread_name_prefix="rebuild-read") as reader,
    ):
        if isinstance(model, SplitBatches):
            replayed = _pipelined(model, log_, read, head, reader, on_progress)
        else:
            replayed = _in_turn(model, log_, read, head, reader, on_progress)
    return replayed, head


def _in_turn(
    model: TrackedReadModel, log_: NotificationLog, read: Callable[[int], Read], head: int,
    reader: ThreadPoolExecutor, on_progress: Callable[[int, int], None] | None,
) -> int:  # fmt: skip
    """Apply batch after batch, the next read ahead where the store allows."""
    replayed = 0
    ahead: Future[Read] | None = None
    while model.position < head:
        after = model.position
        batch, through = ahead.result() if ahead is not None else read(after)
        ahead = reader.submit(read, through) if log_.reads_alongside and through < head else None
        model.process_records(batch, through)
        if model.position == after:
            raise RuntimeError(f"{model.name} did not move from {after} to {through}")
        if model.position != through and ahead is not None:
            ahead.cancel()
            ahead = None
        replayed += len(batch)
        if on_progress is not None:
            on_progress(model.position, head)
    return replayed


def _pipelined(
    model: Any, log_: NotificationLog, read: Callable[[int], Read], head: int,
    reader: ThreadPoolExecutor, on_progress: Callable[[int, int], None] | None,
) -> int:  # fmt: skip
    """Read batch k+2, work out k+1 and write k at once (a rebuild is the only writer: it cleared the model).

    Writes go in order through one thread; the first that fails ends the rebuild with its error.
    """
    replayed, after = 0, model.position
    ahead: Future[Read] | None = None
    written: Future[None] | None = None

    def settle() -> None:  # the previous batch's write, whose position is ``after``
        if written is not None:
            written.result()
            if on_progress is not None:
                on_progress(after, head)

    with ThreadPoolExecutor(1, thread_name_prefix="rebuild-write") as writer:
        try:
            while after < head:
                batch, through = ahead.result() if ahead is not None else read(after)
                ahead = reader.submit(read, through) if log_.reads_alongside and through < head else None
                if through <= after:
                    raise RuntimeError(f"{model.name} did not move from {after} to {through}")
                prepared = model.prepare([r for r in batch if r.notification_id > after])
                settle()
                written = writer.submit(model.write, prepared, through)
                replayed += len(batch)
                after = through
            settle()
        finally:
            if ahead is not None:
                ahead.cancel()
    return replayed
