"""Stripe through the official SDK: customers, plan subscriptions, upgrades, credit purchases, refunds, invoices.

Every call carries an idempotency key derived from what it does (tenant, plan, request id), so a
retried request never charges twice on Stripe. The base URL comes from ``OWNLLM_STRIPE_API_BASE``
(tests point it at localstripe). Our records stay the source of truth: the domain records what was
agreed, and Stripe's webhooks (``api/stripe_webhook.py``) report what was paid.

Upgrades charge the price *difference* now (``policies/plans.py``), not Stripe's time-prorated
amount: the plan of the subscription's single item is changed, and an invoice made of what Stripe
left pending for that change is topped up to exactly the difference and paid at once (see
:meth:`StripeGateway.charge_difference`). A downgrade or interval change moves the item likewise and
removes the pending prorations, so the next renewal charges the new price and nothing is credited
now; a cancellation sets ``cancel_at_period_end``. No ``proration_behavior`` is sent: localstripe
does not know it (it credits the whole previous invoice on a plan change instead).

VAT: the rate our invoices apply (``policies/vat.py``) goes to Stripe as an exclusive TaxRate (one per
country and rate, found by its metadata or created once; 0 % for a reverse charge or outside the
seller's VAT territory) on the subscription and on the difference invoice, so what Stripe charges is
the invoice's total, VAT included; a billing account that changes re-taxes the live subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import stripe

from api.billing_config import BillingConfig
from api.stripe_webhook import CREDIT_PURPOSE, plan_id
from policies import plans
from policies.vat import VatDecision


@dataclass(frozen=True, slots=True)
class StripeSubscription:
    """What we keep of a Stripe subscription we created."""

    id: str
    period_start: datetime
    period_end: datetime


class StripeGateway:
    """Our calls to Stripe; one instance per process (the SDK client is thread-safe)."""

    def __init__(self, config: BillingConfig) -> None:
        bases: Any = {"api": config.api_base} if config.api_base else None
        self.client = stripe.StripeClient(config.secret_key, base_addresses=bases, max_network_retries=2)
        self._tax_rates: dict[tuple[str, int], str] = {}  # (country or why none, basis points) -> TaxRate id

    def tax_rates(self, vat: VatDecision) -> list[str]:
        """The Stripe TaxRate for a VAT decision (found by its metadata, else made once): the country's rate,
        or 0 % named for why (reverse charge, or outside the seller's VAT territory)."""
        where = vat.rate_country or ("reverse-charge" if vat.reverse_charge else "exempt")
        key = (where, vat.rate_bp)
        if key not in self._tax_rates:
            self._tax_rates[key] = self._find_tax_rate(*key) or self._create_tax_rate(*key)
        return [self._tax_rates[key]]

    def _find_tax_rate(self, where: str, rate_bp: int) -> str | None:
        listed = self.client.v1.tax_rates.list(params={"limit": 100})
        for rate in listed.auto_paging_iter():
            meta: dict[str, Any] = rate.to_dict().get("metadata") or {}
            if meta.get("ownllm_where") == where and meta.get("ownllm_rate_bp") == str(rate_bp) and rate.active:
                return str(rate.id)
        return None

    def _create_tax_rate(self, where: str, rate_bp: int) -> str:
        params: dict[str, Any] = {
            "display_name": "VAT",
            "percentage": rate_bp / 100,
            "inclusive": False,  # our prices exclude VAT
            "description": f"VAT {rate_bp / 100:g} % ({where})",
            "metadata": {"ownllm_where": where, "ownllm_rate_bp": str(rate_bp)},
        }
        if rate_bp:
            params["jurisdiction"] = where
        created = self.client.v1.tax_rates.create(
            params=params,  # type: ignore[arg-type]
            options=self._key("tax-rate", where, rate_bp),  # type: ignore[arg-type]
        )
        return str(created.id)

    def subscription_tax_rates(self, subscription_id: str) -> list[str]:
        """The TaxRates a subscription's next invoices carry, as Stripe has them."""
        sub = self.client.v1.subscriptions.retrieve(subscription_id).to_dict()
        return [str(rate["id"]) for rate in sub.get("default_tax_rates") or ()]

    def set_tax_rates(self, tenant_id: UUID, subscription_id: str, tax_rates: list[str], request_id: str) -> None:
        """Tax the subscription's next invoices at these rates (the billing account changed)."""
        self.client.v1.subscriptions.update(
            subscription_id, params={"default_tax_rates": tax_rates},
            options=self._key("tax", tenant_id, request_id),  # type: ignore[arg-type]
        )  # fmt: skip

    @staticmethod
    def _key(*parts: object) -> dict[str, str]:
        return {"idempotency_key": "ownllm:" + ":".join(str(p) for p in parts)}

    def ensure_plans(self) -> None:
        """Create the Products and Plans of ``policies/plans.py`` that Stripe does not have yet (Plans, not Prices)."""
        for plan in plans.PLANS.values():
            for interval in plans.INTERVALS:
                try:
                    self.client.v1.plans.retrieve(plan_id(plan.name, interval))
                    continue
                except stripe.InvalidRequestError:
                    pass
                product = self.client.v1.products.create(
                    params={"name": f"OwnLLM {plan.name.title()} ({interval}ly)"},
                    options=self._key("product", plan.name, interval),  # type: ignore[arg-type]
                )
                self.client.v1.plans.create(
                    params={
                        "id": plan_id(plan.name, interval),
                        "product": product.id,
                        "currency": plans.CURRENCY,
                        "amount": plan.price_cents(interval),
                        "interval": interval,
                        "nickname": plan.name,
                    },
                    options=self._key("plan", plan.name, interval),  # type: ignore[arg-type]
                )

    def create_customer(self, tenant_id: UUID, *, email: str, name: str, country: str) -> str:
        """A Stripe customer for the tenant (its id only is kept, pseudonymous)."""
        customer = self.client.v1.customers.create(
            params={
                "email": email,
                "name": name,
                "address": {"country": country},
                "metadata": {"tenant_id": str(tenant_id)},
            },
            options=self._key("customer", tenant_id),  # type: ignore[arg-type]
        )
        return customer.id

    def subscribe(
        self, tenant_id: UUID, customer_id: str, plan: str, interval: str, request_id: str, tax_rates: list[str]
    ) -> StripeSubscription:
        """Subscribe the customer to one plan, charged in advance (Stripe invoices the first cycle), VAT on top."""
        sub = self.client.v1.subscriptions.create(
            params={
                "customer": customer_id,
                "items": [{"plan": plan_id(plan, interval)}],
                "metadata": {"tenant_id": str(tenant_id), "plan": plan, "interval": interval},
                **_taxed(tax_rates),
            },  # type: ignore[arg-type]
            options=self._key("subscribe", tenant_id, request_id),  # type: ignore[arg-type]
        )
        return _subscription(sub)

    def change_plan(
        self, tenant_id: UUID, subscription_id: str, plan: str, interval: str, request_id: str, *, upgrade: bool,
        tax_rates: list[str],
    ) -> None:  # fmt: skip
        """Move the single item to another plan (renewals taxed at the rate in force now); a downgrade leaves
        no proration pending (nothing credited)."""
        sub = self.client.v1.subscriptions.retrieve(subscription_id)
        item = sub["items"]["data"][0]["id"]
        updated = self.client.v1.subscriptions.update(
            subscription_id,
            params={
                "items": [{"id": item, "plan": plan_id(plan, interval)}],
                "metadata": {"tenant_id": str(tenant_id), "plan": plan, "interval": interval},
                **_taxed(tax_rates),
            },  # type: ignore[arg-type]
            options=self._key("change", tenant_id, request_id),  # type: ignore[arg-type]
        )
        if not upgrade:
            self._drop_pending_prorations(str(updated["customer"]))

    def charge_difference(
        self, tenant_id: UUID, customer_id: str, subscription_id: str, cents: int, description: str, request_id: str,
        tax_rates: list[str],
    ) -> str:  # fmt: skip
        """Invoice exactly ``cents`` (VAT on top) now and pay it with the customer's default method; returns the
        invoice id.

        The invoice first takes whatever Stripe left pending for the plan change (its prorations, or
        localstripe's credit of the previous invoice and new plan line), then one item tops it up to
        the difference, so the charge is the difference on either.
        """
        invoice = self.client.v1.invoices.create(
            params={
                "customer": customer_id,
                "subscription": subscription_id,
                "description": description,
                "metadata": {"tenant_id": str(tenant_id)},
                "pending_invoice_items_behavior": "include",
                **_taxed(tax_rates),
            },  # type: ignore[arg-type]
            options=self._key("difference-invoice", tenant_id, request_id),  # type: ignore[arg-type]
        )
        gap = cents - int(invoice["subtotal"])
        if gap:
            self.client.v1.invoice_items.create(
                params={
                    "customer": customer_id,
                    "invoice": invoice.id,
                    "amount": gap,
                    "currency": plans.CURRENCY,
                    "description": description,
                },
                options=self._key("difference-item", tenant_id, request_id),  # type: ignore[arg-type]
            )
        paid = self.client.v1.invoices.pay(invoice.id, options=self._key("difference-pay", tenant_id, request_id))  # type: ignore[arg-type]
        return str(paid.id)

    def cancel_at_period_end(self, tenant_id: UUID, subscription_id: str, request_id: str) -> None:
        """Stop renewing; access continues until the end of the paid cycle."""
        self.client.v1.subscriptions.update(
            subscription_id, params={"cancel_at_period_end": True},
            options=self._key("cancel", tenant_id, request_id),  # type: ignore[arg-type]
        )  # fmt: skip

    def buy_credits(
        self, tenant_id: UUID, customer_id: str, cents: int, request_id: str, payment_method: str = ""
    ) -> tuple[str, str, str]:
        """A payment intent for prepaid credits (USD): its id, the client secret to confirm it, and its status.

        With ``payment_method`` (a saved card) it is confirmed at once; otherwise the client confirms it.
        """
        params: dict[str, Any] = {
            "amount": cents, "currency": "usd", "customer": customer_id,
            "metadata": {"tenant_id": str(tenant_id), "purpose": CREDIT_PURPOSE},
        }  # fmt: skip
        if payment_method:
            params |= {"payment_method": payment_method, "confirm": True}
        intent = self.client.v1.payment_intents.create(
            params=params,  # type: ignore[arg-type]
            options=self._key("credits", tenant_id, request_id),  # type: ignore[arg-type]
        )
        return intent.id, str(intent.client_secret), str(intent.status)

    def refund(self, tenant_id: UUID, payment_intent_id: str, cents: int, request_id: str) -> str:
        """Give back ``cents`` of a payment (the credit rules decide whether it may: not here)."""
        refund = self.client.v1.refunds.create(
            params={"payment_intent": payment_intent_id, "amount": cents, "metadata": {"tenant_id": str(tenant_id)}},
            options=self._key("refund", tenant_id, payment_intent_id, request_id),  # type: ignore[arg-type]
        )
        return refund.id

    def invoices(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The customer's invoices as Stripe has them (newest first)."""
        found = self.client.v1.invoices.list(params={"customer": customer_id, "limit": limit})
        return [invoice.to_dict() for invoice in found.data]

    def _drop_pending_prorations(self, customer_id: str) -> None:
        items = self.client.v1.invoice_items.list(params={"customer": customer_id, "limit": 100})
        for item in items.data:
            if item["invoice"] is None and item["proration"]:
                self.client.v1.invoice_items.delete(item.id)


def _taxed(tax_rates: list[str]) -> dict[str, Any]:
    """The parameter that puts VAT on a subscription's or an invoice's lines."""
    return {"default_tax_rates": tax_rates}


def _subscription(sub: Any) -> StripeSubscription:
    data = sub.to_dict()
    item = (data.get("items") or {}).get("data", [{}])[0]
    start = data.get("current_period_start") or item.get("current_period_start")
    end = data.get("current_period_end") or item.get("current_period_end")
    return StripeSubscription(str(data["id"]), datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
