"""Rebuilding a persistent read model from the log: drop it, then replay its topics (``ownllm projections
rebuild``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from eventsourcing.persistence import Notification

from projections import runner
from projections.log import NotificationLog
from projections.read_model_types import TrackedReadModel
from projections.runner import Read


def rebuild(
    model: TrackedReadModel,
    log_: NotificationLog,
    decode: Callable[[Notification], Any],
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Drop a tracked read model and replay its topics into it; returns (events replayed, head reached).

    On PostgreSQL the next batch is read in a second thread while this one is applied (the server
    works on the read, and the driver waits on it, while this thread decodes and writes); whatever
    the model's position after a batch, the next read starts there.
    """
    model.clear()
    head = log_.head()
    replayed = 0

    def read(after: int) -> Read:
        return log_.records(
            after, head, model.topics, runner.TRACKED_BATCH, decode
        )  # read at each call (tests shrink it)

    with (
        getattr(model, "bulk_load", contextlib.nullcontext)(),  # e.g. secondary indexes built once at the end
        ThreadPoolExecutor(1, thread_name_prefix="rebuild-read") as reader,
    ):
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
    return replayed, head
