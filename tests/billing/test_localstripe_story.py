"""A tenant subscribes, upgrades, pays and is late, against localstripe over real HTTP, webhooks included.

localstripe sends the subscription and invoice webhooks itself, signed with our secret, to the real
server; the renewal invoice that is never paid is sent as Stripe would sign it (localstripe has no
clock to move). Time then moves by an injected clock: the sweep makes it overdue with late fees.
"""

from __future__ import annotations

import csv
import io
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from api.app import create_app
from api.billing_service import BillingService, build_billing_service
from api.billing_sweep import BillingSweep
from api.dependencies import CommandService
from api.services import Services, build_services
from api.settings import Settings
from api.stripe_gateway import StripeGateway
from api.sweep_tasks import sweep_tasks
from domain.context import Ctx
from tests.support.clock import ManualClock
from tests.support.localstripe import localstripe, send_webhooks_to, wait_until
from tests.support.server import serve
from tests.support.stripe_events import SECRET, event, invoice, signed


@pytest.fixture(scope="module")
def stripe_base() -> Iterator[str]:
    """One localstripe for the module. It delivers its own events a second after the change, to the webhook
    configured then: possibly the next test's server. Each test signs up its own slug, so another test's late
    events name a tenant this test's store does not know (ignored)."""
    with localstripe() as base:
        yield base


