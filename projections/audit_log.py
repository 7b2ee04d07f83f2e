"""The audit log: one row per tenant event, usage as hourly aggregates, as a tracked SQL read model.

A terminated tenant's rows go when its activity retention ends (``ActivityRetention.Ended``): the
batch holding that event deletes the tenant's rows before it, in the same transaction; a rebuild does
the same when it reaches the event, so the rows never come back (the events stay in the store).

Rows and the tracking record are written in one transaction (as the usage view does), so a kill
between them loses and duplicates nothing, and ``ownllm projections rebuild audit`` replays it.
Positions are notification ids: a row's position is its event's (an hourly usage row keeps the
position of the first record counted in it), which makes positions a stable keyset cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.utils import get_topic

from domain.retention import ActivityRetention
from projections.audit_rows import AuditRow, UsageBucket, rows_of, summary_of
from projections.log import Recorded

__all__ = ["AuditFilter", "AuditProjection", "AuditRow", "AuditTable", "Page", "UsageBucket", "summary_of"]

TRACKING_NAME = "ownllm/audit"
# ``ActivityRetention.Ended``: the tenant's rows before it go (a rebuild drops them again when it gets there).
ACTIVITY_ENDED = get_topic(ActivityRetention.Ended)
EXACT_COUNT_UP_TO = 100_000  # past this, X-Total-Count is an estimate (and a header says so)


class StaleAuditPosition(Exception):
    """Another runner moved the audit log on; re-read the position."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What a compliance officer searches for; every field narrows, ``tenant_id`` always applies."""

    tenant_id: UUID
    actors: tuple[str, ...] = ()  # any of these (a user's keys: ``key:<id>``, ...)
    action: str | None = None
    action_prefix: str | None = None
    subject_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    involves: UUID | None = None  # rows about this subject ...
    involves_actors: tuple[str, ...] = ()  # ... or done by it (under any of these actor names)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows, and whether rows lie below and above its positions."""

    rows: list[AuditRow]
    more_before: bool
    more_after: bool


Order = Literal["asc", "desc"]


class AuditTable(Protocol):
    """The tracked audit table on SQLite or PostgreSQL."""

    def position(self) -> int:
        """The last notification id applied (0 when new)."""
        ...

    def apply(
        self, expected: int, tracking: Tracking, rows: Sequence[AuditRow], usage: Sequence[UsageBucket],
        purges: Sequence[tuple[UUID, int]] = (),
    ) -> None:  # fmt: skip
        """Insert ``rows``, add ``usage`` to their hourly rows, drop each purged tenant's rows before its
        position, and move the tracking, atomically."""
        ...

    def fetch(
        self, where: AuditFilter, *, after: int | None, before: int | None, limit: int, order: Order
    ) -> list[AuditRow]:
        """Up to ``limit`` rows matching ``where`` strictly between the cursors, in ``order`` of position."""
        ...

    def fetch_raw(self, where: AuditFilter, *, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        """Like :meth:`fetch`, oldest first, as stored text (times ISO 8601 UTC, ids as text): exports."""
        ...

    def count(self, where: AuditFilter, up_to: int) -> tuple[int, bool]:
        """How many rows match (exact up to ``up_to``; past it an estimate, and False)."""
        ...

    def clear(self) -> None:
        """Drop every row and the tracking record (before a rebuild)."""
        ...

    def bulk_load(self) -> AbstractContextManager[None]:
        """While a rebuild writes every row: the secondary indexes go, and are built once at the end."""
        ...


class AuditBatch(NamedTuple):
    """One batch of records as the audit table takes it."""

    rows: list[AuditRow]
    usage: list[UsageBucket]
    purges: list[tuple[UUID, int]]


@dataclass
class AuditProjection:
    """Feeds every event to the audit table, exactly once, batch by batch."""

    table: AuditTable
    name: str = "audit"
    topics: tuple[str, ...] = ()  # every event (usage too: it is aggregated)
    position: int = field(init=False)

    def __post_init__(self) -> None:
        self.position = self.table.position()

    def stored_position(self) -> int:
        """The table's position as its tracking record says."""
        return self.table.position()

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        """Write the rows of ``records`` newer than the table and move it to ``through``, atomically."""
        start = self.position
        for _ in range(5):
            if self.position >= through or self.position < start:
                return
            try:
                self.write(self.prepare([r for r in records if r.notification_id > self.position]), through)
            except (StaleAuditPosition, IntegrityError):
                self.position = self.table.position()
                continue
            return
        raise StaleAuditPosition("audit projection kept losing races; is more than one runner configured?")

    def prepare(self, fresh: Sequence[Recorded]) -> AuditBatch:
        """The rows, hourly usage and purges of records all newer than the position (no I/O)."""
        rows, usage = rows_of(fresh)
        purges = [(r.event.tenant_id, r.notification_id) for r in fresh if r.topic == ACTIVITY_ENDED]
        return AuditBatch(rows, usage, purges)

    def write(self, batch: AuditBatch, through: int) -> None:
        """Write a prepared batch and move to ``through`` in one transaction (stale position: raises)."""
        self.table.apply(self.position, Tracking(TRACKING_NAME, through), batch.rows, batch.usage, batch.purges)
        self.position = through

    def clear(self) -> None:
        """Drop every row and go back to position 0."""
        self.table.clear()
        self.position = 0

    def bulk_load(self) -> AbstractContextManager[None]:
        """What :func:`projections.rebuild.rebuild` writes in: indexes built once, after the rows (see the tables)."""
        return self.table.bulk_load()

    def page(
        self, where: AuditFilter, *, after: int | None = None, before: int | None = None, limit: int = 100,
        order: Order = "desc",
    ) -> Page:  # fmt: skip
        """One page of the tenant's rows in ``order``; ``after``/``before`` are positions (keyset).

        A page is fetched walking away from its cursor (so ``before`` on an oldest-first listing
        gives the rows just before it) and shown in ``order``. One extra row fetched says whether
        more lie beyond it; on the cursor's side lies the page the cursor came from (one query).
        """
        walk: Order = "asc" if after is not None else "desc" if before is not None else order
        rows = self.table.fetch(where, after=after, before=before, limit=limit + 1, order=walk)
        further = len(rows) > limit  # one more row lies beyond the page, in the walking direction
        rows = rows[:limit]
        if walk == "asc":
            more_before, more_after = (after is not None), further
        else:
            more_before, more_after = further, (before is not None)
        if walk != order:
            rows.reverse()
        if not rows:
            return Page(rows, more_before=False, more_after=False)
        return Page(rows, more_before=more_before, more_after=more_after)

    def count(self, where: AuditFilter) -> tuple[int, bool]:
        """Matching rows: (count, exact)."""
        return self.table.count(where, EXACT_COUNT_UP_TO)

    def scan_raw(self, where: AuditFilter, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """Every matching row as stored text, oldest first, a page at a time (exports: flat memory)."""
        after = None
        while True:
            rows = self.table.fetch_raw(where, after=after, limit=batch)
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def scan(self, where: AuditFilter, batch: int = 1000) -> Iterator[AuditRow]:
        """Every matching row, oldest first, a page at a time (exports: memory stays flat)."""
        after = None
        while True:
            rows = self.table.fetch(where, after=after, before=None, limit=batch, order="asc")
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].position
