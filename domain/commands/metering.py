"""Metering: one usage record per inference request, counts only; refused requests as tallies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.commands.base import Commands
from domain.errors import InvalidValue
from domain.ids import secret_id_for
from domain.usage import USAGE_STATUSES, RejectionTally, UsageRecord

# A batch whose saves keep conflicting after this many rounds of removing what is already stored
# is not a duplicate problem (another writer cannot keep inserting the same request ids forever).
_DEDUPE_ROUNDS = 5


def uuid_for_request(request_id: str) -> UUID:
    """The usage record id of a request."""
    return secret_id_for("usage", request_id)


def uuid_for_tally(tally_id: str) -> UUID:
    """The id of a rejection tally, from its writer's own id for it (process and interval)."""
    return secret_id_for("rejections", tally_id)


def usage_record(
    *,
    tenant_id: UUID,
    user_id: UUID,
    key_id: UUID,
    agent_id: UUID | str | None,
    model: str,
    endpoint: str,
    stream: bool,
    status: str,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: int | None,
    duration_ms: int,
    request_id: str,
    counts_corrected: bool = False,
    counts_estimated: bool = False,
) -> UsageRecord:
    """The (unsaved) usage record of one request; its id is the request id's, so a repeat conflicts."""
    if status not in USAGE_STATUSES:
        raise InvalidValue(f"unknown usage status {status!r}", "status")
    return UsageRecord(
        id=uuid_for_request(request_id),
        tenant_id=UUID(str(tenant_id)),
        user_id=UUID(str(user_id)),
        key_id=UUID(str(key_id)),
        agent_id=UUID(str(agent_id)) if agent_id else None,
        model=model,
        endpoint=endpoint,
        stream=stream,
        status=status,
        prompt_tokens=int(prompt_tokens),
        completion_tokens=int(completion_tokens),
        ttft_ms=None if ttft_ms is None else int(ttft_ms),
        duration_ms=int(duration_ms),
        actor=f"key:{key_id}",
        request_id=request_id,
        counts_corrected=bool(counts_corrected),
        counts_estimated=bool(counts_estimated),
    )


def _tally_entry(count: Mapping[str, Any]) -> dict[str, Any]:
    """One (user, key, reason) count of a tally, checked: ids are uuids, the count an int."""
    return {
        "user_id": str(UUID(str(count["user_id"]))),
        "key_id": str(UUID(str(count["key_id"]))),
        "reason": str(count["reason"]),
        "count": int(count["count"]),
    }


class MeteringCommands(Commands):
    """What inference cost, recorded whatever way the request ended."""

    def record_usage(self, **fields: Any) -> UUID:
        """Record how one inference request ended (counts only); idempotent per request id.

        Takes the keyword fields of :func:`usage_record`.
        """
        record = usage_record(**fields)
        self._save_new([record])
        return record.id

    def record_usage_batch(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Record many requests' usage in one transaction; each request id is recorded exactly once.

        A record whose request id is already stored (or repeats in the batch) is skipped, never the
        rest of the batch. Returns how many records were new. A record that is not valid (an unknown
        status) raises :class:`InvalidValue` before anything is saved.
        """
        return self._save_new([usage_record(**fields) for fields in records])

    def record_rejections(
        self,
        *,
        tally_id: str,
        tenant_id: UUID,
        since: datetime,
        until: datetime,
        counts: Sequence[Mapping[str, Any]],
    ) -> UUID:
        """Record how many of a tenant's requests were refused in one interval; idempotent per ``tally_id``."""
        cleaned = [_tally_entry(c) for c in counts]
        if not cleaned or any(c["count"] <= 0 or len(c["reason"]) > 100 for c in cleaned):
            raise InvalidValue("a rejection tally needs positive counts", "counts")
        tally = RejectionTally(
            id=uuid_for_tally(tally_id),
            tenant_id=UUID(str(tenant_id)),
            since=since,
            until=until,
            counts=cleaned,
            actor="system",
            request_id=f"rejections:{tally_id}",
        )
        self._save_new([tally])
        return tally.id

    def _save_new(self, aggregates: list[Aggregate]) -> int:
        """Save the aggregates (new, with deterministic ids) in one transaction, skipping stored ones.

        Their events are taken once and saved as events: a failed save has already taken an
        aggregate's pending events, so a retry must not ask the aggregate again.
        """
        fresh: dict[UUID, Any] = {}
        for aggregate in aggregates:
            created = aggregate.collect_events()
            fresh.setdefault(aggregate.id, created[0])  # the first of a request id repeated in the batch
        for _ in range(_DEDUPE_ROUNDS):
            if not fresh:
                return 0
            try:
                self._save_now(*fresh.values())
            except IntegrityError:  # some id is stored already: save the others
                stored = self._stored_ids(list(fresh))
                if not stored:
                    raise  # not a duplicate after all
                fresh = {i: e for i, e in fresh.items() if i not in stored}
                continue
            return len(fresh)
        raise IntegrityError("usage batch kept conflicting with concurrent writers")

    def _stored_ids(self, ids: list[UUID]) -> set[UUID]:
        """Which of these aggregate ids already have events (one query where the recorder can)."""
        return {i for i, events in self._streams(ids).items() if events}
