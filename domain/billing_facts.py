"""What a Stripe event tells us, in our own terms: the domain never sees Stripe's objects (api/ translates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class InvoiceFact:
    """An invoice was issued, paid, failed or became overdue (``change``)."""

    change: str  # issued, paid, failed, overdue
    stripe_invoice_id: str
    number: str
    reason: str
    net_cents: int
    currency: str
    issued_at: datetime
    due_at: datetime
    at: datetime  # when the change happened (the Stripe event's time)
    amount_paid_cents: int = 0
    payment_id: str = ""
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class SubscriptionFact:
    """A Stripe subscription started, moved to a new cycle, was set to cancel, or ended (``change``)."""

    change: str  # created, updated, deleted
    stripe_subscription_id: str
    plan: str
    interval: str
    period_start: datetime
    period_end: datetime
    cancel_at_period_end: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class PaymentFact:
    """A one-off payment (a credit purchase) succeeded."""

    stripe_payment_id: str
    amount_cents: int
    currency: str
    purpose: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RefundFact:
    """Money of a payment was given back; ``refunded_cents`` is the payment's refunded total so far."""

    stripe_payment_id: str
    charge_id: str
    payment_amount_cents: int
    refunded_cents: int
    currency: str
    purpose: str
    at: datetime


Fact = InvoiceFact | SubscriptionFact | PaymentFact | RefundFact


@dataclass(frozen=True, slots=True)
class StripeDelivery:
    """One Stripe event: its id (for dedupe), type, whose it is, and the fact (None: a type we ignore)."""

    event_id: str
    type: str
    customer_id: str
    tenant_id: UUID | None  # from the object's metadata when we set it, else found by customer id
    fact: Fact | None
