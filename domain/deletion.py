"""A request to erase a data subject (a user, or a terminated tenant's own data): restorable until due.

``Deletion.Requested`` starts the window (``policies.lifecycle``); until its due instant the
requester (or the operator) may cancel it (``Deletion.Cancelled``) and nothing was touched, so the
account comes back exactly as it was. At the due instant the sweeper erases the subject:
its key is destroyed (crypto-shredding) and ``Deletion.SubjectErased`` is recorded, with ids only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState
from domain.ids import NAMESPACE
from policies.lifecycle import is_due, restorable


class Cause(StrEnum):
    """Why a deletion was requested."""

    USER = "user"  # the person asked for it
    ADMIN = "admin"  # a tenant admin asked for one of the tenant's users
    CANCELLATION = "cancellation"  # the contract (subscription) was cancelled
    TERMINATION = "termination"  # the tenant was terminated: every member and the tenant itself


class SubjectKind(StrEnum):
    """Whose data: a user's, or the tenant's own (agent names, reasons sealed with the tenant's key)."""

    USER = "user"
    TENANT = "tenant"


class NotDue(InvalidState):
    """The deletion's window has not ended yet."""


class Deletion(Aggregate):
    """One deletion request of one subject; a subject has at most one pending at a time."""

    class Requested(Aggregate.Created):
        tenant_id: UUID
        subject_id: UUID
        sequence: int  # the subject's n-th request (0, 1, ...): part of the id
        subject_kind: str
        cause: str
        requested_at: datetime
        due_at: datetime
        actor: str
        request_id: str

    class Cancelled(Aggregate.Event):
        tenant_id: UUID
        subject_id: UUID
        actor: str
        request_id: str

    class SubjectErased(Aggregate.Event):
        """The subject's key is destroyed: every value sealed with it now reads ``<erased>``."""

        tenant_id: UUID
        subject_id: UUID
        subject_kind: str
        erased_at: datetime
        actor: str
        request_id: str

    @staticmethod
    def create_id(subject_id: UUID, sequence: int, **_: Any) -> UUID:
        """The subject's ``sequence``-th request: two requests racing conflict on the same id."""
        return uuid5(NAMESPACE, f"deletion:{subject_id}:{sequence}")

    @event(Requested)
    def __init__(
        self,
        subject_id: UUID,
        sequence: int,
        tenant_id: UUID,
        subject_kind: str,
        cause: str,
        requested_at: datetime,
        due_at: datetime,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.subject_id = subject_id
        self.subject_kind = subject_kind
        self.cause = cause
        self.requested_at = requested_at
        self.due_at = due_at
        self.status = "pending"

    def check_pending(self) -> None:
        """Only a pending request can be cancelled or carried out."""
        if self.status != "pending":
            raise InvalidState(f"the deletion was already {self.status}")

    def cancel(self, ctx: Ctx, now: datetime) -> None:
        """Restore the account: possible until the due instant, not a second after."""
        self.check_pending()
        if not restorable(self.due_at, now):
            raise InvalidState("the deletion is due: the account can no longer be restored")
        self._cancelled(tenant_id=self.tenant_id, subject_id=self.subject_id, actor=ctx.actor,
                        request_id=ctx.request_id)  # fmt: skip

    def erase(self, ctx: Ctx, now: datetime) -> None:
        """Record the erasure (the key is destroyed by the command); never before the due instant."""
        self.check_pending()
        if not is_due(self.due_at, now):
            raise NotDue("the deletion is not due yet")
        self._erased(tenant_id=self.tenant_id, subject_id=self.subject_id, subject_kind=self.subject_kind,
                     erased_at=now, actor=ctx.actor, request_id=ctx.request_id)  # fmt: skip

    @event(Cancelled)
    def _cancelled(self, tenant_id: UUID, subject_id: UUID, actor: str, request_id: str) -> None:
        self.status = "cancelled"

    @event(SubjectErased)
    def _erased(
        self, tenant_id: UUID, subject_id: UUID, subject_kind: str, erased_at: datetime, actor: str, request_id: str
    ) -> None:
        self.status = "erased"
