"""The audit log: one row per tenant event, usage as hourly aggregates, as a tracked SQL read model.

Rows and the tracking record are written in one transaction (as the usage view does), so a kill
between them loses and duplicates nothing, and ``ownllm projections rebuild audit`` replays it.
Positions are notification ids: a row's position is its event's (an hourly usage row keeps the
position of the first record counted in it), which makes positions a stable keyset cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from uuid import UUID, uuid5

import msgspec
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.utils import get_topic

from domain.usage import UsageRecord
from projections.audit_entries import USAGE_ACTION, AuditEntry, entry_for
from projections.log import Recorded
from projections.usage_view import MAX_RECORD_VALUE

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
        return summary_of(self.entry.action, self.entry.summary, self.requests, self.prompt_tokens,
                          self.completion_tokens)  # fmt: skip


def summary_of(action: str, summary: str, requests: int | None, prompt: int | None, completion: int | None) -> str:
    """A row's summary as shown; an hourly usage row says its counts."""
    if action != USAGE_ACTION:
        return summary
    return f"{requests} requests, {prompt} prompt and {completion} completion tokens on {summary}"


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

    def fetch_raw(self, where: AuditFilter, *, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        """Like :meth:`fetch`, oldest first, as stored text (times ISO 8601 UTC, ids as text): exports."""
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
            rows, usage = rows_of(r for r in records if r.notification_id > self.position)
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


class _Tagged(msgspec.Struct):
    data: str = msgspec.field(name="_data_")


class _StoredUsage(msgspec.Struct):
    """The fields of a stored ``UsageRecord.Recorded`` that the audit log counts (others are ignored)."""

    timestamp: _Tagged
    tenant_id: _Tagged
    key_id: _Tagged
    model: str
    prompt_tokens: int
    completion_tokens: int


_USAGE_TOPIC = get_topic(UsageRecord.Recorded)
_read_usage = msgspec.json.Decoder(_StoredUsage).decode


@dataclass(slots=True)
class _Bucket:
    position: int
    tenant_id: str
    key_id: str
    model: str
    hour: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def rows_of(records: Iterable[Recorded]) -> tuple[list[AuditRow], list[UsageBucket]]:
    """The audit rows of stored records, and their usage folded per key, model and hour.

    Usage records are most of the log: their counts are read from the stored bytes without the
    mapper (a third of the cost of a full decode); anything unexpected there takes the full decode.
    """
    rows: list[AuditRow] = []
    buckets: dict[tuple[str, str, str, str], _Bucket] = {}
    for record in records:
        if record.topic == _USAGE_TOPIC:
            _count(buckets, record)
            continue
        entry = entry_for(record.event)
        if entry is not None:
            rows.append(AuditRow(record.notification_id, entry))
    return rows, [_bucket_row(b) for b in buckets.values()]


def _count(buckets: dict[tuple[str, str, str, str], _Bucket], record: Recorded) -> None:
    try:
        u = _read_usage(record.state)
        tenant_id, key_id, hour = _hex(u.tenant_id.data), _hex(u.key_id.data), _hour(u.timestamp.data)
        model, prompt, completion = u.model, u.prompt_tokens, u.completion_tokens
    except (msgspec.DecodeError, ValueError):  # another encoding: the mapper knows it
        e = record.event
        tenant_id, key_id, hour = e.tenant_id.hex, e.key_id.hex, _hour(e.timestamp.isoformat())
        model, prompt, completion = e.model, e.prompt_tokens, e.completion_tokens
    if not (0 <= prompt <= MAX_RECORD_VALUE and 0 <= completion <= MAX_RECORD_VALUE):
        prompt = completion = 0  # out of range: the usage view quarantines it; the request still counts
    key = (tenant_id, key_id, model, hour)
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = _Bucket(record.notification_id, tenant_id, key_id, model, hour)
    bucket.requests += 1
    bucket.prompt_tokens += prompt
    bucket.completion_tokens += completion


def _hex(value: str) -> str:
    """A uuid's 32 lowercase hex digits (as eventsourcing stores them), checked without parsing."""
    if len(value) == 32 and value == value.lower():
        return value
    return UUID(value).hex


def _hour(timestamp: str) -> str:
    """``YYYY-MM-DDTHH`` of an ISO 8601 time, in UTC."""
    if timestamp.endswith("+00:00") and len(timestamp) >= 13:
        return timestamp[:13]
    return datetime.fromisoformat(timestamp).astimezone(UTC).isoformat()[:13]


def _bucket_row(b: _Bucket) -> UsageBucket:
    hour = datetime.fromisoformat(b.hour + ":00:00+00:00")
    tenant_id, key_id = UUID(b.tenant_id), UUID(b.key_id)
    bucket = uuid5(USAGE_BUCKETS, f"{tenant_id}|{key_id}|{b.model}|{hour.isoformat()}")
    entry = AuditEntry(tenant_id, hour, f"key:{key_id}", USAGE_ACTION, "api_key", key_id, b.model, "")
    return UsageBucket(bucket, b.position, entry, b.requests, b.prompt_tokens, b.completion_tokens)
