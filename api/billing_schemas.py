"""The billing API's bodies (msgspec structs on the wire); money in integer cents with its currency."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from api.schemas import Body


class AccountIn(Body):
    """The billed party; ``vat_id`` for a business (EU format, checked)."""

    name: str
    email: str
    address: str
    country: str
    vat_id: str = ""


class AccountOut(msgspec.Struct):
    name: str
    email: str
    address: str
    country: str
    vat_id: str
    vat_rate_bp: int
    reverse_charge: bool


class SubscriptionIn(Body):
    """subscribe (plan, interval), upgrade (plan, now), downgrade (plan/interval, at period end), cancel."""

    action: Literal["subscribe", "upgrade", "downgrade", "cancel"]
    plan: str = ""
    interval: str = ""


class SubscriptionOut(msgspec.Struct):
    plan: str
    interval: str
    status: str
    period_start: datetime
    period_end: datetime
    next_plan: str
    next_interval: str
    price_cents: int
    currency: str


class PlanChangeOut(msgspec.Struct):
    action: str
    plan: str
    interval: str
    charged_cents: int  # excluding VAT
    effective_at: datetime
    vat_cents: int = 0  # charged on top: the card pays charged_cents + vat_cents


class BilledPartyOut(msgspec.Struct):
    """Whom an invoice went to, as sealed for its fiscal year (``<erased>`` once that year's retention ended)."""

    name: str
    email: str
    address: str
    country: str
    vat_id: str


class InvoiceOut(msgspec.Struct):
    id: str
    number: str
    reason: str
    status: str
    currency: str
    net_cents: int
    vat_rate_bp: int
    vat_cents: int
    total_cents: int
    reverse_charge: bool
    mention: str
    issued_at: datetime
    due_at: datetime
    paid_at: datetime | None
    late_fees_cents: int
    billed_to: BilledPartyOut | None = None


class PaymentOut(msgspec.Struct):
    id: str
    purpose: str
    currency: str
    amount_cents: int
    refunded_cents: int
    succeeded_at: datetime | None


class LedgerEntryOut(msgspec.Struct):
    at: datetime
    kind: str
    ref: str
    detail: str
    currency: str
    amount_cents: int
    vat_cents: int
