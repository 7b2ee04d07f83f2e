"""A suspension: one operator action against a tenant, a user or an API key, open to appeal for 30 days."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.sealing import PersonalData
from policies.appeals import appeal_deadline


class ReasonCode(StrEnum):
    """Why the operator acted (terms §8: security risk, abuse, unpaid invoices; shared credentials)."""

    SECURITY_RISK = "security_risk"
    ABUSE = "abuse"
    SHARED_CREDENTIALS = "shared_credentials"
    UNPAID_INVOICE = "unpaid_invoice"
    OTHER = "other"


class SubjectKind(StrEnum):
    """What a suspension stops."""

    TENANT = "tenant"
    USER = "user"
    API_KEY = "api_key"


def check_reason_code(code: str) -> ReasonCode:
    """A known reason code, or :class:`InvalidValue` naming the field."""
    try:
        return ReasonCode(code)
    except ValueError:
        raise InvalidValue(f"unknown reason_code '{code}'; one of: {', '.join(ReasonCode)}", "reason_code") from None


def check_subject_kind(kind: str) -> SubjectKind:
    """A known subject kind, or :class:`InvalidValue`."""
    try:
        return SubjectKind(kind)
    except ValueError:
        raise InvalidValue(f"unknown subject kind '{kind}'; one of: {', '.join(SubjectKind)}", "kind") from None


class Suspension(Aggregate):
    """The action itself: who was stopped, why, until when it may be appealed, and how it ended."""

    class Imposed(Aggregate.Created):
        tenant_id: UUID
        subject_kind: str
        subject_id: UUID
        reason_code: str
        summary: PersonalData  # the operator's summary may name people: sealed
        imposed_at: datetime
        appeal_until: datetime
        actor: str
        request_id: str

    class Lifted(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str

    class AppealWindowClosed(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str

    @event(Imposed)
    def __init__(
        self,
        tenant_id: UUID,
        subject_kind: str,
        subject_id: UUID,
        reason_code: str,
        summary: PersonalData,
        imposed_at: datetime,
        appeal_until: datetime,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.subject_kind = subject_kind
        self.subject_id = subject_id
        self.reason_code = reason_code
        self.imposed_at = imposed_at
        self.appeal_until = appeal_until
        self.lifted = False
        self.window_closed = False

    @classmethod
    def impose(
        cls, ctx: Ctx, kind: SubjectKind, subject_id: UUID, code: ReasonCode, summary: PersonalData, now: datetime
    ) -> Suspension:
        """A new action taken at ``now``; appealable until the policy's deadline."""
        return cls(
            tenant_id=ctx.tenant_id,
            subject_kind=kind.value,
            subject_id=subject_id,
            reason_code=code.value,
            summary=summary,
            imposed_at=now,
            appeal_until=appeal_deadline(now),
            actor=ctx.actor,
            request_id=ctx.request_id,
        )

    def lift(self, ctx: Ctx) -> None:
        """The subject was reinstated (by the operator, or by an appeal)."""
        if self.lifted:
            raise InvalidState("the suspension was already lifted")
        self._lifted(tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id)

    def close_window(self, ctx: Ctx, now: datetime) -> bool:
        """Record that the appeal window has closed; False (no event) before the deadline or when recorded."""
        if self.window_closed or now < self.appeal_until:
            return False
        self._window_closed(tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id)
        return True

    @event(Lifted)
    def _lifted(self, tenant_id: UUID, actor: str, request_id: str) -> None:
        self.lifted = True

    @event(AppealWindowClosed)
    def _window_closed(self, tenant_id: UUID, actor: str, request_id: str) -> None:
        self.window_closed = True
