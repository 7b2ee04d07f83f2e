"""Legal documents: publishing a version with its notice, and each tenant's acceptance or rejection (terms §18)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.commands.base import Commands
from domain.context import Ctx
from domain.errors import Conflict, InvalidState, InvalidValue, NotFound
from domain.terms import How, Publication, TermsAnswer
from legal.documents import LegalDocument, by_ref, in_force
from policies.terms import NoticeTooShort, check_notice, in_notice_period, prorata_refund_cents


@dataclass(frozen=True, slots=True)
class PrepaidPeriod:
    """What a tenant paid in advance for the current period (the billing side knows; none by default)."""

    paid_cents: int
    currency: str
    period_start: datetime
    period_end: datetime


class PrepaidFees(Protocol):
    """The tenant's prepaid period, or None when it prepaid nothing (no plan, or billing off)."""

    def __call__(self, tenant_id: UUID) -> PrepaidPeriod | None:
        """The prepaid period in force for the tenant."""
        ...


def no_prepaid_fees(tenant_id: UUID) -> PrepaidPeriod | None:
    """The default until billing provides the real figures: nothing prepaid, nothing to refund."""
    return None


class TermsCommands(Commands):
    """Publish document versions; record each tenant's acceptance or rejection."""

    prepaid_fees: PrepaidFees = staticmethod(no_prepaid_fees)  # type: ignore[assignment]

    def terms_in_force(self, now: datetime | None = None) -> LegalDocument:
        """The version of the terms in force now (the bundled terms always have one)."""
        current = in_force(self.documents(), "terms", now or self.clock())
        if current is None:
            raise InvalidState("no terms are in force yet")
        return current

    def publish_document(self, ctx: Ctx, ref: str) -> LegalDocument:
        """Operator action: publish ``ref`` now; a material change needs 30 days' notice from now."""
        document = self._document(ref)
        now = self.clock()
        if document.version > 1:
            try:
                check_notice(now, document.effective_at, document.material)
            except NoticeTooShort as short:
                raise InvalidValue(str(short), "effective_at") from None
        publication = Publication(
            document=document.kind, version=document.version, sha256=document.sha256, published_at=now,
            effective_at=document.effective_at, material=document.material, actor=ctx.actor,
            request_id=ctx.request_id,
        )  # fmt: skip
        self._save(publication, conflict=Conflict(f"{ref} is already published"))
        return document

    def accept_terms(self, ctx: Ctx, ref: str, how: How = "explicit") -> None:
        """The tenant accepts a version: explicitly (an admin), or by continued use after its effective date."""
        document = self._document(ref)
        now = self.clock()
        if how == "continued_use" and now < document.effective_at:
            raise InvalidState("use before the effective date is not acceptance")
        if document.effective_at > now and not self._published(document):
            raise NotFound(f"{ref} is not published")
        answer = TermsAnswer.accept(
            ctx.tenant_id, document.kind, document.version, document.sha256, how, ctx.actor, ctx.request_id
        )
        self._save(answer, conflict=Conflict(f"the tenant has already answered {ref}"))

    def reject_terms(self, ctx: Ctx, ref: str) -> int:
        """Reject a version during its notice period; returns the refund due (terms §18), recorded with it."""
        self._tenant(ctx.tenant_id).check_active()
        document = self._document(ref)
        now = self.clock()
        publication = self._get(Publication.create_id(document.kind, document.version))
        if not isinstance(publication, Publication) or not document.material:
            raise InvalidState(f"{ref} is not a published material change")
        published_at = publication.published_at
        if not in_notice_period(published_at, document.effective_at, now):
            raise InvalidState(
                f"{ref} can be rejected only before it takes effect on {document.effective_at.isoformat()}"
            )
        prepaid = self.prepaid_fees(ctx.tenant_id)
        refund, currency = 0, "EUR"
        if prepaid is not None:
            refund = prorata_refund_cents(prepaid.paid_cents, prepaid.period_start, prepaid.period_end, now)
            currency = prepaid.currency
        answer = TermsAnswer.reject(
            ctx.tenant_id, document.kind, document.version, document.sha256, refund, currency, ctx.actor,
            ctx.request_id,
        )  # fmt: skip
        self._save(answer, conflict=Conflict(f"the tenant has already answered {ref}"))
        return refund

    def _document(self, ref: str) -> LegalDocument:
        document = by_ref(self.documents(), ref)
        if document is None:
            raise NotFound(f"no legal document {ref!r}")
        return document

    def _published(self, document: LegalDocument) -> bool:
        return self._get(Publication.create_id(document.kind, document.version)) is not None
