"""A bulk pass collects garbage rarely while it runs, and leaves the collector as it found it."""

from __future__ import annotations

import gc
import threading

import pytest

from projections.gc_pause import BULK_THRESHOLDS, fewer_collections


def test_a_pass_sets_the_bulk_thresholds_and_restores_the_process_s_own() -> None:
    before = gc.get_threshold()
    gc.set_threshold(900, 11, 12)
    try:
        with fewer_collections():
            assert gc.get_threshold() == BULK_THRESHOLDS and gc.get_freeze_count() > 0
            with fewer_collections():  # nested: still the bulk settings
                assert gc.get_threshold() == BULK_THRESHOLDS
            assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_threshold() == (900, 11, 12) and gc.get_freeze_count() == 0
        with pytest.raises(RuntimeError), fewer_collections():
            raise RuntimeError("a failed rebuild")
        assert gc.get_threshold() == (900, 11, 12) and gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_passes_in_two_threads_restore_once_the_last_ends_whichever_order() -> None:
    before = gc.get_threshold()
    first_in, first_may_leave = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with fewer_collections():
            first_in.set()
            first_may_leave.wait(5)
        seen.append(gc.get_threshold())  # the second still runs: bulk settings stay

    worker = threading.Thread(target=first)
    worker.start()
    assert first_in.wait(5)
    with fewer_collections():
        first_may_leave.set()
        worker.join(5)
    assert seen == [BULK_THRESHOLDS]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
