"""Subscription plans: prices, intervals, the annual discount, upgrades, downgrades and cancellation.

From the terms of service (issue 15): plans Team, Startup and Enterprise, monthly or annual,
charged in advance; monthly plans renew until cancelled; cancellation takes effect at the end of
the current cycle and access continues until then; annual plans, like all subscriptions, are
non-refundable.

**Upgrade mid-cycle.** The first invoice reflects only the DIFFERENCE between the current and the
new plan's price (same interval) until the next cycle begins; from then on the full new price. This
is deliberately *not* a time-prorated amount: upgrading on the last day of a month costs the whole
difference, exactly as on its first day (see :func:`upgrade_charge_cents`). A downgrade, or any
change of interval, takes effect at the end of the current cycle.

Prices are list prices in euro cents, excluding VAT (``policies/vat.py``). Annual discount: an
annual plan costs 10 monthly prices (two months free, 16.7 % off twelve monthly payments).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Interval = Literal["month", "year"]
INTERVALS: tuple[Interval, ...] = ("month", "year")
CURRENCY = "eur"
ANNUAL_MONTHS_CHARGED = 10  # the documented annual discount: 12 months for the price of 10
SUBSCRIPTIONS_REFUNDABLE = False  # terms: subscriptions (monthly and annual) are non-refundable


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan: its rank orders upgrades; ``limits`` names the tier in ``policies/limits.py``."""

    name: str
    rank: int
    monthly_cents: int

    @property
    def annual_cents(self) -> int:
        """The annual price: ``ANNUAL_MONTHS_CHARGED`` monthly prices."""
        return self.monthly_cents * ANNUAL_MONTHS_CHARGED

    def price_cents(self, interval: Interval) -> int:
        """The price of one cycle of ``interval``."""
        return self.monthly_cents if interval == "month" else self.annual_cents


# List prices (operator's price list; change here, with notice, never retroactively).
PLANS: dict[str, Plan] = {
    "team": Plan("team", 1, 99_00),
    "startup": Plan("startup", 2, 499_00),
    "enterprise": Plan("enterprise", 3, 1_999_00),
}


class PlanChangeError(ValueError):
    """A plan change the terms do not allow (unknown plan or interval, not an upgrade, ...)."""


def plan(name: str) -> Plan:
    """A known plan, or :class:`PlanChangeError`."""
    found = PLANS.get(name)
    if found is None:
        raise PlanChangeError(f"unknown plan {name!r}; one of {', '.join(PLANS)}")
    return found


def check_interval(interval: str) -> Interval:
    """A known interval, or :class:`PlanChangeError`."""
    if interval not in INTERVALS:
        raise PlanChangeError(f"unknown interval {interval!r}; one of {', '.join(INTERVALS)}")
    return interval  # type: ignore[return-value]


def is_upgrade(current: str, new: str) -> bool:
    """A move to a higher plan (takes effect now); anything else waits for the period's end."""
    return plan(new).rank > plan(current).rank


def upgrade_charge_cents(current: str, new: str, interval: Interval) -> int:
    """What an upgrade mid-cycle charges now: the new price minus the current one, whatever the day.

    Not prorated by time: the terms bill the difference until the next cycle, then the full price.
    """
    if not is_upgrade(current, new):
        raise PlanChangeError(f"{current} to {new} is not an upgrade; a downgrade takes effect at the period's end")
    return plan(new).price_cents(interval) - plan(current).price_cents(interval)


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by whole months, the day clamped to the month's length (31 Jan + 1 = 28/29 Feb)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_end(anchor: datetime, cycles: int, interval: Interval) -> datetime:
    """The end of the ``cycles``-th cycle from ``anchor`` (counted from the anchor: no drift 31 -> 28 -> 28)."""
    return add_months(anchor, cycles * (1 if interval == "month" else 12))
