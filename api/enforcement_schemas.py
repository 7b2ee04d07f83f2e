"""Bodies of the operator and appeal routes (msgspec structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta

from api.schemas import Body, Reason
from projections.enforcement import AppealView, SuspensionView

Code = Annotated[
    str, Meta(max_length=40, description="security_risk, abuse, shared_credentials, unpaid_invoice or other")
]
Kind = Annotated[str, Meta(max_length=20, description="tenant, user or api_key")]


class SuspendRequest(Body):
    tenant_id: UUID
    kind: Kind
    subject_id: UUID
    reason_code: Code
    summary: Reason  # sealed: it may name people


class ReinstateRequest(Body):
    tenant_id: UUID
    kind: Kind
    subject_id: UUID
    reason: Reason = ""


class AppealRequest(Body):
    suspension_id: UUID
    statement: Reason


class DecisionRequest(Body):
    outcome: Annotated[str, Meta(max_length=20, description="upheld or lifted")]
    reason: Reason = ""


class SuspensionOut(msgspec.Struct):
    id: UUID
    tenant_id: UUID
    kind: str
    subject_id: UUID
    reason_code: str
    imposed_at: datetime
    appeal_until: datetime
    status: str  # active or lifted
    appeal_window: str  # open or closed
    appeal_id: UUID | None


class AppealOut(msgspec.Struct):
    id: UUID
    tenant_id: UUID
    suspension_id: UUID
    filed_at: datetime
    status: str  # open, upheld or lifted
    decided_at: datetime | None


def suspension_out(s: SuspensionView, now: datetime) -> SuspensionOut:
    """A suspension as listed."""
    window = "closed" if s.window_closed_at is not None or now >= s.appeal_until else "open"
    status = "lifted" if s.lifted_at is not None else "active"
    return SuspensionOut(
        s.id, s.tenant_id, s.subject_kind, s.subject_id, s.reason_code, s.imposed_at, s.appeal_until, status,
        window, s.appeal_id,
    )  # fmt: skip


def appeal_out(a: AppealView) -> AppealOut:
    """An appeal as listed."""
    return AppealOut(a.id, a.tenant_id, a.suspension_id, a.filed_at, a.outcome or "open", a.decided_at)
