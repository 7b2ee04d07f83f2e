"""A compliance officer's or auditor's export of the audit log: itself part of the audit trail."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.ids import NAMESPACE

EXPORT_FORMATS = frozenset({"csv", "jsonl"})
MAX_FILTER_CHARS = 2000


class AuditExport(Aggregate):
    """Who exported which rows of the audit log, in what format (never the rows themselves)."""

    class Made(Aggregate.Created):
        tenant_id: UUID
        format: str
        filters: str  # the query as given: ids, action names and times only (no personal data)
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, request_id: str, **_: Any) -> UUID:
        """One export per request: a retried request records it once."""
        return uuid5(NAMESPACE, f"audit-export:{tenant_id}:{request_id}")

    @event(Made)
    def __init__(self, tenant_id: UUID, format: str, filters: str, actor: str, request_id: str) -> None:
        self.tenant_id = tenant_id