@pytest.fixture
def clock() -> ManualClock:
    """Real now, whatever ``TEST_CLOCK_START`` says: localstripe signs its webhooks with the real clock."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def persistence() -> str:
    return "sqlite"  # the story is about Stripe; both stores are covered by the domain tests


@pytest.fixture
def billed(
    stripe_base: str, make_settings: Callable[..., Settings], clock: ManualClock
) -> Iterator[tuple[Services, str]]:
    settings = make_settings(stripe_secret_key="sk_test_ownllm", stripe_api_base=stripe_base,
                             stripe_webhook_secret=SECRET)  # fmt: skip
    services = build_services(settings, clock=clock)
    with serve(create_app(settings, services)) as base_url:
        send_webhooks_to(stripe_base, f"{base_url}/api/v1/billing/stripe/webhook", SECRET)
        yield services, base_url
    services.close()


def test_subscribe_upgrade_pay_and_be_late(billed: tuple[Services, str], clock: ManualClock) -> None:
    services, base_url = billed
    app = services.app

    # The billing contact: a French company (French VAT, 20 %); its card, as Stripe.js would have saved it.
    account = {"name": "Acme SAS", "email": "compta@acme.example", "address": "1 rue de la Paix, Paris",
               "country": "FR", "vat_id": "FR40303265045"}  # fmt: skip
    acme, http, gateway, customer, saved = _customer_with_a_card(services, base_url, "acme", account)
    assert saved["vat_rate_bp"] == 2000 and not saved["reverse_charge"]

    # Subscribe to Team monthly: charged in advance; the plan's limits apply at once.
    done = http.post("/api/v1/billing/subscription", json={"action": "subscribe", "plan": "team", "interval": "month"})
    assert done.status_code == 200, done.text
    assert (done.json()["charged_cents"], done.json()["vat_cents"]) == (99_00, 19_80)  # French VAT on top
    assert services.directory.tenants[acme.tenant_id].plan == "team"
    wait_until(lambda: [i.status for i in services.billing.tenant_invoices(acme.tenant_id)] == ["paid"])

    # Upgrade mid-cycle: the difference (499.00 - 99.00), not a prorated amount, invoiced and paid now.
    done = http.post("/api/v1/billing/subscription", json={"action": "upgrade", "plan": "startup"})
    assert done.status_code == 200, done.text
    assert (done.json()["charged_cents"], done.json()["vat_cents"]) == (400_00, 80_00)
    assert services.directory.tenants[acme.tenant_id].plan == "startup"
    wait_until(lambda: [i.status for i in services.billing.tenant_invoices(acme.tenant_id)] == ["paid", "paid"])
    invoices = http.get("/api/v1/billing/invoices").json()
    assert [(i["net_cents"], i["vat_cents"], i["total_cents"]) for i in invoices] == [
        (99_00, 19_80, 118_80), (400_00, 80_00, 480_00),
    ]  # fmt: skip
    stripe_invoices = gateway.invoices(customer)
    assert sorted((i["amount_paid"], i["tax"]) for i in stripe_invoices) == [(118_80, 19_80), (480_00, 80_00)]
    tax_rates = {rate["id"] for i in stripe_invoices for rate in i["default_tax_rates"]}
    assert len(tax_rates) == 1  # one TaxRate for French VAT, found again rather than made twice

    # Cancel: access continues until the end of the paid cycle.
    done = http.post("/api/v1/billing/subscription", json={"action": "cancel"})
    assert done.status_code == 200 and done.json()["action"] == "cancelled"
    sub = http.get("/api/v1/billing/subscription").json()
    assert (sub["plan"], sub["status"]) == ("startup", "ending")

    # An invoice that is never paid (sent as Stripe signs it), then time moves on.
    now = int(clock().timestamp())
    late = event("evt_late", "invoice.finalized", invoice("in_late", acme.tenant_id, now, due_date=now + 86_400), now)
    raw, headers = signed(late, now)
    assert httpx.post(f"{base_url}/api/v1/billing/stripe/webhook", content=raw, headers=headers).status_code == 200
    sweep = BillingSweep(app, services.billing, services.runner.catch_up)
    clock.advance(days=32)  # past the paid cycle's end in any month (December's is 31 days; Stripe's clock is ahead)
    assert sweep.run(clock()) >= 2  # overdue + late fees (and the cancelled subscription ends)
    assert sweep.run(clock()) == 0  # idempotent
    rows = {i["number"]: i for i in http.get("/api/v1/billing/invoices").json()}
    late_row = rows["OWN-in_late"]
    assert late_row["status"] == "overdue"
    late_fees = 40_00 + round(118_80 * 0.1215 * 31 / 365)  # 31 days past the due date, a day after issue
    assert late_row["late_fees_cents"] == late_fees
    assert services.directory.tenants[acme.tenant_id].plan == ""  # the subscription ended: default plan

    export = http.get("/api/v1/billing/invoices.csv")
    assert export.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(export.text)))
    assert [line["total"] for line in lines] == ["118.80", "480.00", "118.80"]
    assert lines[-1]["late_fees"] == f"{late_fees / 100:.2f}" and lines[-1]["status"] == "overdue"


def test_a_business_elsewhere_in_the_eu_is_charged_without_vat(billed: tuple[Services, str]) -> None:
    """Reverse charge: a German business with a VAT id pays the net price; Stripe holds no tax for it."""
    services, base_url = billed
    account = {"name": "Acme GmbH", "email": "buchhaltung@acme.example", "address": "Hauptstr. 1, Berlin",
               "country": "DE", "vat_id": "DE136695976"}  # fmt: skip
    acme, http, gateway, customer, saved = _customer_with_a_card(services, base_url, "gmbh", account)
    assert saved["reverse_charge"]
    done = http.post("/api/v1/billing/subscription", json={"action": "subscribe", "plan": "team", "interval": "month"})
    assert (done.json()["charged_cents"], done.json()["vat_cents"]) == (99_00, 0), done.text
    wait_until(lambda: [i.status for i in services.billing.tenant_invoices(acme.tenant_id)] == ["paid"])
    (invoice,) = http.get("/api/v1/billing/invoices").json()
    assert (invoice["net_cents"], invoice["vat_cents"], invoice["total_cents"]) == (99_00, 0, 99_00)
    (charged,) = gateway.invoices(customer)
    assert (charged["amount_paid"], charged["tax"]) == (99_00, 0)
    rates = [(r["percentage"], r["description"]) for r in charged["default_tax_rates"]]
    assert rates == [(0, "VAT 0 % (reverse-charge)")]

    # The company moves to France: its subscription's next invoices carry French VAT.
    moved = account | {"address": "1 rue de la Paix, Paris", "country": "FR", "vat_id": "FR40303265045"}
    assert http.put("/api/v1/billing/account", json=moved).json()["vat_rate_bp"] == 2000
    subscription = gateway.client.v1.subscriptions.retrieve(str(charged["subscription"])).to_dict()
    assert [r["percentage"] for r in subscription["default_tax_rates"]] == [20]


def test_a_subscription_stripe_taxes_wrongly_is_given_its_vat_by_the_sweep(
    billed: tuple[Services, str], clock: ManualClock
) -> None:
    """A subscription whose Stripe TaxRates are not its VAT decision's (made before Stripe was told the VAT,
    or whose re-taxing failed at Stripe) gets the right one at the sweeper's first pass, and daily after."""
    services, base_url = billed
    account = {"name": "Acme SAS", "email": "compta@acme.example", "address": "1 rue de la Paix, Paris",
               "country": "FR", "vat_id": "FR40303265045"}  # fmt: skip
    acme, http, gateway, _, _ = _customer_with_a_card(services, base_url, "stale", account)
    done = http.post("/api/v1/billing/subscription", json={"action": "subscribe", "plan": "team", "interval": "month"})
    assert done.status_code == 200, done.text
    wait_until(lambda: acme.tenant_id in services.billing.live_subscriptions())
    subscription = services.app.subscription(acme.tenant_id)
    assert subscription is not None
    sub_id = subscription.stripe_subscription_id
    (french,) = gateway.subscription_tax_rates(sub_id)
    stale = gateway.client.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 0, "inclusive": False})
    gateway.set_tax_rates(acme.tenant_id, sub_id, [stale.id], "as-a-failed-retax-left-it")
    moved_desk = http.put("/api/v1/billing/account", json=account | {"email": "factures@acme.example"})
    assert moved_desk.status_code == 200 and gateway.subscription_tax_rates(sub_id) == [stale.id]  # same VAT: not asked

    (sweep,) = [task for task in sweep_tasks(services) if task.name == "stripe-tax"]
    assert sweep.run(clock()) == 0  # it records no event: only Stripe changes
    assert gateway.subscription_tax_rates(sub_id) == [french]

    gateway.set_tax_rates(acme.tenant_id, sub_id, [stale.id], "stale-again")
    clock.advance(hours=23)
    sweep.run(clock())  # not due yet: once a day
    assert gateway.subscription_tax_rates(sub_id) == [stale.id]
    clock.advance(hours=1)
    sweep.run(clock())
    assert gateway.subscription_tax_rates(sub_id) == [french]
    billing = build_billing_service(_config(services), services)
    assert billing.reconcile_tax(services.billing.live_subscriptions()) == 0  # every one already right


