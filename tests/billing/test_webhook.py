"""The Stripe webhook: only Stripe's signature within 300 s gets in; each event applies once, in any order."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any
from uuid import UUID

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.stripe_webhook import MAX_BODY_BYTES, signature_header
from domain.credit_ledger import lot_id_for
from domain.invoice import Invoice, invoice_id
from domain.payment import Payment, payment_id
from domain.stripe_event import stripe_event_id
from domain.subscription import Subscription, subscription_id
from tests.support.api_client import Api
from tests.support.stripe_events import (
    SECRET,
    charge_refunded,
    event,
    invoice,
    payment_intent,
    signed,
    subscription,
)

PATH = "/api/v1/billing/stripe/webhook"
DAY = 86_400


def post(api: Api, body: dict[str, Any] | bytes, timestamp: int | None = None, secret: str = SECRET) -> Any:
    stamp = int(api.clock().timestamp()) if timestamp is None else timestamp
    raw, headers = signed(body, stamp, secret)
    return api.call("POST", PATH, content=raw, headers=headers)


def tenant(api: Api, slug: str = "acme") -> UUID:
    """A tenant signed up through the application (the HTTP signup is rate-limited per address)."""
    app = api.services.app
    return app.signup(
        slug=slug, name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r"
    ).tenant_id


def test_our_signature_is_stripes(billing_api: Api) -> None:
    raw = b'{"id": "evt_1"}'
    header = signature_header(raw, SECRET, 1_700_000_000)
    assert stripe.WebhookSignature.verify_header(raw.decode(), header, SECRET, tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(raw.decode(), header, SECRET + "x", tolerance=None)


def test_unsigned_wrongly_signed_and_stale_deliveries_are_refused(billing_api: Api) -> None:
    body = event("evt_1", "customer.created", {"id": "cus_1"}, 1)
    now = int(billing_api.clock().timestamp())
    refusals = [
        billing_api.call("POST", PATH, content=json.dumps(body).encode()),  # unsigned
        post(billing_api, body, secret="whsec_other"),
        post(billing_api, body, timestamp=now - 301),  # older than 300 s: a replay
        post(billing_api, body, timestamp=now + 301),
        billing_api.call("POST", PATH, content=b"{}", headers={"Stripe-Signature": "t=abc,v1=00"}),
    ]
    for response in refusals:
        assert response.status_code == 400, response.text
        problem = response.json()
        assert problem["type"].endswith("/webhook-signature") and problem["status"] == 400
        assert response.headers["content-type"].startswith("application/problem+json")
    raw, headers = signed(body, now)
    tampered = billing_api.call("POST", PATH, content=raw.replace(b"cus_1", b"cus_2"), headers=headers)
    assert tampered.status_code == 400
    assert post(billing_api, body, timestamp=now - 299).json() == {"received": True, "outcome": "ignored"}


def test_bad_bodies_are_problems_not_crashes(billing_api: Api) -> None:
    assert post(billing_api, b"not json").status_code == 400
    assert post(billing_api, b'{"type": "invoice.paid"}').status_code == 400  # no id
    big = post(billing_api, b"x" * (MAX_BODY_BYTES + 1))
    assert big.status_code == 413 and big.json()["status"] == 413


def test_without_a_webhook_secret_the_endpoint_is_off(api: Api) -> None:
    response = post(api, event("evt_1", "customer.created", {"id": "cus_1"}, 1))
    assert response.status_code == 404 and response.json()["type"].endswith("/billing-off")


def test_a_redelivery_changes_nothing_and_answers_200(billing_api: Api) -> None:
    tid, now = tenant(billing_api), int(billing_api.clock().timestamp())
    paid = event("evt_paid", "invoice.paid", invoice("in_1", tid, now, amount_paid=11_880, payment_intent="pi_1"), now)
    assert post(billing_api, paid).json()["outcome"] == "applied"
    app = billing_api.services.app
    version = app.repository.get(invoice_id("in_1")).version
    for _ in range(3):
        response = post(billing_api, paid)
        assert response.status_code == 200 and response.json()["outcome"] == "duplicate"
    assert app.repository.get(invoice_id("in_1")).version == version


def deliveries(tid: UUID, start: int) -> list[dict[str, Any]]:
    """One of each relevant event about one tenant's subscription, invoice and credit payment (ids of its own)."""
    return [_own(d, tid.hex[:8]) for d in _deliveries(tid, start)]


def _own(delivery: dict[str, Any], tag: str) -> dict[str, Any]:
    text = json.dumps(delivery)
    for prefix in ("evt_", "in_h", "sub_h", "pi_", "ch_"):
        text = text.replace(f'"{prefix}', f'"{prefix}{tag}')
    return json.loads(text)  # type: ignore[no-any-return]


