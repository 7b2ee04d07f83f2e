"""The sweep task that closes appeal windows: ``Suspension.AppealWindowClosed`` at the deadline, once.

A task of the policy sweeper (``name``, ``run(now) -> events emitted``). Idempotent: the aggregate
records the closing only once, so a run repeated before the read model caught up, or a second
sweeper racing this one (it gets a version conflict, counted as nothing), adds no second event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol
from uuid import UUID

from api.services import Services
from domain.errors import Conflict, NotFound

log = logging.getLogger(__name__)


class OpenWindow(Protocol):
    """A suspension whose closing is not recorded yet."""

    @property
    def id(self) -> UUID: ...

    @property
    def tenant_id(self) -> UUID: ...

    @property
    def appeal_until(self) -> datetime: ...


class CloseWindow(Protocol):
    """``OwnLLM.close_appeal_window``."""

    def __call__(self, tenant_id: UUID, suspension_id: UUID, now: datetime, request_id: str) -> bool: ...


class AppealWindowSweep:
    """Closes every appeal window whose deadline (exclusive: ``policies.appeals``) is at or before ``now``."""

    name = "appeal-windows"

    def __init__(self, close: CloseWindow, open_windows: Callable[[], Iterable[OpenWindow]]) -> None:
        self.close = close
        self.open_windows = open_windows

    def run(self, now: datetime) -> int:
        """Record the windows due by ``now``; returns how many closings were recorded."""
        emitted = 0
        for window in list(self.open_windows()):
            if now < window.appeal_until:
                continue
            try:
                if self.close(window.tenant_id, window.id, now, f"sweep-{uuid.uuid4()}"):
                    emitted += 1
            except Conflict:  # another sweeper recorded it a moment ago
                continue
            except NotFound:
                log.warning("suspension %s is gone from the store; its window is not closed", window.id)
        return emitted


def appeal_window_sweep(services: Services) -> AppealWindowSweep:
    """The task over a process's services: commands catch the read models up after them."""

    def close(tenant_id: UUID, suspension_id: UUID, now: datetime, request_id: str) -> bool:
        return services.command(services.app.close_appeal_window, tenant_id, suspension_id, now, request_id)

    return AppealWindowSweep(close, services.enforcement.windows_open)
