"""An invoice as billed through Stripe: issued, paid or failed, overdue, and late fees accruing on it.

Its id is the uuid5 of Stripe's invoice id, so an invoice seen first through any webhook is the same
aggregate. Amounts (net, VAT, late fees) are integer cents in clear: billing facts kept for the
retention period; nothing personal is written here (the billed party's details live, sealed, on
the billing account). The number is Stripe's (sequential per account prefix).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.ids import NAMESPACE
from policies.late_fees import RECOVERY_INDEMNITY_CENTS, late_fee_cents


def invoice_id(stripe_invoice_id: str) -> UUID:
    """Our id of a Stripe invoice."""
    return uuid5(NAMESPACE, f"invoice:{stripe_invoice_id}")


class Invoice(Aggregate):
    """Open until paid; late from its due date, when the late fees of L441-10 start to accrue."""

    class Issued(Aggregate.Created):
        tenant_id: UUID
        stripe_invoice_id: str
        number: str
        reason: str  # subscription_create, subscription_cycle, subscription_update, manual, ...
        net_cents: int
        vat_cents: int
        vat_rate_bp: int
        vat_country: str
        reverse_charge: bool
        mention: str
        currency: str
        issued_at: datetime
        due_at: datetime
        actor: str
        request_id: str

    class Paid(Aggregate.Event):
        tenant_id: UUID
        paid_at: datetime
        amount_cents: int
        payment_id: str
        actor: str
        request_id: str

    class PaymentFailed(Aggregate.Event):
        tenant_id: UUID
        failed_at: datetime
        attempt: int
        actor: str
        request_id: str

    class Overdue(Aggregate.Event):
        tenant_id: UUID
        since: datetime
        actor: str
        request_id: str

    class LateFeeAccrued(Aggregate.Event):
        """``fee_cents`` more is owed; ``total_cents`` is everything owed for lateness as of ``as_of``."""

        tenant_id: UUID
        fee_cents: int
        total_cents: int
        indemnity_cents: int
        interest_cents: int
        as_of: datetime
        actor: str
        request_id: str

    @staticmethod
    def create_id(stripe_invoice_id: str, **_: object) -> UUID:
        """See :func:`invoice_id`."""
        return invoice_id(stripe_invoice_id)

    @event(Issued)
    def __init__(
        self, tenant_id: UUID, stripe_invoice_id: str, number: str, reason: str, net_cents: int, vat_cents: int,
        vat_rate_bp: int, vat_country: str, reverse_charge: bool, mention: str, currency: str, issued_at: datetime,
        due_at: datetime, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self.tenant_id = tenant_id
        self.net_cents, self.vat_cents, self.due_at = net_cents, vat_cents, due_at
        self.paid = False
        self.overdue = False
        self.failed_attempts = 0
        self.late_fees_cents = 0

    @property
    def total_cents(self) -> int:
        """What the invoice asks for: net plus VAT."""
        return self.net_cents + self.vat_cents

    def pay(self, ctx: Ctx, at: datetime, amount_cents: int, payment_id: str) -> bool:
        """Mark paid (False when it already was: a paid invoice stays paid whatever arrives later)."""
        if self.paid:
            return False
        self._paid(
            tenant_id=self.tenant_id, paid_at=at, amount_cents=amount_cents, payment_id=payment_id,
            actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip
        return True

    def fail(self, ctx: Ctx, at: datetime, attempt: int) -> bool:
        """Record a failed attempt (ignored once paid, or when this attempt is already known)."""
        if self.paid or attempt <= self.failed_attempts:
            return False
        self._failed(
            tenant_id=self.tenant_id, failed_at=at, attempt=attempt, actor=ctx.actor, request_id=ctx.request_id
        )
        return True

    def mark_overdue(self, ctx: Ctx, now: datetime) -> bool:
        """Late once the due date has passed unpaid (once)."""
        if self.paid or self.overdue or now <= self.due_at:
            return False
        self._overdue(tenant_id=self.tenant_id, since=self.due_at, actor=ctx.actor, request_id=ctx.request_id)
        return True

    def accrue_late_fees(self, ctx: Ctx, now: datetime) -> bool:
        """Bring the late fees up to ``now`` (whole days of interest plus the indemnity); idempotent."""
        if self.paid or not self.overdue:
            return False
        total = late_fee_cents(self.total_cents, self.due_at, now)
        if total <= self.late_fees_cents:
            return False
        self._late_fee(
            tenant_id=self.tenant_id, fee_cents=total - self.late_fees_cents, total_cents=total,
            indemnity_cents=RECOVERY_INDEMNITY_CENTS, interest_cents=total - RECOVERY_INDEMNITY_CENTS, as_of=now,
            actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip
        return True

    @event(Paid)
    def _paid(
        self, tenant_id: UUID, paid_at: datetime, amount_cents: int, payment_id: str, actor: str, request_id: str
    ) -> None:
        self.paid = True

    @event(PaymentFailed)
    def _failed(self, tenant_id: UUID, failed_at: datetime, attempt: int, actor: str, request_id: str) -> None:
        self.failed_attempts = attempt

    @event(Overdue)
    def _overdue(self, tenant_id: UUID, since: datetime, actor: str, request_id: str) -> None:
        self.overdue = True

    @event(LateFeeAccrued)
    def _late_fee(
        self, tenant_id: UUID, fee_cents: int, total_cents: int, indemnity_cents: int, interest_cents: int,
        as_of: datetime, actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self.late_fees_cents = total_cents
