"""Buying prepaid credits and refunding an untouched lot (billing and admin; Stripe when billing is on)."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.billing_service import BillingService
from domain.context import Ctx
from domain.permissions import Action

MAX_PURCHASE_CENTS = 1_000_000_00  # $1,000,000 in one purchase: beyond is a typo, not a purchase


class PurchaseIn(msgspec.Struct, forbid_unknown_fields=True):
    """USD cents to buy ($10 = 1000, at least $1); a saved Stripe payment method, or none to confirm client-side."""

    amount_cents: int
    payment_method: str = ""

    def __post_init__(self) -> None:
        if not 100 <= self.amount_cents <= MAX_PURCHASE_CENTS:
            raise ValueError(f"amount_cents must be 100 to {MAX_PURCHASE_CENTS} (USD cents)")


class PurchaseOut(msgspec.Struct):
    """The payment intent: the credits become a lot when Stripe reports it succeeded (its webhook)."""

    payment_intent_id: str
    client_secret: str
    status: str


class RefundOut(msgspec.Struct):
    """What was paid back, and Stripe's refund id."""

    lot_id: UUID
    refunded_cents: int
    refund_id: str


class CreditPurchaseController(Controller):
    """Credits keep their dollar value, expire a year after purchase, and are refundable only while untouched
    and within 30 days."""

    path = "/api/v1/billing/credits"
    tags = ["billing"]

    @post("/purchases", operation_id="buyCredits", opt={"action": Action.BILLING_MANAGE}, sync_to_thread=True)
    def buy(
        self, ctx: NamedDependency[Ctx], billing_service: NamedDependency[BillingService], data: JSONBody[PurchaseIn]
    ) -> PurchaseOut:
        """Start a credit purchase through Stripe (503 when billing is off)."""
        intent_id, secret, status = billing_service.buy_credits(ctx, data.amount_cents, data.payment_method)
        return PurchaseOut(intent_id, secret, status)

    @post("/lots/{lot_id:uuid}/refund", operation_id="refundCreditLot", opt={"action": Action.BILLING_MANAGE},
          sync_to_thread=True)  # fmt: skip
    def refund(
        self, ctx: NamedDependency[Ctx], billing_service: NamedDependency[BillingService], lot_id: FromPath[UUID]
    ) -> RefundOut:
        """Refund a completely unused lot within 30 days of purchase (409 otherwise, naming the rule)."""
        cents, refund_id = billing_service.refund_lot(ctx, lot_id)
        return RefundOut(lot_id, cents, refund_id)
