"""Stripe events as Stripe sends them (object shapes of API 2024+), signed exactly as Stripe signs them."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from api.stripe_webhook import signature_header

SECRET = "whsec_test_" + "s" * 32


def event(event_id: str, kind: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    """A Stripe event envelope."""
    return {"id": event_id, "object": "event", "type": kind, "created": created, "livemode": False,
            "data": {"object": obj}, "api_version": "2024-06-20"}  # fmt: skip


def signed(body: dict[str, Any] | bytes, timestamp: int, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers of a delivery signed at ``timestamp``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {"Stripe-Signature": signature_header(raw, secret, timestamp), "Content-Type": "application/json"}


def invoice(invoice_id: str, tenant_id: UUID, created: int, **extra: Any) -> dict[str, Any]:
    """A subscription invoice of 99.00 EUR net."""
    return {"id": invoice_id, "object": "invoice", "customer": "cus_x", "number": f"OWN-{invoice_id}",
            "billing_reason": "subscription_create", "subtotal": 9900, "currency": "eur", "created": created,
            "due_date": None, "amount_paid": 0, "attempt_count": 0, "metadata": {"tenant_id": str(tenant_id)},
            **extra}  # fmt: skip


def subscription(sub_id: str, tenant_id: UUID, start: int, end: int, **extra: Any) -> dict[str, Any]:
    """A Team monthly subscription on the Plan ``ownllm-team-month``."""
    return {"id": sub_id, "object": "subscription", "customer": "cus_x", "status": "active",
            "current_period_start": start, "current_period_end": end, "cancel_at_period_end": False,
            "plan": {"id": "ownllm-team-month", "interval": "month"}, "metadata": {"tenant_id": str(tenant_id)},
            **extra}  # fmt: skip


def payment_intent(pi_id: str, tenant_id: UUID, amount: int) -> dict[str, Any]:
    """A succeeded credit purchase."""
    return {"id": pi_id, "object": "payment_intent", "amount": amount, "amount_received": amount, "currency": "usd",
            "customer": "cus_x", "metadata": {"tenant_id": str(tenant_id), "purpose": "credits"}}  # fmt: skip


def charge_refunded(charge_id: str, pi_id: str, tenant_id: UUID, amount: int, refunded: int) -> dict[str, Any]:
    """A charge of a credit purchase with ``refunded`` cents given back so far."""
    return {"id": charge_id, "object": "charge", "payment_intent": pi_id, "amount": amount,
            "amount_refunded": refunded, "currency": "usd", "customer": "cus_x",
            "metadata": {"tenant_id": str(tenant_id), "purpose": "credits"}}  # fmt: skip
