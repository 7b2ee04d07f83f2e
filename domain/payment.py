"""A one-off payment through Stripe (a credit purchase) and its refunds; amounts in clear, nothing personal.

Its id is the uuid5 of Stripe's payment intent id. A refund may arrive before the success it
refunds (webhooks come in any order): either event creates the payment from what it carries.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidValue
from domain.ids import NAMESPACE


def payment_id(stripe_payment_id: str) -> UUID:
    """Our id of a Stripe payment intent."""
    return uuid5(NAMESPACE, f"payment:{stripe_payment_id}")


class Payment(Aggregate):
    """Money received (``purpose`` says what for: "credits") and what was given back."""

    class Recorded(Aggregate.Created):
        tenant_id: UUID
        stripe_payment_id: str
        amount_cents: int
        currency: str
        purpose: str
        actor: str
        request_id: str

    class Succeeded(Aggregate.Event):
        tenant_id: UUID
        amount_cents: int
        succeeded_at: datetime
        actor: str
        request_id: str

    class Refunded(Aggregate.Event):
        tenant_id: UUID
        refund_id: str
        amount_cents: int
        refunded_at: datetime
        actor: str
        request_id: str

    @staticmethod
    def create_id(stripe_payment_id: str, **_: object) -> UUID:
        """See :func:`payment_id`."""
        return payment_id(stripe_payment_id)

    @event(Recorded)
    def __init__(
        self, tenant_id: UUID, stripe_payment_id: str, amount_cents: int, currency: str, purpose: str, actor: str,
        request_id: str,
    ) -> None:  # fmt: skip
        if amount_cents <= 0:
            raise InvalidValue("a payment's amount must be positive", "amount_cents")
        self.tenant_id = tenant_id
        self.amount_cents = amount_cents
        self.succeeded = False
        self.refunds: dict[str, int] = {}

    @property
    def refunded_cents(self) -> int:
        """Everything given back so far."""
        return sum(self.refunds.values())

    def succeed(self, ctx: Ctx, at: datetime) -> bool:
        """The money arrived (once)."""
        if self.succeeded:
            return False
        self._succeeded(
            tenant_id=self.tenant_id, amount_cents=self.amount_cents, succeeded_at=at, actor=ctx.actor,
            request_id=ctx.request_id,
        )  # fmt: skip
        return True

    def refund(self, ctx: Ctx, refund_id: str, amount_cents: int, at: datetime) -> bool:
        """Record a refund (once per refund id, never beyond what was paid)."""
        if refund_id in self.refunds:
            return False
        if amount_cents <= 0 or self.refunded_cents + amount_cents > self.amount_cents:
            raise InvalidValue("a refund must be positive and at most what is left of the payment", "amount_cents")
        self._refunded(
            tenant_id=self.tenant_id, refund_id=refund_id, amount_cents=amount_cents, refunded_at=at,
            actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip
        return True

    @event(Succeeded)
    def _succeeded(
        self, tenant_id: UUID, amount_cents: int, succeeded_at: datetime, actor: str, request_id: str
    ) -> None:
        self.succeeded = True

    @event(Refunded)
    def _refunded(
        self, tenant_id: UUID, refund_id: str, amount_cents: int, refunded_at: datetime, actor: str, request_id: str
    ) -> None:
        self.refunds[refund_id] = amount_cents
