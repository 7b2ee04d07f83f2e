"""Enforcement as the API reads it: operator tokens (hashes only), suspensions and their appeals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.appeal import Appeal
from domain.operator import Operator
from domain.suspension import Suspension
from projections.log import topics_of


@dataclass(slots=True)
class OperatorTokenView:
    """An operator token: who holds it and its hash, for authentication."""

    id: UUID
    operator_id: UUID
    prefix: str
    secret_hash: str
    issued_at: datetime
    revoked_at: datetime | None = None


@dataclass(slots=True)
class SuspensionView:
    """One operator action and where it stands."""

    id: UUID
    tenant_id: UUID
    subject_kind: str
    subject_id: UUID
    reason_code: str
    imposed_at: datetime
    appeal_until: datetime
    actor: str
    lifted_at: datetime | None = None
    window_closed_at: datetime | None = None
    appeal_id: UUID | None = None


@dataclass(slots=True)
class AppealView:
    """An appeal and its decision."""

    id: UUID
    tenant_id: UUID
    suspension_id: UUID
    filed_at: datetime
    actor: str
    outcome: str | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None


@dataclass
class Enforcement:
    """In-memory read model kept current by the projection runner (as the directory is)."""

    tokens_by_hash: dict[str, OperatorTokenView] = field(default_factory=dict)
    tokens: dict[UUID, OperatorTokenView] = field(default_factory=dict)
    suspensions: dict[UUID, SuspensionView] = field(default_factory=dict)
    appeals: dict[UUID, AppealView] = field(default_factory=dict)
    topics: ClassVar[tuple[str, ...]]

    def process(self, event: Any) -> None:
        """Apply one domain event."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def tenant_suspensions(self, tenant_id: UUID) -> list[SuspensionView]:
        """A tenant's suspensions, oldest first."""
        return [s for s in list(self.suspensions.values()) if s.tenant_id == tenant_id]

    def tenant_appeals(self, tenant_id: UUID) -> list[AppealView]:
        """A tenant's appeals, oldest first."""
        return [a for a in list(self.appeals.values()) if a.tenant_id == tenant_id]

    def all_appeals(self) -> list[AppealView]:
        """Every appeal, oldest first (the operator's queue)."""
        return list(self.appeals.values())

    def windows_open(self) -> list[SuspensionView]:
        """Suspensions whose appeal window is not recorded as closed (the sweeper's input)."""
        return [s for s in list(self.suspensions.values()) if s.window_closed_at is None]


def _token_issued(m: Enforcement, e: Operator.TokenIssued) -> None:
    token = OperatorTokenView(e.token_id, e.originator_id, e.prefix, e.secret_hash, e.timestamp)
    m.tokens[token.id] = token
    m.tokens_by_hash[token.secret_hash] = token


def _token_revoked(m: Enforcement, e: Operator.TokenRevoked) -> None:
    m.tokens[e.token_id].revoked_at = e.timestamp


def _imposed(m: Enforcement, e: Suspension.Imposed) -> None:
    m.suspensions[e.originator_id] = SuspensionView(
        e.originator_id, e.tenant_id, e.subject_kind, e.subject_id, e.reason_code, e.imposed_at, e.appeal_until,
        e.actor,
    )  # fmt: skip


def _lifted(m: Enforcement, e: Suspension.Lifted) -> None:
    m.suspensions[e.originator_id].lifted_at = e.timestamp


def _window_closed(m: Enforcement, e: Suspension.AppealWindowClosed) -> None:
    m.suspensions[e.originator_id].window_closed_at = e.timestamp


def _filed(m: Enforcement, e: Appeal.Filed) -> None:
    m.appeals[e.originator_id] = AppealView(e.originator_id, e.tenant_id, e.suspension_id, e.timestamp, e.actor)
    if (case := m.suspensions.get(e.suspension_id)) is not None:
        case.appeal_id = e.originator_id


def _decided(m: Enforcement, e: Appeal.Decided) -> None:
    appeal = m.appeals[e.originator_id]
    appeal.outcome, appeal.decided_at, appeal.decided_by = e.outcome, e.timestamp, e.actor


_HANDLERS: dict[type, Callable[[Enforcement, Any], None]] = {
    Operator.TokenIssued: _token_issued,
    Operator.TokenRevoked: _token_revoked,
    Suspension.Imposed: _imposed,
    Suspension.Lifted: _lifted,
    Suspension.AppealWindowClosed: _window_closed,
    Appeal.Filed: _filed,
    Appeal.Decided: _decided,
}
Enforcement.topics = topics_of(_HANDLERS)
