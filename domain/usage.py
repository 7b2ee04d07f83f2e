"""One usage record per inference request: counts only, never content."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

USAGE_STATUSES = frozenset({"ok", "error", "cancelled", "timeout", "rejected"})


class UsageRecord(Aggregate):
    """How one request ended and what it cost in tokens and time."""

    class Recorded(Aggregate.Created):
        tenant_id: UUID
        user_id: UUID
        key_id: UUID
        agent_id: UUID | None
        model: str
        endpoint: str
        stream: bool
        status: str
        prompt_tokens: int
        completion_tokens: int
        ttft_ms: int | None
        duration_ms: int
        actor: str
        request_id: str
        # Added for issue 13 (optional, so events stored before it read as False): the proxy
        # corrected the agent's token counts (out of range, or below what it relayed).
        counts_corrected: bool = False
        # Added for issue 18 (optional, old events read False): the agent estimated the counts because
        # its engine reported none (an OpenAI-compatible upstream without usage).
        counts_estimated: bool = False

    @event(Recorded)
    def __init__(
        self,
        id: UUID,
        tenant_id: UUID,
        user_id: UUID,
        key_id: UUID,
        agent_id: UUID | None,
        model: str,
        endpoint: str,
        stream: bool,
        status: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_ms: int | None,
        duration_ms: int,
        actor: str,
        request_id: str,
        counts_corrected: bool = False,
        counts_estimated: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.status = status
        self.counts_corrected = counts_corrected
        self.counts_estimated = counts_estimated


class RejectionTally(Aggregate):
    """How many requests of one tenant an API process refused (403/429) in one interval, by key and reason.

    Refused requests are counted in memory and recorded as one tally per tenant per interval (issue
    13), so a flood of them writes a bounded number of events instead of one each.
    """

    class Counted(Aggregate.Created):
        tenant_id: UUID
        since: datetime
        until: datetime
        # One entry per (user, key, reason): {"user_id": str, "key_id": str, "reason": str, "count": int}.
        counts: list[dict[str, Any]]
        actor: str
        request_id: str

    @event(Counted)
    def __init__(
        self,
        id: UUID,
        tenant_id: UUID,
        since: datetime,
        until: datetime,
        counts: list[dict[str, Any]],
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.total = sum(int(c["count"]) for c in counts)
