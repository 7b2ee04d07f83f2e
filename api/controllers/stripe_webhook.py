"""``POST /api/v1/billing/stripe/webhook``: Stripe's events, verified, deduplicated and applied as ours."""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Response, post
from litestar.di import NamedDependency

from api.billing_config import BillingConfig
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.problems import problem
from api.stripe_webhook import MAX_BODY_BYTES, SignatureRejected, delivery_of, verify
from domain.application import OwnLLM
from domain.errors import Conflict


class WebhookOut(msgspec.Struct):
    """Stripe only needs a 2xx; ``outcome`` says what we did (applied, duplicate, ignored, stale, ...)."""

    received: bool
    outcome: str


CONFLICT_RETRIES = 4  # concurrent deliveries touching one invoice: applied again before answering 409


@post(
    "/api/v1/billing/stripe/webhook",
    operation_id="stripeWebhook",
    tags=["billing"],
    status_code=200,
    request_max_body_size=MAX_BODY_BYTES,
)
async def stripe_webhook(
    request: AnyRequest,
    billing: NamedDependency[BillingConfig],
    commands: NamedDependency[CommandService],
    now: NamedDependency[datetime],
    request_id: NamedDependency[str],
) -> WebhookOut | Response[dict[str, Any]]:
    """Receive a Stripe event: signature checked (300 s tolerance), applied once, unknown types acknowledged."""
    if not billing.webhook_secret:
        return problem(404, "Not found", "billing webhooks are not configured on this server", "billing-off")
    body = await request.body()
    try:
        verify(body, request.headers.get("stripe-signature"), billing.webhook_secret, now)
    except SignatureRejected as exc:
        return problem(400, "Webhook signature rejected", str(exc), "webhook-signature")
    try:
        event = msgspec.json.decode(body)
        delivery = delivery_of(event)
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
        return problem(
            400, "Malformed Stripe event", "the body is not a Stripe event this endpoint can read", "stripe-event"
        )
    apply = functools.partial(_apply, commands, delivery, request_id)
    return WebhookOut(received=True, outcome=await anyio.to_thread.run_sync(apply))


def _apply(commands: CommandService, delivery: Any, request_id: str) -> str:
    """Apply the event; when another delivery changed the same records at the same moment (Stripe sends an
    invoice's created and paid events together), read again and apply, a few times, rather than leave it to
    Stripe's retry hours later. The last conflict is answered 409 and Stripe retries it."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return str(commands.run(OwnLLM.apply_stripe_event, delivery, request_id))
        except Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover
