"""The audit log as the API reads it: after the projection has caught up with what was just written."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from projections.audit_log import AuditFilter, AuditProjection, Order, Page
from projections.log import NotificationLog
from projections.replay import Replayed, replay

SETTLE_S = 2.0  # how long a query waits for the audit projection to reach the log's head


class AuditReader:
    """Queries of the audit projection that first wait (boundedly) for the events recorded before them."""

    def __init__(
        self, projection: AuditProjection, log: NotificationLog, decode: Callable[[Notification], Any],
        settle_s: float = SETTLE_S,
    ) -> None:  # fmt: skip
        self.projection = projection
        self._log = log
        self._decode = decode
        self._settle_s = settle_s

    def settle(self) -> int:
        """Wait until every event recorded before this call is in the log (or ``settle_s`` passed);
        the position the answer stands on."""
        target = self._log.head()
        deadline = time.monotonic() + self._settle_s
        while (position := self.projection.stored_position()) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        return position

    def page(self, where: AuditFilter, *, after: int | None, before: int | None, limit: int, order: Order) -> Page:
        """One page (see :meth:`AuditProjection.page`)."""
        return self.projection.page(where, after=after, before=before, limit=limit, order=order)

    def count(self, where: AuditFilter) -> tuple[int, bool]:
        """Matching rows and whether the count is exact."""
        return self.projection.count(where)

    def replay(self, tenant_id: UUID, as_of: datetime) -> Replayed:
        """The tenant's directory as of ``as_of``, rebuilt from its events."""
        return replay(self._log, self._decode, tenant_id, as_of)

    def scan_raw(self, where: AuditFilter) -> Iterator[tuple[Any, ...]]:
        """Every matching row as stored text, oldest first (exports)."""
        return self.projection.scan_raw(where)
