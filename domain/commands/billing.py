"""Billing: the tenant's billing account, its plan subscription, invoices and payments, and Stripe's events.

Stripe is reached by the API (``api/stripe_gateway.py``); these commands record what was agreed
and what Stripe reports, as our own events. Each Stripe event is applied at most once: its marker
(:class:`StripeEvent`, the uuid5 of Stripe's event id) is saved in the same transaction as what it
changed, so a redelivery conflicts on the marker and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from domain.billing_facts import Fact, InvoiceFact, PaymentFact, RefundFact, StripeDelivery, SubscriptionFact
from domain.commands.billing_accounts import BillingAccountCommands
from domain.context import SYSTEM, Ctx
from domain.errors import Conflict, InvalidState, NotFound
from domain.invoice import Invoice, invoice_id
from domain.payment import Payment, payment_id
from domain.stripe_event import StripeEvent, stripe_event_id
from domain.subscription import Subscription, check_plan, subscription_id
from policies import plans


class BillingCommands(BillingAccountCommands):
    """Billing accounts, subscriptions, and Stripe's events turned into ours."""

    # -- subscription -------------------------------------------------------------------------

    def subscription(self, tenant_id: UUID) -> Subscription | None:
        """The tenant's subscription, if it ever had one."""
        found = self._get(subscription_id(tenant_id))
        return found if isinstance(found, Subscription) else None

    def subscribe(
        self, ctx: Ctx, *, plan: str, interval: str, period_start: datetime, stripe_subscription_id: str = ""
    ) -> Subscription:
        """Start (or restart) the tenant's plan; charged in advance for the first cycle."""
        self._tenant(ctx.tenant_id).check_active()
        name, every = check_plan(plan, interval)
        end = plans.period_end(period_start, 1, every)
        current = self.subscription(ctx.tenant_id)
        if current is None:
            current = Subscription(
                tenant_id=ctx.tenant_id, plan=name, interval=every, period_start=period_start, period_end=end,
                stripe_subscription_id=stripe_subscription_id, actor=ctx.actor, request_id=ctx.request_id,
            )  # fmt: skip
        elif stripe_subscription_id and current.stripe_subscription_id == stripe_subscription_id and not current.ended:
            return current  # Stripe's webhook got here first: the same subscription, nothing to add
        else:
            current.restart(ctx, name, every, period_start, end, stripe_subscription_id)
        self._save(current)
        return current

    def upgrade_plan(self, ctx: Ctx, plan: str) -> int:
        """Move to a higher plan now; returns the difference charged now (never time-prorated)."""
        current = self._current(ctx.tenant_id)
        charged = current.upgrade(ctx, plan)
        self._save(current)
        return charged

    def schedule_plan_change(self, ctx: Ctx, plan: str, interval: str) -> datetime:
        """Downgrade or change interval at the period's end; returns when it takes effect."""
        current = self._current(ctx.tenant_id)
        current.schedule_change(ctx, plan, interval)
        self._save(current)
        return current.period_end

    def cancel_subscription(self, ctx: Ctx) -> datetime:
        """Cancel at the end of the paid cycle; returns when access ends. Not refundable."""
        current = self._current(ctx.tenant_id)
        current.cancel(ctx)
        self._save(current)
        return current.period_end

    def subscription_due(self, tenant_id: UUID, now: datetime, request_id: str) -> int:
        """What time does to the subscription (renewal, end of a cancelled one); the events it recorded."""
        current = self.subscription(tenant_id)
        if current is None:
            return 0
        ctx = Ctx(SYSTEM, tenant_id, request_id)
        emitted = 0
        while current.due(ctx, now):  # a sweeper that was down for two cycles catches up both
            emitted += 1
        if emitted:
            self._save(current)
        return emitted

    def _current(self, tenant_id: UUID) -> Subscription:
        current = self.subscription(tenant_id)
        if current is None or current.ended:
            raise InvalidState("the tenant has no subscription")
        return current

    # -- invoices over time -------------------------------------------------------------------

    def invoice_due(self, stripe_invoice_id: str, now: datetime, request_id: str) -> int:
        """An unpaid invoice past its due date: overdue once, then late fees brought up to ``now``."""
        invoice = self._get(invoice_id(stripe_invoice_id))
        if not isinstance(invoice, Invoice):
            raise NotFound("invoice not found")
        ctx = Ctx(SYSTEM, invoice.tenant_id, request_id)
        emitted = int(invoice.mark_overdue(ctx, now))
        emitted += int(invoice.accrue_late_fees(ctx, now))
        if emitted:
            self._save(invoice)
        return emitted

    # -- Stripe's events ----------------------------------------------------------------------

    def apply_stripe_event(self, delivery: StripeDelivery, request_id: str) -> str:
        """Turn one Stripe event into ours, once: "duplicate" for a redelivery, else the outcome recorded."""
        marker_id = stripe_event_id(delivery.event_id)
        if self._get(marker_id) is not None:
            return "duplicate"
        tenant_id = delivery.tenant_id or self.tenant_for_customer(delivery.customer_id)
        if tenant_id is None or self._get(tenant_id) is None:
            return "ignored"  # not about one of our tenants (nothing changes, so nothing to remember)
        changed: list[Aggregate] = []
        if delivery.fact is None:
            outcome = "ignored"
        else:
            self._grant_credits(tenant_id, delivery.fact)
            changed = self._apply_fact(Ctx(SYSTEM, tenant_id, request_id), delivery.fact)
            outcome = "applied" if changed else "stale"
        marker = StripeEvent(
            event_id=delivery.event_id, type=delivery.type, tenant_id=tenant_id, outcome=outcome, actor=SYSTEM,
            request_id=request_id,
        )  # fmt: skip
        try:
            self._save_now(marker, *changed)
        except IntegrityError:
            if self._get(marker_id) is not None:
                return "duplicate"  # the same event, delivered twice at once: the other one applied it
            raise Conflict("billing records changed at the same time; Stripe will retry") from None
        return outcome

    def _grant_credits(self, tenant_id: UUID, fact: Fact) -> None:
        """A succeeded credit purchase adds its lot to the credit ledger (``purchase_credits``, idempotent per
        payment id), before the event's marker is saved: a crash between the two is healed by Stripe's
        redelivery, which grants nothing twice."""
        purchase = getattr(self, "purchase_credits", None)  # the credit ledger's command (domain/commands/credits.py)
        if purchase is not None and isinstance(fact, PaymentFact) and fact.currency.lower() == "usd":
            purchase(tenant_id, fact.amount_cents, fact.stripe_payment_id, fact.at, SYSTEM)

    def _apply_fact(self, ctx: Ctx, fact: Fact) -> list[Aggregate]:
        if isinstance(fact, InvoiceFact):
            return self._invoice_fact(ctx, fact)
        if isinstance(fact, SubscriptionFact):
            return self._subscription_fact(ctx, fact)
        if isinstance(fact, PaymentFact):
            return self._payment_fact(ctx, fact)
        return self._refund_fact(ctx, fact)

    def _invoice_fact(self, ctx: Ctx, fact: InvoiceFact) -> list[Aggregate]:
        found = self._get(invoice_id(fact.stripe_invoice_id))
        changed = not isinstance(found, Invoice)
        invoice = found if isinstance(found, Invoice) else self._issue(ctx, fact)
        if invoice.tenant_id != ctx.tenant_id:
            return []
        # A new invoice shows the contact in force, sealed under its fiscal year's key (or a later one's).
        carried = self.carry_contact_forward(ctx, max(fact.issued_at, self.clock())) if changed else []
        if fact.change == "paid":
            changed |= invoice.pay(ctx, fact.at, fact.amount_paid_cents, fact.payment_id)
        elif fact.change == "failed":
            changed |= invoice.fail(ctx, fact.at, fact.attempt)
        elif fact.change == "overdue":
            changed |= invoice.mark_overdue(ctx, max(fact.at, invoice.due_at))
        return [*carried, invoice] if changed else []

    def _issue(self, ctx: Ctx, fact: InvoiceFact) -> Invoice:
        vat = self.vat_decision(ctx.tenant_id)
        return Invoice(
            tenant_id=ctx.tenant_id, stripe_invoice_id=fact.stripe_invoice_id, number=fact.number, reason=fact.reason,
            net_cents=fact.net_cents, vat_cents=vat.tax_cents(fact.net_cents), vat_rate_bp=vat.rate_bp,
            vat_country=vat.rate_country, reverse_charge=vat.reverse_charge, mention=vat.mention,
            currency=fact.currency, issued_at=fact.issued_at, due_at=fact.due_at, actor=ctx.actor,
            request_id=ctx.request_id,
        )  # fmt: skip

    def _subscription_fact(self, ctx: Ctx, fact: SubscriptionFact) -> list[Aggregate]:
        current = self.subscription(ctx.tenant_id)
        if current is None or (current.ended and current.stripe_subscription_id != fact.stripe_subscription_id):
            if fact.plan not in plans.PLANS or fact.interval not in plans.INTERVALS:
                return []
            if current is None:
                current = Subscription(
                    tenant_id=ctx.tenant_id, plan=fact.plan, interval=fact.interval, period_start=fact.period_start,
                    period_end=fact.period_end, stripe_subscription_id=fact.stripe_subscription_id, actor=ctx.actor,
                    request_id=ctx.request_id,
                )  # fmt: skip
            else:
                current.restart(ctx, fact.plan, fact.interval, fact.period_start, fact.period_end,
                                fact.stripe_subscription_id)  # fmt: skip
            if fact.change == "deleted":  # its end came first: it started and ended, both recorded
                current.end(ctx, fact.at)
            return [current]
        if fact.change == "deleted":
            same = current.stripe_subscription_id == fact.stripe_subscription_id
            return [current] if same and current.end(ctx, fact.at) else []
        if current.stripe_subscription_id != fact.stripe_subscription_id or current.ended:
            return []  # an older subscription's news
        changed = current.renew(ctx, fact.period_start, fact.period_end)
        if fact.cancel_at_period_end and current.status == "active":
            current.cancel(ctx)
            changed = True
        return [current] if changed else []

    def _payment_fact(self, ctx: Ctx, fact: PaymentFact) -> list[Aggregate]:
        payment = self._payment(ctx, fact.stripe_payment_id, fact.amount_cents, fact.currency, fact.purpose)
        created = payment.version == 0 or not payment.succeeded
        return [payment] if payment.succeed(ctx, fact.at) or created else []

    def _refund_fact(self, ctx: Ctx, fact: RefundFact) -> list[Aggregate]:
        payment = self._payment(ctx, fact.stripe_payment_id, fact.payment_amount_cents, fact.currency, fact.purpose)
        more = fact.refunded_cents - payment.refunded_cents
        if more <= 0:
            return [payment] if payment.version == 0 else []
        payment.refund(ctx, f"{fact.charge_id}@{fact.refunded_cents}", more, fact.at)
        return [payment]

    def _payment(self, ctx: Ctx, stripe_id: str, amount: int, currency: str, purpose: str) -> Payment:
        found = self._get(payment_id(stripe_id))
        if isinstance(found, Payment):
            return found
        return Payment(
            tenant_id=ctx.tenant_id, stripe_payment_id=stripe_id, amount_cents=amount, currency=currency,
            purpose=purpose, actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip
