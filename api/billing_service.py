"""Billing's use cases: each one checks our rules, asks Stripe, then records what was agreed as our events.

Our checks run first (a refused change never reaches Stripe); Stripe's answer comes next; the
domain command last. Should the command fail after Stripe agreed, Stripe's webhook carries the same
change later (subscriptions are matched by id), so nothing is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from stripe import StripeError

from api.billing_config import BillingConfig
from api.dependencies import CommandService
from api.services import Services
from api.stripe_gateway import StripeGateway
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import DomainError, InvalidState, InvalidValue, NotFound
from domain.subscription import Subscription, check_plan
from policies import plans

log = logging.getLogger(__name__)


class BillingOff(DomainError):
    """No Stripe key is configured on this server: plans and payments are not sold here."""

    title = "Billing is not enabled"


@dataclass(frozen=True, slots=True)
class PlanChange:
    """What a plan change did: ``charged_cents`` now (upgrade), or the date it takes effect."""

    action: str  # subscribed, upgraded, scheduled, cancelled
    plan: str
    interval: str
    charged_cents: int  # excluding VAT
    effective_at: datetime
    vat_cents: int = 0  # charged on top of it


class BillingService:
    """Subscribe, change and cancel plans, buy credits: Stripe and our records kept in step."""

    def __init__(self, app: OwnLLM, commands: CommandService, gateway: StripeGateway | None) -> None:
        self.app = app
        self.commands = commands
        self.gateway = gateway
        self._plans_ready = False

    def _stripe(self) -> StripeGateway:
        if self.gateway is None:
            raise BillingOff("billing is off: no Stripe key is configured (OWNLLM_STRIPE_SECRET_KEY)")
        if not self._plans_ready:  # Stripe gets our Plans on first use, not at start (no call when unused)
            self.gateway.ensure_plans()
            self._plans_ready = True
        return self.gateway

    def customer(self, ctx: Ctx) -> str:
        """The tenant's Stripe customer, created (and linked) on first use from its billing account."""
        account = self.app.billing_account(ctx.tenant_id)
        if account is None:
            raise NotFound("billing account not found: set the billing details first (PUT /api/v1/billing/account)")
        if account.customer_id:
            return str(account.customer_id)
        customer = self._stripe().create_customer(
            ctx.tenant_id, email=str(account.email), name=str(account.name), country=account.country
        )
        self.commands.run(OwnLLM.link_stripe_customer, ctx, customer)
        return customer

    def change(self, ctx: Ctx, action: str, plan: str = "", interval: str = "") -> PlanChange:
        """subscribe, upgrade, downgrade (or change interval) or cancel."""
        current = self.app.subscription(ctx.tenant_id)
        live = current is not None and not current.ended
        if action == "subscribe":
            return self._subscribe(ctx, plan, interval, live)
        if not live or current is None:
            raise InvalidState("the tenant has no subscription")
        current.check_current()
        if action == "cancel":
            self._stripe().cancel_at_period_end(ctx.tenant_id, current.stripe_subscription_id, ctx.request_id)
            ends = self.commands.run(OwnLLM.cancel_subscription, ctx)
            return PlanChange("cancelled", current.plan, current.interval, 0, ends)
        name, every = check_plan(plan, interval or current.interval)
        if action == "upgrade":
            return self._upgrade(ctx, current, name)
        if action == "downgrade":
            current.schedule_change(ctx, name, every)  # a dry run on the loaded copy: our rules before Stripe
            stripe = self._stripe()
            tax_rates = stripe.tax_rates(self.app.vat_decision(ctx.tenant_id))
            stripe.change_plan(ctx.tenant_id, current.stripe_subscription_id, name, every, ctx.request_id,
                               upgrade=False, tax_rates=tax_rates)  # fmt: skip
            when = self.commands.run(OwnLLM.schedule_plan_change, ctx, name, every)
            return PlanChange("scheduled", name, every, 0, when)
        raise InvalidState(f"unknown action '{action}'; one of: subscribe, upgrade, downgrade, cancel")

    def _subscribe(self, ctx: Ctx, plan: str, interval: str, live: bool) -> PlanChange:
        name, every = check_plan(plan, interval or "month")
        if live:
            raise InvalidState("the tenant already has a subscription; upgrade, downgrade or cancel it")
        self.app._tenant(ctx.tenant_id).check_active()
        customer, vat, stripe = self.customer(ctx), self.app.vat_decision(ctx.tenant_id), self._stripe()
        created = stripe.subscribe(ctx.tenant_id, customer, name, every, ctx.request_id, stripe.tax_rates(vat))
        sub = self.commands.run(
            OwnLLM.subscribe, ctx, plan=name, interval=every, period_start=created.period_start,
            stripe_subscription_id=created.id,
        )  # fmt: skip
        net = plans.plan(name).price_cents(every)
        return PlanChange("subscribed", name, every, net, sub.period_end, vat.tax_cents(net))

    def _upgrade(self, ctx: Ctx, current: Subscription, plan: str) -> PlanChange:
        charged = current.upgrade(ctx, plan)  # a dry run on the loaded copy: our rules before Stripe's
        stripe, vat = self._stripe(), self.app.vat_decision(ctx.tenant_id)
        tax_rates = stripe.tax_rates(vat)
        stripe.change_plan(ctx.tenant_id, current.stripe_subscription_id, plan, current.interval, ctx.request_id,
                           upgrade=True, tax_rates=tax_rates)  # fmt: skip
        stripe.charge_difference(
            ctx.tenant_id, self.customer(ctx), current.stripe_subscription_id, charged,
            f"Upgrade to {plan}: the price difference until the next cycle", ctx.request_id, tax_rates,
        )  # fmt: skip
        self.commands.run(OwnLLM.upgrade_plan, ctx, plan)
        return PlanChange("upgraded", plan, current.interval, charged, current.period_end, vat.tax_cents(charged))

    def save_account(self, ctx: Ctx, **fields: Any) -> None:
        """Save the billing account; if its VAT decision changed, the live subscription's next invoices carry
        the new one. Should Stripe fail then, the saved account stands (the answer is not an error) and the
        daily tax sweep (``StripeTaxSweep``) gives Stripe the rate."""
        before = self.app.vat_decision(ctx.tenant_id)
        self.commands.run(OwnLLM.save_billing_account, ctx, **fields)
        if self.app.vat_decision(ctx.tenant_id) == before:
            return
        try:
            self._retax(ctx.tenant_id, ctx.request_id)
        except StripeError as exc:
            log.warning("tenant %s: subscription not re-taxed now (%s); the tax sweep will", ctx.tenant_id,
                        type(exc).__name__)  # fmt: skip

    def reconcile_tax(self, tenant_ids: list[UUID]) -> int:
        """Give each live subscription whose Stripe TaxRates differ from its VAT decision the right ones
        (one made before Stripe was told the VAT, or whose re-taxing failed); returns how many changed."""
        changed = 0
        for tenant_id in tenant_ids:
            request_id = f"reconcile:{uuid4()}"  # setting rates is idempotent in itself: a retry is harmless
            try:
                changed += self._retax(tenant_id, request_id, only_if_different=True)
            except Exception as exc:  # one tenant's Stripe trouble holds back no other; the next pass retries
                log.warning("tax rates of tenant %s not reconciled (%s)", tenant_id, type(exc).__name__)
        return changed

    def _retax(self, tenant_id: UUID, request_id: str, *, only_if_different: bool = False) -> bool:
        current = self.app.subscription(tenant_id)
        stripe = self.gateway  # not _stripe(): no plan needs to exist in Stripe to tax a subscription
        if stripe is None or current is None or current.ended or not current.stripe_subscription_id:
            return False
        tax_rates = stripe.tax_rates(self.app.vat_decision(tenant_id))
        subscription_id = current.stripe_subscription_id
        if only_if_different and stripe.subscription_tax_rates(subscription_id) == tax_rates:
            return False
        stripe.set_tax_rates(tenant_id, subscription_id, tax_rates, request_id)
        return True

    def refund_lot(self, ctx: Ctx, lot_id: UUID) -> tuple[int, str]:
        """Refund an untouched lot within 30 days: our rules first (a dry run), then Stripe, then our ledger.

        Stripe's idempotency key follows from the lot: a retry after a failure between Stripe and our
        record re-sends the same refund (Stripe keeps keys 24 hours), and the record then closes the lot.
        """
        ledger = self.app.credit_ledger(ctx.tenant_id)
        lot = ledger.lots.get(lot_id) if ledger is not None else None
        if ledger is None or lot is None:
            raise NotFound("credit lot not found")
        now = self.app.clock()
        ledger.check_open()
        ledger.check_refundable(lot, now)
        refund_id = self._stripe().refund(ctx.tenant_id, lot.payment_id, lot.amount_cents, f"lot-refund:{lot_id}")
        self.commands.run(OwnLLM.refund_lot, ctx.tenant_id, lot_id, now, ctx.actor)
        return lot.amount_cents, refund_id

    def buy_credits(self, ctx: Ctx, cents: int, payment_method: str = "") -> tuple[str, str, str]:
        """A credit purchase's payment intent; the credits are granted when Stripe reports it succeeded."""
        if cents < 100:
            raise InvalidValue("a credit purchase is at least 1.00 USD (100 cents)", "amount_cents")
        return self._stripe().buy_credits(ctx.tenant_id, self.customer(ctx), cents, ctx.request_id, payment_method)


def build_billing_service(config: BillingConfig, services: Services) -> BillingService:
    """Billing's use cases; Stripe only when a secret key is configured (billing is off by default)."""
    gateway = StripeGateway(config) if config.enabled else None
    return BillingService(services.app, CommandService(services), gateway)
