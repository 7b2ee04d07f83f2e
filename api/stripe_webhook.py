"""Stripe webhooks: the signature checked as Stripe signs, and each event translated into a domain fact.

Stripe signs ``"{t}.{raw body}"`` with HMAC-SHA256 under the endpoint's secret and sends
``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=...]`` (several ``v1`` while a secret rolls over).
We check it here rather than through ``stripe.Webhook.construct_event`` so the 300 s tolerance reads
the application's clock (tests travel in time) and every refusal has its own message; the scheme
is the SDK's (``tests/api/test_stripe_webhook.py`` checks both agree).

Unknown event types are acknowledged and ignored (``fact=None``): Stripe then stops retrying them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.billing_facts import Fact, InvoiceFact, PaymentFact, RefundFact, StripeDelivery, SubscriptionFact

TOLERANCE_S = 300  # Stripe's default: older signatures are refused (replays)
MAX_BODY_BYTES = 256 * 1024  # Stripe's events are a few KiB; an invoice with many lines stays far below
PAYMENT_TERM = timedelta(days=30)  # Code de commerce L441-10 I: 30 days when no due date was agreed
CREDIT_PURPOSE = "credits"  # the metadata our credit purchases carry (api/stripe_gateway.py)


class SignatureRejected(Exception):
    """The webhook is unsigned, wrongly signed or too old; the message says which."""


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, payload)}"


def _mac(secret: str, timestamp: int | str, payload: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def verify(payload: bytes, header: str | None, secret: str, now: datetime, tolerance_s: int = TOLERANCE_S) -> None:
    """Raise :class:`SignatureRejected` unless a ``v1`` signature matches and ``t`` is within the tolerance."""
    if not header:
        raise SignatureRejected("the Stripe-Signature header is missing")
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [value.strip() for key, value in parts if key.strip() == "t"]
    signatures = [value.strip() for key, value in parts if key.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise SignatureRejected("the Stripe-Signature header has no timestamp or no v1 signature")
    expected = _mac(secret, stamps[0], payload)
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise SignatureRejected("no v1 signature matches the payload")
    if abs(now.timestamp() - int(stamps[0])) > tolerance_s:
        raise SignatureRejected(f"the signature's timestamp is more than {tolerance_s} s away from now")


def delivery_of(event: dict[str, Any]) -> StripeDelivery:
    """What one (verified) Stripe event tells us; ``fact`` is None for the types we ignore."""
    kind = str(event.get("type", ""))
    obj = event.get("data", {}).get("object", {}) or {}
    at = _time(event.get("created"))
    metadata = _metadata(obj)
    return StripeDelivery(
        event_id=str(event["id"]),
        type=kind,
        customer_id=str(obj.get("customer") or ""),
        tenant_id=_uuid(metadata.get("tenant_id")),
        fact=_fact(kind, obj, at, metadata),
    )


_INVOICE_CHANGES = {
    "invoice.created": "issued",
    "invoice.finalized": "issued",
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.payment_failed": "failed",
    "invoice.overdue": "overdue",
}
_SUBSCRIPTION_CHANGES = {
    "customer.subscription.created": "created",
    "customer.subscription.updated": "updated",
    "customer.subscription.deleted": "deleted",
}


def _fact(kind: str, obj: dict[str, Any], at: datetime, metadata: dict[str, str]) -> Fact | None:
    if kind in _INVOICE_CHANGES:
        return _invoice(_INVOICE_CHANGES[kind], obj, at)
    if kind in _SUBSCRIPTION_CHANGES:
        return _subscription(_SUBSCRIPTION_CHANGES[kind], obj, at, metadata)
    if kind == "payment_intent.succeeded" and metadata.get("purpose") == CREDIT_PURPOSE:
        return PaymentFact(str(obj["id"]), int(obj.get("amount_received") or obj["amount"]), str(obj["currency"]),
                           CREDIT_PURPOSE, at)  # fmt: skip
    if kind == "charge.refunded" and obj.get("payment_intent") and metadata.get("purpose") == CREDIT_PURPOSE:
        return RefundFact(str(obj["payment_intent"]), str(obj["id"]), int(obj["amount"]), int(obj["amount_refunded"]),
                          str(obj["currency"]), CREDIT_PURPOSE, at)  # fmt: skip
    return None


def _invoice(change: str, obj: dict[str, Any], at: datetime) -> InvoiceFact:
    issued = _time(obj.get("created"))
    due = _time(obj["due_date"]) if obj.get("due_date") else issued + PAYMENT_TERM
    net = obj.get("subtotal_excluding_tax")
    return InvoiceFact(
        change=change,
        stripe_invoice_id=str(obj["id"]),
        number=str(obj.get("number") or obj["id"]),
        reason=str(obj.get("billing_reason") or "manual"),
        net_cents=int(net if net is not None else obj.get("subtotal") or 0),
        currency=str(obj.get("currency") or "eur"),
        issued_at=issued,
        due_at=due,
        at=at,
        amount_paid_cents=int(obj.get("amount_paid") or 0),
        payment_id=str(obj.get("payment_intent") or obj.get("charge") or ""),
        attempt=int(obj.get("attempt_count") or 0),
    )


def _subscription(change: str, obj: dict[str, Any], at: datetime, metadata: dict[str, str]) -> SubscriptionFact:
    items = (obj.get("items") or {}).get("data") or [{}]
    item = items[0] or {}
    stripe_plan = obj.get("plan") or item.get("plan") or {}
    plan, interval = plan_of(metadata.get("plan") or str(stripe_plan.get("id") or ""))
    start = obj.get("current_period_start") or item.get("current_period_start")
    end = obj.get("current_period_end") or item.get("current_period_end")
    return SubscriptionFact(
        change=change,
        stripe_subscription_id=str(obj["id"]),
        plan=plan,
        interval=metadata.get("interval") or interval or str(stripe_plan.get("interval") or ""),
        period_start=_time(start),
        period_end=_time(end),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        at=at,
    )


def plan_id(plan: str, interval: str) -> str:
    """The Stripe Plan id of one of our plans and intervals (``api/stripe_gateway.py`` creates them)."""
    return f"ownllm-{plan}-{interval}"


def plan_of(stripe_plan_id: str) -> tuple[str, str]:
    """Our plan and interval from a Stripe Plan id we made (or from metadata's plain plan name)."""
    parts = stripe_plan_id.split("-")
    if len(parts) == 3 and parts[0] == "ownllm":
        return parts[1], parts[2]
    return stripe_plan_id, ""


def _metadata(obj: dict[str, Any]) -> dict[str, str]:
    found = dict(obj.get("metadata") or {})
    details = obj.get("subscription_details") or {}
    return {**dict(details.get("metadata") or {}), **found}


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value or 0), UTC)


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None
