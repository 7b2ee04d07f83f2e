"""The retention sweep over clocks: every fiscal year's billing contact goes once, never a second early, and
the contact in force never goes while the tenant lives; a terminated tenant's activity ends once, on time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from api.settings import load_settings
from api.stripe_webhook import delivery_of
from api.sweep_tasks import build_sweeper
from api.sweeper import Sweeper
from domain.billing_account import billing_contact_subject_id
from domain.context import Ctx
from domain.retention import ActivityRetention, BillingRetention
from domain.sealing import ERASED
from policies.retention import Records, fiscal_year, fiscal_year_retained_until
from tests.support.clock import ManualClock
from tests.support.stripe_events import event, invoice

SECOND = timedelta(seconds=1)
TICK = timedelta(microseconds=1)
YEAR_S = 365 * 24 * 3600


@pytest.fixture(scope="module", params=["FR", "NO"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[Services, Sweeper, ManualClock]
]:  # fmt: skip
    clock = ManualClock()  # signup needs the terms in force: the world starts today
    var = tmp_path_factory.mktemp("retention") / "var"
    services = build_services(load_settings({}, var_dir=str(var), inference=False, nats_public_url="tls://n:4222",
                                            seller_jurisdiction=request.param),
                              start_runner=False, clock=clock)  # fmt: skip
    sweeper = build_sweeper(services)
    services.sweeper = sweeper
    yield services, sweeper, clock
    services.close()


def _ended(services: Services, tenant_id: UUID, year: int) -> int:
    log = services.runner.log
    found = log.read(0, log.head(), (get_topic(BillingRetention.Ended),), 100_000)
    return sum(1 for n in found if n.originator_id == BillingRetention.create_id(tenant_id, year))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    opened_s=st.integers(0, YEAR_S),
    invoices=st.lists(st.integers(0, 3 * YEAR_S), max_size=3),
    around=st.lists(st.sampled_from([-SECOND, -TICK, timedelta(0), TICK, SECOND]), min_size=1, max_size=4),
    extra=st.lists(st.integers(0, 14 * YEAR_S), max_size=3),
)
def test_each_years_contact_goes_once_at_its_instant_and_the_one_in_force_stays(
    world: tuple[Services, Sweeper, ManualClock], opened_s: int, invoices: list[int], around: list[timedelta],
    extra: list[int],
) -> None:  # fmt: skip
    services, sweeper, clock = world
    seller = services.app.seller_jurisdiction
    start = clock.now = clock.now + timedelta(days=20 * 366)  # a fresh stretch of time for each example
    signed = services.command(services.app.signup, slug=f"r{uuid.uuid4().hex[:10]}", name="R", admin_name="A",
                              admin_email="a@r.example", request_id="r")  # fmt: skip
    tenant_id = signed.tenant_id
    clock.now = start + timedelta(seconds=opened_s)
    ctx = Ctx(f"user:{signed.admin_user_id}", tenant_id, "r")
    services.command(services.app.save_billing_account, ctx, name="Canary", email="c@r.example", address="1 Road",
                     country="FR")  # fmt: skip
    first = fiscal_year(clock.now)
    years = {first}
    for i, offset in enumerate(sorted(invoices)):  # invoices in later years, each after a pass at its instant
        clock.now = start + timedelta(seconds=opened_s + offset)
        sweeper.run_once(clock.now)
        created = int(clock.now.timestamp())
        stripe_id = f"in_{tenant_id.hex[:8]}_{i}"
        for kind in ("invoice.created", "invoice.paid"):  # paid: no late fees accrue over the decades swept
            body = invoice(stripe_id, tenant_id, created, amount_paid=11_880)
            services.command(services.app.apply_stripe_event, delivery_of(event(f"{kind}{stripe_id}", kind, body,
                                                                                created)), "r")  # fmt: skip
        years.add(fiscal_year(clock.now))
    last_written = clock.now
    ends = {year: fiscal_year_retained_until(seller, year) for year in years}
    instants = [ends[first] + delta for delta in around]
    instants += [last_written + timedelta(seconds=s) for s in extra]
    for now in sorted(i for i in instants if i >= last_written):
        clock.now = now
        sweeper.run_once(now)
        assert sweeper.run_once(now)["billing-retention"] == 0  # twice at the same instant: nothing the second time
        for year, end in ends.items():
            gone = services.keys.key_for(billing_contact_subject_id(tenant_id, year), create=False) is None
            assert _ended(services, tenant_id, year) == int(now >= end), (year, now - end)
            assert gone == (now >= end), (year, now - end)
        for year_ended, when in [(y, fiscal_year_retained_until(seller, y)) for t, y in services.retention.billing_ended
                                 if t == tenant_id]:  # fmt: skip
            assert now >= when, year_ended  # no year of this tenant ended early, whichever it was
        account = services.app.billing_account(tenant_id)
        assert account is not None and account.name.value == "Canary" != ERASED  # the contact in force stays


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jurisdiction=st.sampled_from(["NO", "FR", "SE", ""]),  # "": the operator's default (the seller's)
    terminated_s=st.integers(0, 2 * YEAR_S),
    around=st.lists(st.sampled_from([-SECOND, -TICK, timedelta(0), TICK, SECOND]), min_size=1, max_size=4),
    extra=st.lists(st.integers(0, 12 * YEAR_S), max_size=2),
)
def test_a_terminated_tenants_activity_ends_once_at_its_jurisdictions_instant(
    world: tuple[Services, Sweeper, ManualClock], jurisdiction: str, terminated_s: int, around: list[timedelta],
    extra: list[int],
) -> None:  # fmt: skip
    services, sweeper, clock = world
    start = clock.now = clock.now + timedelta(days=20 * 366)
    signed = services.command(services.app.signup, slug=f"a{uuid.uuid4().hex[:10]}", name="R", admin_name="A",
                              admin_email="a@r.example", request_id="r")  # fmt: skip
    ctx = Ctx(f"user:{signed.admin_user_id}", signed.tenant_id, "r")
    if jurisdiction:
        services.command(services.app.set_jurisdiction, ctx, jurisdiction)
    clock.now = start + timedelta(seconds=terminated_s)
    erase_by = services.command(services.app.terminate_tenant, ctx, "ended")
    clock.now = erase_by
    sweeper.run_once(erase_by)  # the erasures, in the year of the deadline
    rule = jurisdiction or services.app.seller_jurisdiction
    end = fiscal_year_retained_until(rule, fiscal_year(erase_by), Records.ACTIVITY)
    instants = sorted([end + delta for delta in around] + [erase_by + timedelta(seconds=s) for s in extra])
    ended_id = ActivityRetention.create_id(signed.tenant_id)
    for now in instants:
        clock.now = max(clock.now, now)
        sweeper.run_once(now)
        assert sweeper.run_once(now)["activity-retention"] == 0
        log = services.runner.log
        found = log.read(0, log.head(), (get_topic(ActivityRetention.Ended),), 100_000)
        assert sum(1 for n in found if n.originator_id == ended_id) == int(now >= end), now - end
