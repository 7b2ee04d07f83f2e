"""Billing as the API reads it: accounts, subscriptions, invoices with their late fees, payments and refunds.

An in-memory read model rebuilt by every process from the event log (like the directory): billing
events are few (a handful per tenant per month). Amounts are integer cents; the billed party's
details read ``<erased>`` once their subject key is destroyed, while amounts, dates and numbers
stay, under the tenant's pseudonymous id, for the retention period. Each invoice keeps the contact in
force when it was issued (sealed under its fiscal year's key), until that year's retention ends
(``BillingRetention.Ended``: every process redacts its copies at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.billing_account import BillingAccount
from domain.invoice import Invoice
from domain.payment import Payment
from domain.retention import BillingRetention
from domain.sealing import ERASED
from domain.subscription import Subscription
from projections.log import topics_of


@dataclass(slots=True)
class AccountRow:
    """Whom the tenant's invoices go to."""

    name: str
    email: str
    address: str
    country: str
    vat_id: str
    customer_id: str = ""
    subject_id: UUID | None = None  # the key sealing this contact (that of a fiscal year)

    def redact(self) -> None:
        """The key is destroyed: the contact is gone."""
        self.name = self.email = self.address = ERASED
        self.vat_id = ERASED if self.vat_id else ""


@dataclass(slots=True)
class SubscriptionRow:
    """The tenant's plan as billed."""

    plan: str
    interval: str
    period_start: datetime
    period_end: datetime
    status: str = "active"  # active, ending, ended
    next_plan: str = ""
    next_interval: str = ""
    upgrades_charged_cents: int = 0


@dataclass(slots=True)
class InvoiceRow:
    """One invoice with its payment state and late fees."""

    id: UUID
    tenant_id: UUID
    stripe_invoice_id: str
    number: str
    reason: str
    net_cents: int
    vat_cents: int
    vat_rate_bp: int
    vat_country: str
    reverse_charge: bool
    mention: str
    currency: str
    issued_at: datetime
    due_at: datetime
    paid_at: datetime | None = None
    overdue: bool = False
    failed_attempts: int = 0
    late_fees_cents: int = 0
    billed_to: AccountRow | None = None  # the contact in force at issue (None: no billing account then)

    @property
    def total_cents(self) -> int:
        """Net plus VAT."""
        return self.net_cents + self.vat_cents

    @property
    def status(self) -> str:
        """paid, overdue or open."""
        return "paid" if self.paid_at else "overdue" if self.overdue else "open"


@dataclass(slots=True)
class PaymentRow:
    """A one-off payment (credits) and what was refunded of it."""

    stripe_payment_id: str
    amount_cents: int
    currency: str
    purpose: str
    succeeded_at: datetime | None = None
    refunded_cents: int = 0
    refunds: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass
class BillingView:
    """Per tenant: account, subscription, invoices (oldest first) and payments."""

    accounts: dict[UUID, AccountRow] = field(default_factory=dict)
    subscriptions: dict[UUID, SubscriptionRow] = field(default_factory=dict)
    invoices: dict[UUID, InvoiceRow] = field(default_factory=dict)
    invoices_by_tenant: dict[UUID, list[InvoiceRow]] = field(default_factory=dict)
    payments: dict[UUID, PaymentRow] = field(default_factory=dict)
    payments_by_tenant: dict[UUID, list[PaymentRow]] = field(default_factory=dict)
    topics: ClassVar[tuple[str, ...]]

    def process(self, event: Any) -> None:
        """Apply one domain event."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def tenant_invoices(self, tenant_id: UUID) -> list[InvoiceRow]:
        """A tenant's invoices, oldest first."""
        return self.invoices_by_tenant.get(tenant_id, [])[:]

    def tenant_payments(self, tenant_id: UUID) -> list[PaymentRow]:
        """A tenant's payments, oldest first."""
        return self.payments_by_tenant.get(tenant_id, [])[:]

    def unpaid_past_due(self, now: datetime) -> list[InvoiceRow]:
        """Every unpaid invoice past its due date (what the late-fee sweep looks at)."""
        return [i for i in list(self.invoices.values()) if i.paid_at is None and i.due_at < now]

    def live_subscriptions(self) -> list[UUID]:
        """Tenants whose subscription has not ended."""
        return [t for t, s in list(self.subscriptions.items()) if s.status != "ended"]

    def subscriptions_due(self, now: datetime) -> list[UUID]:
        """Tenants whose subscription reached its period's end (renewal or end of a cancelled one)."""
        return [t for t, s in list(self.subscriptions.items()) if s.status != "ended" and s.period_end <= now]


def _account(v: BillingView, e: BillingAccount.Opened | BillingAccount.Updated) -> None:
    customer = v.accounts[e.tenant_id].customer_id if e.tenant_id in v.accounts else ""
    vat_id = str(e.vat_id) if e.vat_id is not None else ""
    v.accounts[e.tenant_id] = AccountRow(str(e.name), str(e.email), str(e.address), e.country, vat_id, customer,
                                         e.name.subject_id)  # fmt: skip