def test_stripe_out_of_reach_is_a_502_problem_and_nothing_is_recorded(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(stripe_secret_key="sk_test_ownllm", stripe_api_base=dead, stripe_webhook_secret=SECRET)
    services = build_services(settings, clock=clock)
    try:
        with serve(create_app(settings, services)) as base_url:
            acme = services.app.signup(slug="nostripe", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                                       request_id="r")  # fmt: skip
            services.runner.catch_up()
            http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {acme.admin_key.secret}"},
                                timeout=60)  # fmt: skip
            account = {"name": "Acme SAS", "email": "compta@acme.example", "address": "Paris", "country": "FR"}
            assert http.put("/api/v1/billing/account", json=account).status_code == 200  # no subscription: no call
            answer = http.post("/api/v1/billing/subscription", json={"action": "subscribe", "plan": "team"})
            assert answer.status_code == 502, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["type"].endswith("/payment-provider-unavailable")
            assert services.app.subscription(acme.tenant_id) is None
    finally:
        services.close()


def test_credits_bought_with_a_saved_card_become_one_lot(billed: tuple[Services, str], clock: ManualClock) -> None:
    services, base_url = billed
    app = services.app
    acme = app.signup(slug="lots", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r")
    ctx = Ctx(f"user:{acme.admin_user_id}", acme.tenant_id, "buy-1")
    app.save_billing_account(ctx, name="Acme AS", email="regnskap@acme.example", address="Storgata 1, Oslo",
                             country="NO")  # fmt: skip
    gateway = StripeGateway(_config(services))
    billing = BillingService(app, CommandService(services), gateway)
    card = _save_card(gateway, billing.customer(ctx))
    intent_id, _, status = billing.buy_credits(ctx, 25_00, payment_method=card)
    assert status == "succeeded"
    # localstripe sends payment_intent.succeeded a second later; the test signs it now from localstripe's object.
    intent = gateway.client.v1.payment_intents.retrieve(intent_id).to_dict()
    now = int(clock().timestamp())
    raw, headers = signed(event(f"evt_{intent_id}", "payment_intent.succeeded", intent, now), now)
    for _ in range(3):  # redelivered: still one lot
        assert httpx.post(f"{base_url}/api/v1/billing/stripe/webhook", content=raw, headers=headers).status_code == 200
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None and [lot.amount_cents for lot in ledger.lots.values()] == [25_00]
    payments = services.billing.tenant_payments(acme.tenant_id)
    assert [(p.amount_cents, p.currency, p.succeeded_at is not None) for p in payments] == [(25_00, "usd", True)]


def _customer_with_a_card(
    services: Services, base_url: str, slug: str, account: dict[str, str]
) -> tuple[Any, httpx.Client, StripeGateway, str, dict[str, Any]]:
    """A tenant whose admin saved ``account`` (the answer is returned), and its Stripe customer with a card
    saved as Stripe.js would have: (signed up, the admin's client, the gateway, the customer id, the answer)."""
    acme = services.app.signup(slug=slug, name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                               request_id="r")  # fmt: skip
    services.runner.catch_up()
    http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {acme.admin_key.secret}"}, timeout=30)
    answer = http.put("/api/v1/billing/account", json=account)
    assert answer.status_code == 200, answer.text
    gateway = StripeGateway(_config(services))
    ctx = Ctx(f"user:{acme.admin_user_id}", acme.tenant_id, "setup")
    customer = BillingService(services.app, CommandService(services), gateway).customer(ctx)
    _save_card(gateway, customer)
    return acme, http, gateway, customer, answer.json()


def _config(services: Services) -> Any:
    from api.billing_config import billing_config

    return billing_config(services.settings)


def _save_card(gateway: StripeGateway, customer: str) -> str:
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = gateway.client.v1.payment_methods.create(params={"type": "card", "card": card})
    gateway.client.v1.payment_methods.attach(method.id, params={"customer": customer})
    gateway.client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method.id}})
    return str(method.id)