def _deliveries(tid: UUID, start: int) -> list[dict[str, Any]]:
    inv = invoice("in_h", tid, start)
    sub = subscription("sub_h", tid, start, start + 30 * DAY)
    renewed = subscription("sub_h", tid, start + 30 * DAY, start + 61 * DAY)
    return [
        event("evt_ic", "invoice.created", inv, start),
        event("evt_if", "invoice.payment_failed", inv | {"attempt_count": 1}, start + 60),
        event("evt_ip", "invoice.paid", inv | {"amount_paid": 11_880, "payment_intent": "pi_inv"}, start + 120),
        event("evt_io", "invoice.overdue", inv, start + 40 * DAY),
        event("evt_sc", "customer.subscription.created", sub, start),
        event("evt_su", "customer.subscription.updated", renewed, start + 30 * DAY),
        event("evt_sd", "customer.subscription.deleted", renewed | {"status": "canceled"}, start + 61 * DAY),
        event("evt_ps", "payment_intent.succeeded", payment_intent("pi_c", tid, 50_00), start),
        event("evt_r1", "charge.refunded", charge_refunded("ch_c", "pi_c", tid, 50_00, 20_00), start + DAY),
        event("evt_r2", "charge.refunded", charge_refunded("ch_c", "pi_c", tid, 50_00, 50_00), start + 2 * DAY),
        event("evt_unknown", "customer.discount.created", {"id": "di_1", "metadata": {"tenant_id": str(tid)}}, start),
    ]


def aggregate_events(app: Any, aggregate_id: UUID) -> list[Any]:
    return list(app.repository.event_store.get(aggregate_id))


counter = itertools.count()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(copies=st.lists(st.integers(1, 5), min_size=11, max_size=11), seed=st.integers(0, 2**32))
def test_duplicated_and_shuffled_deliveries_have_one_effect_each(
    billing_api: Api, copies: list[int], seed: int
) -> None:
    tid, now = tenant(billing_api, f"shuffle-{next(counter)}"), int(billing_api.clock().timestamp())
    sent = [d for d, n in zip(deliveries(tid, now), copies, strict=True) for _ in range(n)]
    random.Random(seed).shuffle(sent)
    outcomes = [post(billing_api, d) for d in sent]
    assert all(r.status_code == 200 for r in outcomes), [r.text for r in outcomes if r.status_code != 200]
    app = billing_api.services.app
    for d in deliveries(tid, now):  # none lost: every event id was recorded once
        assert app.repository.get(stripe_event_id(d["id"])).event_id == d["id"]
    tag = tid.hex[:8]
    inv = app.repository.get(invoice_id(f"in_h{tag}"))
    assert isinstance(inv, Invoice) and inv.paid
    assert sum(isinstance(e, Invoice.Paid) for e in aggregate_events(app, inv.id)) == 1
    sub = app.repository.get(subscription_id(tid))
    assert isinstance(sub, Subscription) and sub.ended
    assert sum(isinstance(e, Subscription.Ended) for e in aggregate_events(app, sub.id)) == 1
    pay = app.repository.get(payment_id(f"pi_{tag}c"))
    assert isinstance(pay, Payment) and pay.succeeded and pay.refunded_cents == 50_00  # never more than refunded
    refunds = [e for e in aggregate_events(app, pay.id) if isinstance(e, Payment.Refunded)]
    assert sum(e.amount_cents for e in refunds) == 50_00
    ledger = app.credit_ledger(tid)  # the purchase became exactly one lot of prepaid credits: no double credit
    assert ledger is not None and list(ledger.lots) == [lot_id_for(tid, f"pi_{tag}c")]
    assert ledger.lots[lot_id_for(tid, f"pi_{tag}c")].amount_cents == 50_00


def test_an_invoices_created_and_paid_events_arriving_together_are_both_applied(billing_api: Api) -> None:
    """Stripe (and localstripe) send them at once: the second to create the invoice conflicts, reads again."""
    import threading

    from api.controllers.stripe_webhook import _apply
    from api.dependencies import CommandService
    from api.stripe_webhook import delivery_of

    tid = tenant(billing_api)
    commands = CommandService(billing_api.services)
    now = int(billing_api.clock().timestamp())
    for n in range(12):
        inv = invoice(f"in_race_{n}", tid, now)
        created = delivery_of(event(f"evt_c{n}", "invoice.created", inv, now))
        paid = delivery_of(
            event(f"evt_p{n}", "invoice.paid", inv | {"amount_paid": 11_880, "payment_intent": f"pi_{n}"}, now)
        )
        outcomes: list[str] = []
        threads = [
            threading.Thread(target=lambda d=d, out=outcomes, rid=f"r{n}": out.append(_apply(commands, d, rid)))
            for d in (created, paid)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) in (["applied", "applied"], ["applied", "stale"]), outcomes
        stored = billing_api.services.app.repository.get(invoice_id(f"in_race_{n}"))
        assert isinstance(stored, Invoice) and stored.paid
