"""Usage per tenant, user, key, model, day and status as a tracked SQL read model.

The view and its tracking record are written in one transaction (eventsourcing's tracking
recorders), so each usage event is counted exactly once and the projection resumes where it
stopped instead of replaying history. It holds no personal data: only ids, model names and counts.
One process runs it (``OWNLLM_RUN_PROJECTIONS``); every API process reads it.

Agents are untrusted (issue 13): the proxy validates their token counts, but a record that still
cannot be counted (a negative or absurd value, from an older proxy or a bug) must never stop the
view for every tenant behind it. Such a record is *quarantined*: not counted, its notification id
and reason kept in a small table (``usage_quarantine``) in the same transaction as the rest of its
batch, logged, and shown by ``ownllm projections status``; the rest of the batch and later events
apply as usual.

A terminated tenant's rows go when its activity retention ends (``ActivityRetention.Ended``), in the
transaction of the batch holding that event; a rebuild does the same, so they never come back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from domain.retention import ActivityRetention
from domain.usage import RejectionTally, UsageRecord
from projections.log import Recorded, topics_of

log = logging.getLogger(__name__)

TRACKING_NAME = "ownllm/usage"
# The largest count one record may add. No request costs a trillion tokens or milliseconds, and
# with this bound a row's sums stay far below the 64-bit columns' limit (2**63 - 1) for 2**23 records.
MAX_RECORD_VALUE = 2**40
QUARANTINE = "usage_quarantine"
COLUMNS = "tenant_id, user_id, key_id, model, day, status, requests, prompt_tokens, completion_tokens, duration_ms"


class StalePosition(Exception):
    """Another runner moved the projection on; re-read the position and skip what it applied."""


@dataclass(slots=True)
class UsageRow:
    """What one (day, model, user, key) cost, with requests counted per final status."""

    day: date
    model: str
    user_id: UUID
    key_id: UUID
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class RefusedRow:
    """One entry of a rejection tally, shaped as the view counts a usage record: status "rejected"."""

    tenant_id: UUID
    user_id: UUID
    key_id: UUID
    timestamp: datetime
    requests: int
    model: str = ""
    status: str = "rejected"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: int = 0


def refused_rows(tally: RejectionTally.Counted) -> list[RefusedRow]:
    """A tally's counts as rows of status "rejected" (refused requests are tallied, issue 13)."""
    return [
        RefusedRow(tally.tenant_id, UUID(c["user_id"]), UUID(c["key_id"]), tally.timestamp, int(c["count"]))
        for c in tally.counts
    ]


class UsageView(Protocol):
    """The tracked usage read model, on SQLite or PostgreSQL."""

    def position(self) -> int:
        """The last notification id this view has applied (0 when new)."""
        ...

    def apply(
        self,
        expected: int,
        tracking: Tracking,
        events: Sequence[UsageRecord.Recorded | RefusedRow],
        quarantined: Sequence[tuple[int, str]] = (),
        purged: Sequence[UUID] = (),
    ) -> None:
        """Count ``events``, keep the ``quarantined`` (notification id, reason)s, drop the ``purged`` tenants'
        rows, and move the tracking from ``expected`` to ``tracking``, atomically."""
        ...

    def quarantined(self) -> list[tuple[int, str]]:
        """The (notification id, reason) of every record that was not counted, oldest first."""
        ...

    def rows(self, tenant_id: UUID, user_id: UUID | None, since: date | None, until: date | None) -> list[UsageRow]:
        """One tenant's usage (optionally one user's) between two days, by day, model and key."""
        ...

    def clear(self) -> None:
        """Drop every row and the tracking record (before a rebuild)."""
        ...


def unfit(event: UsageRecord.Recorded | RefusedRow) -> str | None:
    """Why a usage record cannot be counted (a value out of range), or None when it can."""
    if not 0 < getattr(event, "requests", 1) <= MAX_RECORD_VALUE:
        return "requests out of range"
    for name in ("prompt_tokens", "completion_tokens", "duration_ms"):
        value = getattr(event, name, None)
        if type(value) is not int or not 0 <= value <= MAX_RECORD_VALUE:
            return f"{name} out of range"
    return None