def test_credits_bought_and_refunded_over_the_api_only_while_untouched(
    billed: tuple[Services, str], clock: ManualClock
) -> None:
    """The billing API buys credits through Stripe and refunds an untouched lot once; a used one is refused."""
    services, base_url = billed
    app = services.app
    acme = services.command(
        app.signup, slug="refunds", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r"
    )
    admin = {"Authorization": f"Bearer {acme.admin_key.secret}"}
    account = {"name": "Acme AS", "email": "regnskap@acme.example", "address": "Storgata 1, Oslo", "country": "NO"}
    assert httpx.put(f"{base_url}/api/v1/billing/account", headers=admin, json=account).is_success
    gateway = StripeGateway(_config(services))
    card = _save_card(gateway, BillingService(app, CommandService(services), gateway).customer(
        Ctx(f"user:{acme.admin_user_id}", acme.tenant_id, "c")))  # fmt: skip
    too_small = httpx.post(f"{base_url}/api/v1/billing/credits/purchases", headers=admin, json={"amount_cents": 99})
    assert too_small.status_code in (400, 422)
    bought = httpx.post(f"{base_url}/api/v1/billing/credits/purchases", headers=admin,
                        json={"amount_cents": 10_00, "payment_method": card})  # fmt: skip
    assert bought.status_code == 201 and bought.json()["status"] == "succeeded", bought.text
    intent = gateway.client.v1.payment_intents.retrieve(bought.json()["payment_intent_id"]).to_dict()
    now = int(clock().timestamp())
    raw, headers = signed(event(f"evt_{intent['id']}", "payment_intent.succeeded", intent, now), now)
    assert httpx.post(f"{base_url}/api/v1/billing/stripe/webhook", content=raw, headers=headers).status_code == 200
    ledger = app.credit_ledger(acme.tenant_id)
    assert ledger is not None
    (lot_id,) = ledger.lots
    refunded = httpx.post(f"{base_url}/api/v1/billing/credits/lots/{lot_id}/refund", headers=admin)
    assert refunded.status_code == 201 and refunded.json()["refunded_cents"] == 10_00, refunded.text
    assert refunded.json()["refund_id"].startswith("re_")
    again = httpx.post(f"{base_url}/api/v1/billing/credits/lots/{lot_id}/refund", headers=admin)
    assert again.status_code == 409 and "refunded" in again.text  # once: never a second refund
    assert httpx.post(f"{base_url}/api/v1/billing/credits/lots/{uuid4()}/refund", headers=admin).status_code == 404
