"""One usage record per inference request: counts only, never content."""

from __future__ import annotations

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
    ) -> None:
        self.tenant_id = tenant_id
        self.status = status
