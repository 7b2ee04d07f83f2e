"""A tenant's billing told at the application level on both stores: account, plan, Stripe's events, late fees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.services import Services
from domain.billing_facts import InvoiceFact, PaymentFact, RefundFact, StripeDelivery, SubscriptionFact
from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.invoice import Invoice, invoice_id
from domain.payment import Payment, payment_id
from tests.support.clock import ManualClock
from tests.support.stores import holds, store_bytes

START = datetime(2026, 1, 31, 9, tzinfo=UTC)


def signup(services: Services, slug: str = "acme") -> Ctx:
    acme = services.app.signup(
        slug=slug, name="Acme", admin_name="Ada", admin_email=f"ada@{slug}.example", request_id="r"
    )
    return Ctx(actor=f"user:{acme.admin_user_id}", tenant_id=acme.tenant_id, request_id="r2")


def plan_of(services: Services, ctx: Ctx) -> str:
    services.runner.catch_up()
    return services.directory.tenants[ctx.tenant_id].plan


def invoice_fact(change: str, at: datetime, **extra: object) -> InvoiceFact:
    fields: dict[str, object] = dict(
        change=change, stripe_invoice_id="in_1", number="OWN-0001", reason="subscription_create", net_cents=99_00,
        currency="eur", issued_at=START, due_at=START + timedelta(days=14), at=at,
    )  # fmt: skip
    return InvoiceFact(**(fields | extra))  # type: ignore[arg-type]


def test_billing_details_are_checked_and_sealed_while_amounts_stay_clear(services: Services) -> None:
    app, ctx = services.app, signup(services)
    with pytest.raises(InvalidValue, match="vat_id is not a valid"):
        app.save_billing_account(ctx, name="Acme SAS", email="billing@acme.example", address="1 rue X", country="DE",
                                 vat_id="DE000000000")  # fmt: skip
    with pytest.raises(InvalidValue, match="does not belong"):
        app.save_billing_account(ctx, name="Acme SAS", email="billing@acme.example", address="1 rue X", country="FR",
                                 vat_id="DE136695976")  # fmt: skip
    app.save_billing_account(ctx, name="Acme GmbH", email="billing@acme.example", address="Hauptstraße 1, Berlin",
                             country="de", vat_id="DE 136 695 976")  # fmt: skip
    account = app.billing_account(ctx.tenant_id)
    assert account is not None and account.country == "DE" and str(account.vat_id) == "DE136695976"
    assert app.vat_decision(ctx.tenant_id).reverse_charge  # an EU business under a French seller
    delivery = StripeDelivery("evt_1", "invoice.created", "", ctx.tenant_id, invoice_fact("issued", START))
    assert app.apply_stripe_event(delivery, "r3") == "applied"
    invoice = app.repository.get(invoice_id("in_1"))
    assert isinstance(invoice, Invoice) and (invoice.net_cents, invoice.vat_cents) == (99_00, 0)
    raw = store_bytes(services.settings)
    for secret in ("billing@acme.example", "Hauptstra", "DE136695976"):
        assert not holds(raw, secret)
    assert holds(raw, '"net_cents":9900') or holds(raw, "9900")  # amounts in clear


def test_a_subscription_upgraded_downgraded_renewed_and_cancelled(services: Services, clock: ManualClock) -> None:
    app, ctx = services.app, signup(services)
    assert plan_of(services, ctx) == ""  # the default plan until billing assigns one
    app.subscribe(ctx, plan="team", interval="month", period_start=START)
    assert plan_of(services, ctx) == "team"
    # Mid-cycle upgrade: the price difference now, not a time-prorated amount; the plan applies at once.
    assert app.upgrade_plan(ctx, "startup") == 499_00 - 99_00
    assert plan_of(services, ctx) == "startup"
    with pytest.raises(InvalidValue, match="not above"):
        app.upgrade_plan(ctx, "team")
    effective = app.schedule_plan_change(ctx, "team", "month")
    assert effective == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert app.subscription_due(ctx.tenant_id, effective - timedelta(seconds=1), "s1") == 0
    assert plan_of(services, ctx) == "startup"  # paid until the period's end
    # Renewal at the period's end: the downgrade applies, the anchor day comes back (31 Mar).
    assert app.subscription_due(ctx.tenant_id, effective, "s2") == 1
    assert app.subscription_due(ctx.tenant_id, effective, "s3") == 0  # idempotent
    sub = app.subscription(ctx.tenant_id)
    assert sub is not None and (sub.plan, sub.period_end) == ("team", datetime(2026, 3, 28, 9, tzinfo=UTC))
    assert plan_of(services, ctx) == "team"
    ends = app.cancel_subscription(ctx)
    with pytest.raises(InvalidState, match="ending"):
        app.upgrade_plan(ctx, "enterprise")
    assert app.subscription_due(ctx.tenant_id, ends - timedelta(minutes=1), "s4") == 0
    assert plan_of(services, ctx) == "team"  # access continues until the end of the cycle
    assert app.subscription_due(ctx.tenant_id, ends + timedelta(days=70), "s5") == 1  # ended, not renewed
    assert plan_of(services, ctx) == ""
    app.subscribe(ctx, plan="enterprise", interval="year", period_start=ends + timedelta(days=1))
    assert plan_of(services, ctx) == "enterprise"


def test_a_sweeper_down_for_two_cycles_renews_both(services: Services) -> None:
    app, ctx = services.app, signup(services)
    app.subscribe(ctx, plan="team", interval="month", period_start=START)
    assert app.subscription_due(ctx.tenant_id, START + timedelta(days=65), "s") == 2
    sub = app.subscription(ctx.tenant_id)
    assert sub is not None and sub.period_end == datetime(2026, 4, 28, 9, tzinfo=UTC)


def test_stripe_renewal_and_ours_count_once(services: Services) -> None:
    app, ctx = services.app, signup(services)
    app.subscribe(ctx, plan="team", interval="month", period_start=START, stripe_subscription_id="sub_1")
    stripe_end = datetime(2026, 3, 28, 9, 0, 7, tzinfo=UTC)  # Stripe's clock, seconds apart from ours
    fact = SubscriptionFact("updated", "sub_1", "team", "month", START + timedelta(days=28), stripe_end, False, START)
    assert (
        app.apply_stripe_event(StripeDelivery("evt_r", "customer.subscription.updated", "", ctx.tenant_id, fact), "r")
        == "applied"
    )
    assert app.subscription_due(ctx.tenant_id, datetime(2026, 2, 28, 10, tzinfo=UTC), "s") == 0  # already renewed


def test_each_stripe_event_applies_once_whatever_the_order(services: Services) -> None:
    app, ctx = services.app, signup(services)
    paid_fact = invoice_fact("paid", START + timedelta(hours=1), amount_paid_cents=118_80, payment_id="pi_1")
    paid = StripeDelivery("evt_paid", "invoice.paid", "", ctx.tenant_id, paid_fact)
    failed = StripeDelivery(
        "evt_failed", "invoice.payment_failed", "", ctx.tenant_id, invoice_fact("failed", START, attempt=1)
    )
    assert app.apply_stripe_event(paid, "r") == "applied"  # paid before we heard of it: issued and paid at once
    for _ in range(3):
        assert app.apply_stripe_event(paid, "r") == "duplicate"
    assert app.apply_stripe_event(failed, "r") == "stale"  # a paid invoice stays paid
    invoice = app.repository.get(invoice_id("in_1"))
    assert invoice.paid and invoice.vat_cents == 19_80  # a French customer without account: 20 %
    unknown = StripeDelivery("evt_x", "customer.created", "cus_9", None, None)
    assert app.apply_stripe_event(unknown, "r") == "ignored"  # no tenant: acknowledged, nothing recorded
    ignored = StripeDelivery("evt_y", "customer.discount.created", "", ctx.tenant_id, None)
    assert app.apply_stripe_event(ignored, "r") == "ignored"
    assert app.apply_stripe_event(ignored, "r") == "duplicate"


def test_payments_and_refunds_in_any_order(services: Services) -> None:
    app, ctx = services.app, signup(services)
    refund = RefundFact("pi_7", "ch_7", 50_00, 20_00, "usd", "credits", START + timedelta(days=2))
    success = PaymentFact("pi_7", 50_00, "usd", "credits", START)
    assert (
        app.apply_stripe_event(StripeDelivery("evt_ref", "charge.refunded", "", ctx.tenant_id, refund), "r")
        == "applied"
    )
    assert (
        app.apply_stripe_event(StripeDelivery("evt_ok", "payment_intent.succeeded", "", ctx.tenant_id, success), "r")
        == "applied"
    )
    older = RefundFact("pi_7", "ch_7", 50_00, 10_00, "usd", "credits", START + timedelta(days=1))
    assert (
        app.apply_stripe_event(StripeDelivery("evt_old", "charge.refunded", "", ctx.tenant_id, older), "r") == "stale"
    )
    payment = app.repository.get(payment_id("pi_7"))
    assert isinstance(payment, Payment) and payment.succeeded and payment.refunded_cents == 20_00


def test_late_fees_accrue_on_the_overdue_invoice(services: Services) -> None:
    app, ctx = services.app, signup(services)
    app.apply_stripe_event(
        StripeDelivery("evt_i", "invoice.created", "", ctx.tenant_id, invoice_fact("issued", START)), "r"
    )
    due = START + timedelta(days=14)
    assert app.invoice_due("in_1", due, "s") == 0  # not late at the due instant
    assert app.invoice_due("in_1", due + timedelta(hours=1), "s") == 2  # overdue + the EUR 40 indemnity
    assert app.invoice_due("in_1", due + timedelta(hours=2), "s") == 0  # no whole day of interest yet
    assert app.invoice_due("in_1", due + timedelta(days=30), "s") == 1
    assert app.invoice_due("in_1", due + timedelta(days=30), "s") == 0
    invoice = app.repository.get(invoice_id("in_1"))
    # 118.80 (99.00 + 20 % VAT) at 12.15 % (the rate carried into 2026) for 30 days, plus 40.00
    assert invoice.late_fees_cents == 40_00 + round(11_880 * 0.1215 * 30 / 365)
    paid = invoice_fact("paid", due + timedelta(days=31), amount_paid_cents=invoice.total_cents, payment_id="pi_2")
    app.apply_stripe_event(StripeDelivery("evt_p", "invoice.paid", "", ctx.tenant_id, paid), "r")
    assert app.invoice_due("in_1", due + timedelta(days=60), "s") == 0  # paid: nothing more accrues
