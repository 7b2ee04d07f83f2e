"""Plans: prices, the annual discount, an upgrade charges the difference (never prorated by time)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.limits import PLAN_LIMITS, max_agents_for
from policies.plans import (
    ANNUAL_MONTHS_CHARGED,
    PLANS,
    SUBSCRIPTIONS_REFUNDABLE,
    PlanChangeError,
    add_months,
    is_upgrade,
    period_end,
    plan,
    upgrade_charge_cents,
)


def test_every_plan_drives_limits() -> None:
    for name in PLANS:
        assert name in PLAN_LIMITS
    rpm = [PLAN_LIMITS[p].per_tenant.requests_per_minute for p in ("team", "startup", "enterprise")]
    assert rpm == sorted(rpm) and len(set(rpm)) == 3
    assert max_agents_for("team") < max_agents_for("startup") < max_agents_for("enterprise")


def test_annual_is_ten_monthly_prices() -> None:
    for p in PLANS.values():
        assert p.price_cents("year") == ANNUAL_MONTHS_CHARGED * p.price_cents("month") < 12 * p.monthly_cents


def test_upgrade_charges_the_difference_not_a_prorated_amount() -> None:
    # Team 99.00 -> Startup 499.00: 400.00 now, whether on day 1 or day 30 of the cycle (no date involved).
    assert upgrade_charge_cents("team", "startup", "month") == 400_00
    assert upgrade_charge_cents("team", "enterprise", "year") == (1_999_00 - 99_00) * 10
    assert upgrade_charge_cents("startup", "enterprise", "month") == 1_500_00


def test_downgrade_or_same_plan_is_not_an_upgrade() -> None:
    assert not is_upgrade("enterprise", "team") and not is_upgrade("team", "team")
    with pytest.raises(PlanChangeError, match="not an upgrade"):
        upgrade_charge_cents("enterprise", "team", "month")
    with pytest.raises(PlanChangeError, match="unknown plan"):
        plan("platinum")


def test_subscriptions_are_not_refundable() -> None:
    assert SUBSCRIPTIONS_REFUNDABLE is False


def test_months_clamp_to_the_month_and_do_not_drift() -> None:
    anchor = datetime(2026, 1, 31, 9, tzinfo=UTC)
    assert add_months(anchor, 1) == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert period_end(anchor, 2, "month") == datetime(2026, 3, 31, 9, tzinfo=UTC)  # back to the 31st
    assert period_end(datetime(2024, 2, 29, tzinfo=UTC), 1, "year") == datetime(2025, 2, 28, tzinfo=UTC)


@given(st.sampled_from(sorted(PLANS)), st.sampled_from(sorted(PLANS)), st.sampled_from(["month", "year"]))
def test_an_upgrade_then_full_price_equals_the_new_price(current: str, new: str, interval: str) -> None:
    if is_upgrade(current, new):
        paid = plan(current).price_cents(interval) + upgrade_charge_cents(current, new, interval)  # type: ignore[arg-type]
        assert paid == plan(new).price_cents(interval)  # type: ignore[arg-type]
