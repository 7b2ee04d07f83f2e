"""The billing API: who may read and change billing, clear refusals, and a plan change reaching the proxy."""

from __future__ import annotations

from uuid import UUID

from api.services import Services
from api.stripe_webhook import delivery_of
from domain.billing_account import billing_contact_subject_id
from domain.context import Ctx
from domain.invoice import invoice_id
from domain.sealing import ERASED
from policies.retention import fiscal_year
from tests.support.api_client import Api
from tests.support.localstripe import wait_until
from tests.support.stripe_events import event, invoice

ACCOUNT = {"name": "Acme GmbH", "email": "buchhaltung@acme.example", "address": "Hauptstr. 1, Berlin",
           "country": "DE", "vat_id": "DE136695976"}  # fmt: skip


def keys(api: Api) -> tuple[str, str, str, UUID]:
    """An admin's, a member's and a billing user's keys of one tenant."""
    signed = api.signup("acme")
    admin = signed["api_key"]["secret"]
    found = {}
    for role in ("member", "billing"):
        invite = api.call("POST", "/api/v1/invites", admin, json={"email": f"{role}@acme.example", "role": role})
        assert invite.status_code == 201, invite.text
        joined = api.call("POST", "/api/v1/invites/accept", json={"token": invite.json()["token"], "name": role})
        assert joined.status_code == 201, joined.text
        found[role] = joined.json()["api_key"]["secret"]
    return admin, found["member"], found["billing"], UUID(signed["tenant"]["id"])


def test_billing_and_admin_read_billing_members_do_not(api: Api) -> None:
    admin, member, billing, _ = keys(api)
    assert api.call("GET", "/api/v1/billing/invoices", member).status_code == 403
    assert api.call("PUT", "/api/v1/billing/account", member, json=ACCOUNT).status_code == 403
    saved = api.call("PUT", "/api/v1/billing/account", billing, json=ACCOUNT)
    assert saved.status_code == 200, saved.text
    assert saved.json()["reverse_charge"] and saved.json()["vat_rate_bp"] == 0  # EU business, French seller
    for key in (admin, billing):
        assert api.call("GET", "/api/v1/billing/invoices", key).json() == []
        assert api.call("GET", "/api/v1/billing/account", key).json()["vat_id"] == "DE136695976"
    assert api.call("GET", "/api/v1/billing/subscription", admin).status_code == 404


def test_bad_billing_input_is_a_clear_problem(api: Api) -> None:
    admin, *_ = keys(api)
    bad_vat = api.call("PUT", "/api/v1/billing/account", admin, json=ACCOUNT | {"vat_id": "DE000000000"})
    assert bad_vat.status_code == 422 and bad_vat.json()["field"] == "vat_id"
    bad_country = api.call("PUT", "/api/v1/billing/account", admin, json=ACCOUNT | {"country": "Germany"})
    assert bad_country.status_code == 422 and bad_country.json()["field"] == "country"
    unknown = api.call("POST", "/api/v1/billing/subscription", admin, json={"action": "steal"})
    assert unknown.status_code == 422


def test_without_a_stripe_key_plans_are_not_sold(api: Api) -> None:
    admin, *_ = keys(api)
    api.call("PUT", "/api/v1/billing/account", admin, json=ACCOUNT)
    refused = api.call("POST", "/api/v1/billing/subscription", admin, json={"action": "subscribe", "plan": "team"})
    assert refused.status_code == 503 and refused.json()["type"].endswith("/billing-off")


def test_a_plan_change_reaches_the_proxy_within_a_second(api: Api, services: Services) -> None:
    admin, _, _, tenant_id = keys(api)
    assert services.authenticator.authenticate(admin).plan == services.settings.default_plan
    services.app.subscribe(Ctx("system", tenant_id, "r"), plan="enterprise", interval="year", period_start=api.clock())
    # The runner polls every 0.1 s: the proxy's next request sees the new plan's limits within 1 s.
    wait_until(lambda: services.authenticator.authenticate(admin).plan == "enterprise", timeout_s=1.0)


def test_amounts_stay_readable_after_the_billed_party_is_erased(api: Api, services: Services) -> None:
    admin, _, _, tenant_id = keys(api)
    api.call("PUT", "/api/v1/billing/account", admin, json=ACCOUNT)
    now = int(api.clock().timestamp())
    services.app.apply_stripe_event(
        delivery_of(event("evt_e", "invoice.created", invoice("in_e", tenant_id, now), now)), "r"
    )
    # crypto-shredding of the billed party: the key of this fiscal year's contact
    services.keys.destroy(billing_contact_subject_id(tenant_id, fiscal_year(api.clock())))
    account = services.app.billing_account(tenant_id)  # replayed from its events
    assert account is not None and (str(account.name), str(account.email), str(account.vat_id)) == (ERASED,) * 3
    assert account.country == "DE"  # VAT facts stay in clear
    billed = services.app.repository.get(invoice_id("in_e"))
    assert (billed.net_cents, billed.vat_cents, billed.tenant_id) == (99_00, 0, tenant_id)  # amounts in clear


def test_the_billing_ledger_keeps_every_fact_once_on_both_stores(api: Api, services: Services) -> None:
    from datetime import timedelta

    from tests.support.stripe_events import charge_refunded, payment_intent

    admin, _, _, tenant_id = keys(api)
    now = int(api.clock().timestamp())
    deliveries = [
        event("evt_1", "invoice.created", invoice("in_l", tenant_id, now), now),
        event("evt_2", "payment_intent.succeeded", payment_intent("pi_l", tenant_id, 25_00), now),
        event("evt_3", "charge.refunded", charge_refunded("ch_l", "pi_l", tenant_id, 25_00, 25_00), now + 60),
    ]
    for delivery in deliveries + deliveries:  # a redelivery adds no row
        services.app.apply_stripe_event(delivery_of(delivery), "r")
    services.app.invoice_due("in_l", api.clock() + timedelta(days=40), "sweep")  # 30-day term: 10 days late
    ledger = services.billing_ledger
    assert ledger is not None
    head = services.runner.log.head()
    wait_until(lambda: ledger.stored_position() >= head)  # the runner's thread writes tracked models
    entries = api.call("GET", "/api/v1/billing/ledger", admin).json()
    assert [(e["kind"], e["amount_cents"], e["vat_cents"]) for e in entries] == [
        ("invoice_issued", 99_00, 19_80), ("payment", 25_00, 0), ("refund", 25_00, 0), ("invoice_overdue", 0, 0),
        ("late_fee", 40_00 + round(118_80 * 0.1215 * 10 / 365), 0),
    ]  # fmt: skip
    before = ledger.query(tenant_id)
    ledger.clear()  # `ownllm projections rebuild billing`
    wait_until(lambda: ledger.query(tenant_id) == before)
    assert api.call("GET", "/api/v1/billing/ledger", admin, params={"since": "2999-01-01T00:00:00Z"}).json() == []
