"""The tenant's billing: account, subscription, invoices (JSON and CSV for an accountant), payments."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from api.billing_schemas import (
    AccountIn,
    AccountOut,
    BilledPartyOut,
    InvoiceOut,
    LedgerEntryOut,
    PaymentOut,
    PlanChangeOut,
    SubscriptionIn,
    SubscriptionOut,
)
from api.billing_service import BillingService
from api.dependencies import CommandService
from api.principal import Principal
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import NotFound
from domain.permissions import Action
from policies import plans
from projections.billing_ledger import BillingLedger
from projections.billing_view import BillingView, InvoiceRow

CSV_COLUMNS = (
    "number", "issued_at", "due_at", "reason", "currency", "net", "vat_rate_percent", "vat", "total",
    "reverse_charge", "vat_mention", "status", "paid_at", "late_fees",
)  # fmt: skip


def money(cents: int) -> str:
    """Cents as an exact decimal string (``-12.05``), never through a float."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def invoice_out(row: InvoiceRow) -> InvoiceOut:
    """An invoice as the API shows it."""
    party = row.billed_to
    billed_to = None if party is None else BilledPartyOut(party.name, party.email, party.address, party.country,
                                                          party.vat_id)  # fmt: skip
    return InvoiceOut(
        str(row.id), row.number, row.reason, row.status, row.currency, row.net_cents, row.vat_rate_bp, row.vat_cents,
        row.total_cents, row.reverse_charge, row.mention, row.issued_at, row.due_at, row.paid_at, row.late_fees_cents,
        billed_to,
    )  # fmt: skip


class BillingController(Controller):
    """Roles billing and admin, with a key holding the ``billing`` scope."""

    path = "/api/v1/billing"
    tags = ["billing"]

    @get("/account", operation_id="getBillingAccount", opt={"action": Action.BILLING_READ}, sync_to_thread=False)
    def account(
        self, principal: NamedDependency[Principal], billing_view: NamedDependency[BillingView],
        commands: NamedDependency[CommandService],
    ) -> AccountOut:  # fmt: skip
        """Whom the tenant's invoices go to, and the VAT that applies."""
        return _account_out(principal, billing_view, commands)

    @put("/account", operation_id="putBillingAccount", opt={"action": Action.BILLING_MANAGE}, sync_to_thread=True)
    def save_account(
        self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService],
        billing_view: NamedDependency[BillingView], principal: NamedDependency[Principal], data: JSONBody[AccountIn],
        billing_service: NamedDependency[BillingService],
    ) -> AccountOut:  # fmt: skip
        """Set the billed party's name, email, address, country and (for a business) EU VAT id; a live
        subscription's next invoices carry the VAT that follows."""
        billing_service.save_account(ctx, name=data.name, email=data.email, address=data.address,
                                     country=data.country, vat_id=data.vat_id)  # fmt: skip
        return _account_out(principal, billing_view, commands)

    @get("/subscription", operation_id="getSubscription", opt={"action": Action.BILLING_READ}, sync_to_thread=False)
    def subscription(
        self, principal: NamedDependency[Principal], billing_view: NamedDependency[BillingView]
    ) -> SubscriptionOut:
        """The tenant's plan, its cycle, and any change scheduled for the cycle's end."""
        row = billing_view.subscriptions.get(principal.tenant_id)
        if row is None:
            raise NotFound("the tenant has no subscription")
        price = plans.plan(row.plan).price_cents(row.interval)  # type: ignore[arg-type]
        return SubscriptionOut(
            row.plan, row.interval, row.status, row.period_start, row.period_end, row.next_plan, row.next_interval,
            price, plans.CURRENCY,
        )  # fmt: skip

    @post("/subscription", operation_id="changeSubscription", opt={"action": Action.BILLING_MANAGE},
          sync_to_thread=True, status_code=200)  # fmt: skip
    def change(
        self, ctx: NamedDependency[Ctx], billing_service: NamedDependency[BillingService],
        data: JSONBody[SubscriptionIn],
    ) -> PlanChangeOut:  # fmt: skip
        """Subscribe; upgrade now (the price difference is charged now); downgrade or cancel at the cycle's end."""
        done = billing_service.change(ctx, data.action, data.plan, data.interval)
        return PlanChangeOut(done.action, done.plan, done.interval, done.charged_cents, done.effective_at,
                             done.vat_cents)  # fmt: skip

    @get("/invoices", operation_id="listInvoices", opt={"action": Action.BILLING_READ}, sync_to_thread=False)
    def invoices(
        self, principal: NamedDependency[Principal], billing_view: NamedDependency[BillingView]
    ) -> list[InvoiceOut]:
        """The tenant's invoices, oldest first, with VAT and late fees."""
        return [invoice_out(row) for row in billing_view.tenant_invoices(principal.tenant_id)]

    @get("/invoices.csv", operation_id="exportInvoices", opt={"action": Action.BILLING_READ}, sync_to_thread=False,
         media_type="text/csv")  # fmt: skip
    def invoices_csv(
        self, principal: NamedDependency[Principal], billing_view: NamedDependency[BillingView]
    ) -> Response[str]:
        """The invoices as CSV for an accountant (amounts as exact decimals)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in billing_view.tenant_invoices(principal.tenant_id):
            writer.writerow([
                row.number, _iso(row.issued_at), _iso(row.due_at), row.reason, row.currency.upper(),
                money(row.net_cents), money(row.vat_rate_bp), money(row.vat_cents), money(row.total_cents),
                "yes" if row.reverse_charge else "no", row.mention, row.status, _iso(row.paid_at),
                money(row.late_fees_cents),
            ])  # fmt: skip
        headers = {"Content-Disposition": 'attachment; filename="invoices.csv"'}
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

    @get("/ledger", operation_id="billingLedger", opt={"action": Action.BILLING_READ}, sync_to_thread=True)
    def ledger(
        self, principal: NamedDependency[Principal], billing_ledger: NamedDependency[BillingLedger],
        since: FromQuery[datetime | None] = None, until: FromQuery[datetime | None] = None,
    ) -> list[LedgerEntryOut]:  # fmt: skip
        """Every billing fact of the tenant in order: invoices, payments, refunds, late fees, plan changes."""
        return [
            LedgerEntryOut(r.at, r.kind, r.ref, r.detail, r.currency, r.amount_cents, r.vat_cents)
            for r in billing_ledger.query(principal.tenant_id, since, until)
        ]

    @get("/payments", operation_id="listPayments", opt={"action": Action.BILLING_READ}, sync_to_thread=False)
    def payments(
        self, principal: NamedDependency[Principal], billing_view: NamedDependency[BillingView]
    ) -> list[PaymentOut]:
        """One-off payments (credit purchases) and their refunds."""
        return [
            PaymentOut(p.stripe_payment_id, p.purpose, p.currency, p.amount_cents, p.refunded_cents, p.succeeded_at)
            for p in billing_view.tenant_payments(principal.tenant_id)
        ]


def _account_out(principal: Principal, view: BillingView, commands: CommandService) -> AccountOut:
    row = view.accounts.get(principal.tenant_id)
    if row is None:
        raise NotFound("billing account not found")
    vat = commands.run(OwnLLM.vat_decision, principal.tenant_id)
    return AccountOut(row.name, row.email, row.address, row.country, row.vat_id, vat.rate_bp, vat.reverse_charge)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""
