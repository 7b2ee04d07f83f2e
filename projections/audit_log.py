"""The audit log: one row per tenant event, usage as hourly aggregates, as a tracked SQL read model.

Rows and the tracking record are written in one transaction (as the usage view does), so a kill
between them loses and duplicates nothing, and ``ownllm projections rebuild audit`` replays it.
Positions are notification ids: a row's position is its event's (an hourly usage row keeps the
position of the first record counted in it), which makes positions a stable keyset cursor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID, uuid5

from eventsourcing.persistence import IntegrityError, Tracking

from domain.usage import UsageRecord
from projections.audit_entries import USAGE_ACTION, AuditEntry, entry_for
from projections.log import Recorded
from projections.usage_view import unfit

TRACKING_NAME = "ownllm/audit"
EXACT_COUNT_UP_TO = 100_000  # past this, X-Total-Count is an estimate (and a header says so)
USAGE_BUCKETS = UUID("0d3b8f7c-6a52-5c1e-b7a4-3e9f1d2c8a60")


class StaleAuditPosition(Exception):
    """Another runner moved the audit log on; re-read the position."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A row as stored: an entry with its position (and usage counts on an hourly usage row)."""

    position: int
    entry: AuditEntry
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def summary(self) -> str:
        """The entry's summary; usage rows say their counts."""
        if self.entry.action != USAGE_ACTION:
            return self.entry.summary
        return (f"{self.requests} requests, {self.prompt_tokens} prompt and {self.completion_tokens} "
                f"completion tokens on {self.entry.summary}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """The counts of one key's requests to one model in one hour (added to its row)."""

    bucket: UUID
    position: int
    entry: AuditEntry
    requests: int
    prompt_tokens: int
    completion_tokens: int


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

    def apply(self, expected: int, tracking: Tracking, rows: Sequence[AuditRow], usage: Sequence[UsageBucket]) -> None:
        """Insert ``rows``, add ``usage`` to their hourly rows and move the tracking, atomically."""
        ...

    def fetch(
        self, where: AuditFilter, *, after: int | None, before: int | None, limit: int, order: Order
    ) -> list[AuditRow]:
        """Up to ``limit`` rows matching ``where`` strictly between the cursors, in ``order`` of position."""
        ...

    def count(self, where: AuditFilter, up_to: int) -> tuple[int, bool]:
        """How many rows match (exact up to ``up_to``; past it an estimate, and False)."""
        ...

    def clear(self) -> None:
        """Drop every row and the tracking record (before a rebuild)."""
        ...


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
            rows, usage = rows_of((r.notification_id, r.event) for r in records if r.notification_id > self.position)
            try:
                self.table.apply(self.position, Tracking(TRACKING_NAME, through), rows, usage)
            except (StaleAuditPosition, IntegrityError):
                self.position = self.table.position()
                continue
            self.position = through
            return
        raise StaleAuditPosition("audit projection kept losing races; is more than one runner configured?")

    def clear(self) -> None:
        """Drop every row and go back to position 0."""
        self.table.clear()
        self.position = 0

    def page(
        self, where: AuditFilter, *, after: int | None = None, before: int | None = None, limit: int = 100,
        order: Order = "desc",
    ) -> Page:  # fmt: skip
        """One page of the tenant's rows in ``order``; ``after``/``before`` are positions (keyset).

        A page is fetched walking away from its cursor (so ``before`` on an oldest-first listing
        gives the rows just before it) and shown in ``order``; one probe of a row on each side says
        whether a previous and a next page exist.
        """
        walk: Order = "asc" if after is not None else "desc" if before is not None else order
        rows = self.table.fetch(where, after=after, before=before, limit=limit, order=walk)
        if walk != order:
            rows.reverse()
        if not rows:
            return Page(rows, more_before=False, more_after=False)
        low, high = min(rows[0].position, rows[-1].position), max(rows[0].position, rows[-1].position)
        below = bool(self.table.fetch(where, after=None, before=low, limit=1, order="desc"))
        above = bool(self.table.fetch(where, after=high, before=None, limit=1, order="asc"))
        return Page(rows, more_before=below, more_after=above)

    def count(self, where: AuditFilter) -> tuple[int, bool]:
        """Matching rows: (count, exact)."""
        return self.table.count(where, EXACT_COUNT_UP_TO)

    def scan(self, where: AuditFilter, batch: int = 1000) -> Iterator[AuditRow]:
        """Every matching row, oldest first, a page at a time (exports: memory stays flat)."""
        after = None
        while True:
            rows = self.table.fetch(where, after=after, before=None, limit=batch, order="asc")
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].position


def rows_of(events: Any) -> tuple[list[AuditRow], list[UsageBucket]]:
    """The audit rows of (notification id, event) pairs, and their usage folded per key, model, hour."""
    rows: list[AuditRow] = []
    buckets: dict[UUID, UsageBucket] = {}
    for notification_id, event in events:
        if isinstance(event, UsageRecord.Recorded):
            _count(buckets, notification_id, event)
            continue
        entry = entry_for(event)
        if entry is not None:
            rows.append(AuditRow(notification_id, entry))
    return rows, list(buckets.values())


def _count(buckets: dict[UUID, UsageBucket], notification_id: int, e: UsageRecord.Recorded) -> None:
    prompt, completion = (0, 0) if unfit(e) else (e.prompt_tokens, e.completion_tokens)  # quarantined by the usage view
    hour = e.timestamp.replace(minute=0, second=0, microsecond=0)
    bucket = uuid5(USAGE_BUCKETS, f"{e.tenant_id}|{e.key_id}|{e.model}|{hour.isoformat()}")
    found = buckets.get(bucket)
    if found is None:
        entry = AuditEntry(e.tenant_id, hour, f"key:{e.key_id}", USAGE_ACTION, "api_key", e.key_id, e.model, "")
        buckets[bucket] = UsageBucket(bucket, notification_id, entry, 1, prompt, completion)
    else:
        buckets[bucket] = replace(
            found, requests=found.requests + 1, prompt_tokens=found.prompt_tokens + prompt,
            completion_tokens=found.completion_tokens + completion,
        )  # fmt: skip