def _carried(v: BillingView, e: BillingAccount.ContactCarriedForward) -> None:
    row = v.accounts[e.tenant_id]
    vat_id = str(e.vat_id) if e.vat_id is not None else ""
    v.accounts[e.tenant_id] = replace(row, name=str(e.name), email=str(e.email), address=str(e.address),
                                      vat_id=vat_id, subject_id=e.name.subject_id)  # fmt: skip


def _retention_ended(v: BillingView, e: BillingRetention.Ended) -> None:
    gone = set(e.subject_ids)
    rows = [v.accounts.get(e.tenant_id), *(i.billed_to for i in v.invoices_by_tenant.get(e.tenant_id, []))]
    for row in rows:
        if row is not None and row.subject_id in gone:
            row.redact()


def _customer(v: BillingView, e: BillingAccount.StripeCustomerLinked) -> None:
    v.accounts[e.tenant_id].customer_id = e.customer_id


def _started(v: BillingView, e: Subscription.Started | Subscription.Restarted) -> None:
    v.subscriptions[e.tenant_id] = SubscriptionRow(e.plan, e.interval, e.period_start, e.period_end)


def _upgraded(v: BillingView, e: Subscription.Upgraded) -> None:
    row = v.subscriptions[e.tenant_id]
    row.plan, row.next_plan, row.next_interval = e.plan, "", ""
    row.upgrades_charged_cents += e.charged_cents


def _scheduled(v: BillingView, e: Subscription.ChangeScheduled) -> None:
    row = v.subscriptions[e.tenant_id]
    row.next_plan, row.next_interval = e.plan, e.interval


def _cancelling(v: BillingView, e: Subscription.CancellationScheduled) -> None:
    v.subscriptions[e.tenant_id].status = "ending"


def _renewed(v: BillingView, e: Subscription.Renewed) -> None:
    row = v.subscriptions[e.tenant_id]
    row.plan, row.interval, row.period_start, row.period_end = e.plan, e.interval, e.period_start, e.period_end
    row.next_plan, row.next_interval = "", ""


def _ended(v: BillingView, e: Subscription.Ended) -> None:
    row = v.subscriptions[e.tenant_id]
    row.status, row.next_plan, row.next_interval = "ended", "", ""


def _issued(v: BillingView, e: Invoice.Issued) -> None:
    row = InvoiceRow(
        e.originator_id, e.tenant_id, e.stripe_invoice_id, e.number, e.reason, e.net_cents, e.vat_cents,
        e.vat_rate_bp, e.vat_country, e.reverse_charge, e.mention, e.currency, e.issued_at, e.due_at,
    )  # fmt: skip
    account = v.accounts.get(e.tenant_id)
    row.billed_to = replace(account) if account is not None else None
    v.invoices[row.id] = row
    v.invoices_by_tenant.setdefault(row.tenant_id, []).append(row)


def _paid(v: BillingView, e: Invoice.Paid) -> None:
    v.invoices[e.originator_id].paid_at = e.paid_at


def _failed(v: BillingView, e: Invoice.PaymentFailed) -> None:
    v.invoices[e.originator_id].failed_attempts = e.attempt


def _overdue(v: BillingView, e: Invoice.Overdue) -> None:
    v.invoices[e.originator_id].overdue = True


def _late_fee(v: BillingView, e: Invoice.LateFeeAccrued) -> None:
    v.invoices[e.originator_id].late_fees_cents = e.total_cents


def _payment(v: BillingView, e: Payment.Recorded) -> None:
    row = PaymentRow(e.stripe_payment_id, e.amount_cents, e.currency, e.purpose)
    v.payments[e.originator_id] = row
    v.payments_by_tenant.setdefault(e.tenant_id, []).append(row)


def _succeeded(v: BillingView, e: Payment.Succeeded) -> None:
    v.payments[e.originator_id].succeeded_at = e.succeeded_at


def _refunded(v: BillingView, e: Payment.Refunded) -> None:
    row = v.payments[e.originator_id]
    row.refunded_cents += e.amount_cents
    row.refunds.append((e.refunded_at, e.amount_cents))


_HANDLERS: dict[type, Callable[[BillingView, Any], None]] = {
    BillingAccount.Opened: _account,
    BillingAccount.Updated: _account,
    BillingAccount.StripeCustomerLinked: _customer,
    BillingAccount.ContactCarriedForward: _carried,
    BillingRetention.Ended: _retention_ended,
    Subscription.Started: _started,
    Subscription.Restarted: _started,
    Subscription.Upgraded: _upgraded,
    Subscription.ChangeScheduled: _scheduled,
    Subscription.CancellationScheduled: _cancelling,
    Subscription.Renewed: _renewed,
    Subscription.Ended: _ended,
    Invoice.Issued: _issued,
    Invoice.Paid: _paid,
    Invoice.PaymentFailed: _failed,
    Invoice.Overdue: _overdue,
    Invoice.LateFeeAccrued: _late_fee,
    Payment.Recorded: _payment,
    Payment.Succeeded: _succeeded,
    Payment.Refunded: _refunded,
}
BillingView.topics = topics_of(_HANDLERS)
