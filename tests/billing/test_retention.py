"""Billing records by law: the billed party sealed per fiscal year, carried forward, erased when the year's
retention ends (France 10 years, Norway 5), while amounts, dates and numbers stay in clear."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from litestar.testing import TestClient

from api.app import create_app
from api.cli_audit import catch_up_ledger, verify_database
from api.ledger_keys import public_keys
from api.services import Services, build_services
from api.settings import Settings
from api.stripe_webhook import delivery_of
from api.sweep_tasks import build_sweeper
from domain.billing_account import BillingAccount, billing_contact_subject_id, billing_subject_id
from domain.context import Ctx
from domain.retention import BillingRetention
from domain.sealing import ERASED, PersonalData
from tests.support.api_client import Api
from tests.support.clock import ManualClock
from tests.support.stripe_events import event, invoice

ACME = {"name": "Canary Acme SARL", "email": "compta@canary.example", "address": "1 rue du Canari, Paris",
        "country": "FR", "vat_id": ""}  # fmt: skip
TICK = timedelta(microseconds=1)


def _invoice(services: Services, tenant_id: UUID, stripe_id: str, at: datetime) -> None:
    created = int(at.timestamp())
    delivery = delivery_of(
        event(f"evt_{stripe_id}", "invoice.created", invoice(stripe_id, tenant_id, created), created)
    )
    assert services.app.apply_stripe_event(delivery, f"r-{stripe_id}") == "applied"


def _ended(services: Services, tenant_id: UUID) -> list[int]:
    """The fiscal years whose billing retention ended for the tenant, as the log records them."""
    log = services.runner.log
    found = log.read(0, log.head(), (get_topic(BillingRetention.Ended),), 100_000)
    years = [y for y in range(1990, 2200) for n in found if n.originator_id == BillingRetention.create_id(tenant_id, y)]
    return sorted(years)


def _wait_for(check: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_fiscal_years_billed_party_goes_when_its_retention_ends_and_not_a_second_before(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    y = clock.now.year  # signup needs the terms in force: the story starts today, in fiscal year y
    settings = make_settings()  # the seller is French: billing records are kept 10 years
    services = build_services(settings, clock=clock)
    second: Services | None = None
    try:
        with TestClient(create_app(settings, services)) as client:
            api = Api(client, services, clock)
            signed = api.signup("canary")
            admin, tenant_id = signed["api_key"]["secret"], UUID(signed["tenant"]["id"])
            sweeper = build_sweeper(services)

            # Year y: the billed party is sealed under the key of fiscal year y; its invoice shows it.
            assert api.call("PUT", "/api/v1/billing/account", admin, json=ACME).status_code == 200
            account = services.app.billing_account(tenant_id)
            assert account is not None and account.name.subject_id == billing_contact_subject_id(tenant_id, y)
            issued = clock.now
            _invoice(services, tenant_id, "in_old", issued)

            # y + 1: the sweeper carries the contact into the new year, once; that year's invoice shows it too.
            clock.now = datetime(y + 1, 1, 1, tzinfo=UTC)
            assert sweeper.run_once(clock.now)["billing-retention"] == 1
            assert sweeper.run_once(clock.now)["billing-retention"] == 0
            carried = services.app.billing_account(tenant_id)
            assert carried is not None and carried.fiscal_year == y + 1 and str(carried.name) == ACME["name"]
            clock.advance(days=40)
            _invoice(services, tenant_id, "in_new", clock.now)
            invoices = {i["number"]: i for i in api.call("GET", "/api/v1/billing/invoices", admin).json()}
            assert {i["billed_to"]["name"] for i in invoices.values()} == {ACME["name"]}

            # Another API process has read (and cached) year y's key by now.
            second = build_services(settings, clock=clock)
            assert second.billing.invoices_by_tenant[tenant_id][0].billed_to.name == ACME["name"]  # type: ignore[union-attr]

            # Ten years after the end of year y, less a microsecond: nothing goes (only the yearly carry-forward).
            end_old = datetime(y + 11, 1, 1, tzinfo=UTC)
            clock.now = end_old - TICK
            sweeper.run_once(clock.now)
            assert _ended(services, tenant_id) == []
            assert services.keys.key_for(billing_contact_subject_id(tenant_id, y), create=False) is not None

            # At the instant: exactly year y's key goes, once.
            clock.now = end_old
            assert sweeper.run_once(clock.now)["billing-retention"] >= 1
            assert sweeper.run_once(clock.now)["billing-retention"] == 0
            assert _ended(services, tenant_id) == [y]
            assert services.keys.key_for(billing_contact_subject_id(tenant_id, y), create=False) is None
            assert services.keys.key_for(billing_contact_subject_id(tenant_id, y + 1), create=False) is not None

            # Year y's invoice keeps its number, dates and amounts in clear; its billed party is erased.
            invoices = {i["number"]: i for i in api.call("GET", "/api/v1/billing/invoices", admin).json()}
            old, newer = invoices["OWN-in_old"], invoices["OWN-in_new"]
            assert (old["net_cents"], old["total_cents"], old["issued_at"][:10]) == (9900, 11880, f"{issued:%Y-%m-%d}")
            assert old["billed_to"] == {"name": ERASED, "email": ERASED, "address": ERASED, "country": "FR",
                                        "vat_id": ""}  # fmt: skip
            assert newer["billed_to"]["name"] == ACME["name"]  # year y + 1 lasts a year longer
            # The contact in force still reads, here and replayed from its events.
            assert api.call("GET", "/api/v1/billing/account", admin).json()["name"] == ACME["name"]
            replayed = services.app.billing_account(tenant_id)
            assert replayed is not None and str(replayed.email) == ACME["email"]

            # The other process follows the event: it forgets the cached key and redacts its copies.
            assert _wait_for(lambda: second.billing.invoices_by_tenant[tenant_id][0].billed_to.name == ERASED)  # type: ignore[union-attr]
            assert second.keys.key_for(billing_contact_subject_id(tenant_id, y), create=False) is None
            opened = _first_contact(second, tenant_id)
            assert opened.value == ERASED  # year y's events, replayed there, read <erased>

            # The integrity ledger still verifies: the events were never touched.
            catch_up_ledger(services)
            services.ledger.checkpoint()
            assert services.ledger.signer is not None
            lines, ok = verify_database(services, public_keys(services.ledger.signer, settings), services.ledger.origin)
            assert ok, lines
    finally:
        if second is not None:
            second.close()
        services.close()


def _first_contact(services: Services, tenant_id: UUID) -> PersonalData:
    """The name in the account's first event, read through this process's key store."""
    account_id = billing_subject_id(tenant_id)
    first = next(iter(services.app.events.get(account_id)))
    assert isinstance(first, BillingAccount.Opened)
    return first.name


def test_norway_keeps_five_years_and_a_terminated_tenants_last_contact_goes_with_its_year(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    y = clock.now.year
    services = build_services(make_settings(seller_jurisdiction="NO"), clock=clock)
    try:
        signed = services.command(services.app.signup, slug="nordlys", name="N", admin_name="A",
                                  admin_email="a@nordlys.example", request_id="r")  # fmt: skip
        ctx = Ctx(f"user:{signed.admin_user_id}", signed.tenant_id, "r")
        services.command(services.app.save_billing_account, ctx, **ACME | {"country": "NO"})
        _invoice(services, signed.tenant_id, "in_n", clock.now)
        sweeper = build_sweeper(services)
        clock.now = datetime(y + 1, 2, 1, tzinfo=UTC)
        sweeper.run_once(clock.now)  # carried into y + 1
        services.command(services.app.terminate_tenant, ctx, "contract ended")
        clock.now = datetime(y + 6, 1, 1, tzinfo=UTC) - TICK
        sweeper.run_once(clock.now)  # the contact of a terminated tenant is no longer carried forward
        assert _ended(services, signed.tenant_id) == []
        clock.now = datetime(y + 6, 1, 1, tzinfo=UTC)  # 5 years after the end of year y
        sweeper.run_once(clock.now)
        assert _ended(services, signed.tenant_id) == [y]
        account = services.app.billing_account(signed.tenant_id)
        assert account is not None and str(account.name) == ACME["name"]  # y + 1's contact stays a year longer
        clock.now = datetime(y + 7, 1, 1, tzinfo=UTC)
        sweeper.run_once(clock.now)
        assert _ended(services, signed.tenant_id) == [y, y + 1]
        gone = services.app.billing_account(signed.tenant_id)
        assert gone is not None and str(gone.name) == ERASED and gone.country == "NO"
        assert services.billing.accounts[signed.tenant_id].name == ERASED
        assert sweeper.run_once(clock.now + timedelta(days=400))["billing-retention"] == 0  # nothing left to end
    finally:
        services.close()


def test_a_contact_sealed_before_per_year_keys_is_carried_forward_and_its_key_ends_with_its_last_year(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    """Old events (``fiscal_year`` 0) sealed with the account's own key still open, and that key ends too."""
    services = build_services(make_settings(), clock=clock)
    try:
        signed = services.command(services.app.signup, slug="legacy", name="L", admin_name="A",
                                  admin_email="a@legacy.example", request_id="r")  # fmt: skip
        legacy = billing_subject_id(signed.tenant_id)
        old: dict[str, Any] = {k: PersonalData(legacy, ACME[k]) for k in ("name", "email", "address")}
        account = BillingAccount(tenant_id=signed.tenant_id, country="FR", vat_id=None, actor="a", request_id="r",
                                 **old)  # fmt: skip
        services.command(services.app.save, account)
        year = datetime.now(UTC).year  # the event's own timestamp dates a legacy contact
        clock.now = datetime(year + 1, 1, 1, tzinfo=UTC)
        sweeper = build_sweeper(services)
        sweeper.run_once(clock.now)
        carried = services.app.billing_account(signed.tenant_id)
        assert carried is not None and carried.fiscal_year == year + 1 and str(carried.address) == ACME["address"]
        clock.now = datetime(year + 11, 1, 1, tzinfo=UTC)
        sweeper.run_once(clock.now - TICK)
        assert services.keys.key_for(legacy, create=False) is not None
        sweeper.run_once(clock.now)
        assert _ended(services, signed.tenant_id) == [year]
        assert services.keys.key_for(legacy, create=False) is None
        still = services.app.billing_account(signed.tenant_id)
        assert still is not None and str(still.name) == ACME["name"]  # the contact in force survived
    finally:
        services.close()


def test_account_events_stored_before_fiscal_years_load_with_the_account_key(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    """Bytes as the earlier code wrote them (no ``fiscal_year`` field) decode, and the account replays."""
    import json
    from dataclasses import replace

    services = build_services(make_settings(), start_runner=False, clock=clock)
    try:
        tenant_id = uuid.uuid4()
        legacy = billing_subject_id(tenant_id)
        sealed: dict[str, Any] = {k: PersonalData(legacy, ACME[k]) for k in ("name", "email", "address")}
        account = BillingAccount(tenant_id=tenant_id, country="FR", vat_id=None, actor="a", request_id="r", **sealed)
        opened = account.collect_events()[0]
        stored = services.app.mapper.to_stored_event(opened)
        state = json.loads(stored.state)
        del state["fiscal_year"]
        old = services.app.mapper.to_domain_event(replace(stored, state=json.dumps(state).encode()))
        assert isinstance(old, BillingAccount.Opened) and old.fiscal_year == 0
        replayed = old.mutate(None)
        assert replayed is not None and replayed.fiscal_year == 0 and str(replayed.name) == ACME["name"]
    finally:
        services.close()
