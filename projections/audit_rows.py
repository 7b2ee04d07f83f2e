"""The audit log's rows: what each stored record adds (one row per event, usage folded per key,
model and hour), with usage records' counts read from their stored bytes (the hot part of a rebuild)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from uuid import UUID, uuid5

import msgspec
from eventsourcing.utils import get_topic

from domain.usage import UsageRecord
from projections.audit_entries import USAGE_ACTION, AuditEntry, entry_for
from projections.log import Recorded
from projections.usage_view import MAX_RECORD_VALUE

USAGE_BUCKETS = UUID("0d3b8f7c-6a52-5c1e-b7a4-3e9f1d2c8a60")


class AuditRow(NamedTuple):
    """A row as stored: an entry with its position (and usage counts on an hourly usage row); a named
    tuple, as :class:`~projections.audit_entries.AuditEntry` is."""

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
    mapper (a third of the cost of a full decode), their ids and hour checked per bucket, not per
    record; anything unexpected there takes the full decode.
    """
    rows: list[AuditRow] = []
    usage: list[Recorded] = []
    for record in records:
        if record.topic == _USAGE_TOPIC:
            usage.append(record)
            continue
        entry = entry_for(record.event)
        if entry is not None:
            rows.append(AuditRow(record.notification_id, entry))
    buckets = _fold(usage) if usage else {}
    return rows, [_bucket_row(b) for b in buckets.values()]


def _fold(records: list[Recorded]) -> dict[tuple[str, str, str, str], _Bucket]:
    """The records' buckets: counted by their ids and hour as stored, each bucket's ids and hour then
    checked once (not per record); a record msgspec cannot read, or a batch with an id or time not as
    the mapper writes them, is counted record by record (the mapper decoding what it must)."""
    raw: dict[tuple[str, str, str, str, bool], list[int]] = {}  # as stored -> [position, requests, tokens...]
    slow: list[Recorded] = []
    for record in records:
        try:
            u = _read_usage(record.state)
        except msgspec.DecodeError:
            slow.append(record)
            continue
        moment, prompt, completion = u.timestamp.data, u.prompt_tokens, u.completion_tokens
        if not (0 <= prompt <= MAX_RECORD_VALUE and 0 <= completion <= MAX_RECORD_VALUE):
            prompt = completion = 0  # out of range: the usage view quarantines it; the request still counts
        utc = moment.endswith("+00:00") and len(moment) >= 13  # then its hour is its first 13 characters
        key = (u.tenant_id.data, u.key_id.data, u.model, moment[:13] if utc else moment, utc)
        counts = raw.get(key)
        if counts is None:
            raw[key] = [record.notification_id, 1, prompt, completion]
        else:
            counts[1] += 1
            counts[2] += prompt
            counts[3] += completion
    buckets: dict[tuple[str, str, str, str], _Bucket] = {}
    try:
        for (tenant, key_id, model, moment, utc), (position, requests, prompt, completion) in raw.items():
            tenant_id, key_hex, hour = _hex(tenant), _hex(key_id), moment if utc else _hour(moment)
            bucket = buckets.get((tenant_id, key_hex, model, hour))
            if bucket is None:
                bucket = buckets[(tenant_id, key_hex, model, hour)] = _Bucket(position, tenant_id, key_hex, model, hour)
            bucket.position = min(bucket.position, position)
            bucket.requests += requests
            bucket.prompt_tokens += prompt
            bucket.completion_tokens += completion
    except ValueError:
        buckets, slow = {}, records
    for record in slow:
        _count(buckets, record)
    return buckets


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
    bucket.position = min(bucket.position, record.notification_id)
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