class UsageProjection:
    """Feeds ``UsageRecord.Recorded`` events to the view, exactly once, batch by batch."""

    name = "usage"
    topics = topics_of([UsageRecord.Recorded, RejectionTally.Counted, ActivityRetention.Ended])

    def __init__(self, view: UsageView) -> None:
        self.view = view
        self.position = view.position()

    def stored_position(self) -> int:
        """The view's position as its tracking record says (another process may have moved it)."""
        return self.view.position()

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        """Count the usage records after the view's position and move it to ``through``, atomically.

        ``records`` are every usage record after ``self.position`` up to ``through`` (the runner reads
        them by topic). When another runner moved the view on first, only what it has not applied is
        counted; when the view went back (a rebuild elsewhere) nothing is applied and the runner reads
        again from the view's position.
        """
        self._apply([(r.notification_id, r.event) for r in records], through)

    def process_batch(self, events: Sequence[tuple[int, Any]]) -> None:
        """Apply the usage events of one batch of (notification id, event) newer than the view."""
        fresh = [(n, e) for n, e in events if n > self.position]
        if any(_sort_out(fresh)) or _purged(fresh):
            self._apply(fresh, fresh[-1][0])

    def _apply(self, events: Sequence[tuple[int, Any]], through: int) -> None:
        """Count what is newer than the view and move it to ``through``; re-read the position on a lost race.

        When the view went back meanwhile (a rebuild elsewhere), nothing is applied: the caller reads
        again from the view's position rather than count a partial batch.
        """
        start = self.position
        for _ in range(5):
            if self.position >= through or self.position < start:
                return
            fresh = [(n, e) for n, e in events if n > self.position]
            usage, quarantined = _sort_out(fresh)
            try:
                self.view.apply(self.position, Tracking(TRACKING_NAME, through), usage, quarantined, _purged(fresh))
            except (StalePosition, IntegrityError):
                self.position = self.view.position()  # another runner got there first: never count twice
                continue
            self.position = through
            return
        raise StalePosition("usage projection kept losing races; is more than one runner configured?")

    def quarantined(self) -> list[tuple[int, str]]:
        """The (notification id, reason) of the records that were not counted (``projections status``)."""
        return self.view.quarantined()

    def clear(self) -> None:
        """Drop every row and go back to position 0 (before ``ownllm projections rebuild usage``)."""
        self.view.clear()
        self.position = 0

    def rebuild(self, events: Sequence[tuple[int, Any]]) -> None:
        """Start again from nothing, then apply ``events`` ((notification id, event) pairs)."""
        self.clear()
        self.process_batch(events)

    def query(self, tenant_id: UUID, *, user_id: UUID | None = None, since: date | None = None,
              until: date | None = None) -> list[UsageRow]:  # fmt: skip
        """The view's rows (reads the database: the dashboard, not the hot path)."""
        return self.view.rows(tenant_id, user_id, since, until)


def _purged(events: Sequence[tuple[int, Any]]) -> list[UUID]:
    """The tenants whose activity retention ended in ``events``: their rows go."""
    return [e.tenant_id for _, e in events if isinstance(e, ActivityRetention.Ended)]


def _sort_out(
    events: Any,
) -> tuple[list[UsageRecord.Recorded | RefusedRow], list[tuple[int, str]]]:
    """The usage records that can be counted, and the (notification id, reason) of those that cannot."""
    usage: list[UsageRecord.Recorded | RefusedRow] = []
    quarantined: list[tuple[int, str]] = []
    for notification_id, event in events:
        if isinstance(event, RejectionTally.Counted):
            try:
                rows: list[UsageRecord.Recorded | RefusedRow] = list(refused_rows(event))
            except (KeyError, TypeError, ValueError):
                log.error("rejection tally at notification %d quarantined: malformed counts", notification_id)
                quarantined.append((notification_id, "malformed rejection tally"))
                continue
        elif isinstance(event, UsageRecord.Recorded):
            rows = [event]
        else:
            continue
        reasons = [reason for reason in map(unfit, rows) if reason]
        if not reasons:
            usage += rows
        else:
            log.error("usage record at notification %d quarantined, not counted: %s", notification_id, reasons[0])
            quarantined.append((notification_id, reasons[0]))
    return usage, quarantined
