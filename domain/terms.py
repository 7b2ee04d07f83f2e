"""Our legal documents as the tenants see them: each version's publication, and each tenant's answer to it.

Terms §18: a material change is announced at least 30 days before it takes effect; using the service
after that date is acceptance; a customer who rejects it during the notice period may leave without
penalty and is refunded the prepaid fees for the time after leaving.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.ids import NAMESPACE

How = Literal["explicit", "continued_use"]


class Publication(Aggregate):
    """One version of one document, published once by the operator with its effective date."""

    class Published(Aggregate.Created):
        document: str  # terms, privacy or dpa
        version: int
        sha256: str  # of the published file: the exact text
        published_at: datetime
        effective_at: datetime
        material: bool
        actor: str
        request_id: str

    @staticmethod
    def create_id(document: str, version: int, **_: Any) -> UUID:
        """A version is published once: a second publication conflicts on version 1."""
        return uuid5(NAMESPACE, f"publication:{document}-{version}")

    @event(Published)
    def __init__(
        self,
        document: str,
        version: int,
        sha256: str,
        published_at: datetime,
        effective_at: datetime,
        material: bool,
        actor: str,
        request_id: str,
    ) -> None:
        self.document = document
        self.version = version
        self.published_at = published_at  # the application's clock (the event's timestamp is the wall clock's)
        self.effective_at = effective_at


class TermsAnswer(Aggregate):
    """A tenant's answer to one version of one document: accepted (explicitly or by use) or rejected. Final."""

    class Accepted(Aggregate.Created):
        tenant_id: UUID
        document: str
        version: int
        sha256: str
        how: str  # "explicit" (signup, or an admin ahead of the date) or "continued_use" (terms §18)
        actor: str
        request_id: str

    class Rejected(Aggregate.Created):
        """Rejected during the notice period: the tenant leaves without penalty (terms §18)."""

        tenant_id: UUID
        document: str
        version: int
        sha256: str
        refund_due_cents: int  # prepaid fees for the time after leaving (policies.terms.prorata_refund_cents)
        currency: str
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, document: str, version: int, **_: Any) -> UUID:
        """One answer per tenant and version: a second answer conflicts on version 1."""
        return uuid5(NAMESPACE, f"terms-answer:{tenant_id}:{document}-{version}")

    @classmethod
    def accept(
        cls, tenant_id: UUID, document: str, version: int, sha256: str, how: How, actor: str, request_id: str
    ) -> TermsAnswer:
        """The tenant accepts this version."""
        answer_id = cls.create_id(tenant_id, document, version)
        return cls._create(
            cls.Accepted, id=answer_id, tenant_id=tenant_id, document=document, version=version, sha256=sha256,
            how=how, actor=actor, request_id=request_id,
        )  # fmt: skip

    @classmethod
    def reject(
        cls,
        tenant_id: UUID,
        document: str,
        version: int,
        sha256: str,
        refund_due_cents: int,
        currency: str,
        actor: str,
        request_id: str,
    ) -> TermsAnswer:
        """The tenant rejects this version during its notice period."""
        answer_id = cls.create_id(tenant_id, document, version)
        return cls._create(
            cls.Rejected, id=answer_id, tenant_id=tenant_id, document=document, version=version, sha256=sha256,
            refund_due_cents=refund_due_cents, currency=currency, actor=actor, request_id=request_id,
        )  # fmt: skip
