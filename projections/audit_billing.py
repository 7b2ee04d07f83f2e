"""What billing's events say in the audit log: amounts, plans, numbers and countries only, never who."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain.billing_account import BillingAccount, StripeCustomer
from domain.invoice import Invoice
from domain.payment import Payment
from domain.retention import BillingRetention
from domain.stripe_event import StripeEvent
from domain.subscription import Subscription

Describe = Callable[[Any], tuple[str, str, UUID, str]]


def _money(cents: int, currency: str = "") -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency.upper()}".strip()


def _on(subject: str, kind: str, summary: Callable[[Any], str]) -> Describe:
    return lambda e: (f"billing.{subject}_{kind}", subject, e.originator_id, summary(e))


def _account(e: Any) -> str:
    return f"billing details set (country {e.country}{', business with VAT id' if e.vat_id is not None else ''})"


def _term(e: Any) -> str:
    return f"{e.plan} ({e.interval}ly) until {e.period_end:%Y-%m-%d}"


def _upgrade(e: Any) -> str:
    return f"{e.from_plan} to {e.plan}, {_money(e.charged_cents, e.currency)} charged now"


def _late_fee(e: Any) -> str:
    return f"late fees +{_money(e.fee_cents)} (total {_money(e.total_cents)})"


def _issued(e: Any) -> str:
    return f"invoice {e.number}: {_money(e.net_cents + e.vat_cents, e.currency)} incl. VAT"


BILLING_DESCRIBE: dict[type, Describe] = {
    BillingAccount.Opened: _on("account", "opened", _account),
    BillingAccount.Updated: _on("account", "updated", _account),
    BillingAccount.StripeCustomerLinked: _on(
        "account", "customer_linked", lambda e: f"Stripe customer {e.customer_id}"
    ),
    BillingAccount.ContactCarriedForward: _on(
        "account", "contact_carried_forward", lambda e: f"billing contact sealed for fiscal year {e.fiscal_year}"
    ),
    BillingRetention.Ended: _on(
        "retention", "ended", lambda e: f"fiscal year {e.fiscal_year} past its retention: billing contact erased"
    ),
    StripeCustomer.Linked: _on("account", "customer_mapped", lambda e: f"Stripe customer {e.customer_id}"),
    StripeEvent.Received: _on("stripe", "event", lambda e: f"Stripe {e.type} {e.event_id}: {e.outcome}"),
    Subscription.Started: _on("subscription", "started", _term),
    Subscription.Restarted: _on("subscription", "started", _term),
    Subscription.Upgraded: _on("subscription", "upgraded", _upgrade),
    Subscription.ChangeScheduled: _on(
        "subscription", "change_scheduled", lambda e: f"to {e.plan} ({e.interval}ly) on {e.effective_at:%Y-%m-%d}"
    ),
    Subscription.CancellationScheduled: _on(
        "subscription", "cancellation_scheduled", lambda e: f"ends {e.effective_at:%Y-%m-%d}"
    ),
    Subscription.Renewed: _on("subscription", "renewed", _term),
    Subscription.Ended: _on("subscription", "ended", lambda e: "subscription ended"),
    Invoice.Issued: _on("invoice", "issued", _issued),
    Invoice.Paid: _on("invoice", "paid", lambda e: f"paid {_money(e.amount_cents)}"),
    Invoice.PaymentFailed: _on("invoice", "payment_failed", lambda e: f"payment attempt {e.attempt} failed"),
    Invoice.Overdue: _on("invoice", "overdue", lambda e: f"overdue since {e.since:%Y-%m-%d}"),
    Invoice.LateFeeAccrued: _on("invoice", "late_fee", _late_fee),
    Payment.Recorded: _on("payment", "recorded", lambda e: f"{e.purpose}: {_money(e.amount_cents, e.currency)}"),
    Payment.Succeeded: _on("payment", "succeeded", lambda e: f"received {_money(e.amount_cents)}"),
    Payment.Refunded: _on("payment", "refunded", lambda e: f"refunded {_money(e.amount_cents)}"),
}
