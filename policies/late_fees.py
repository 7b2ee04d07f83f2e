"""Late-payment fees: the legal interest rate pro rata temporis plus a fixed EUR 40 indemnity.

Code de commerce art. L441-10 (II): late-payment interest at the rate the European Central Bank
applies to its most recent main refinancing operation, plus 10 percentage points; the rate of the
first half-year is the one in force on 1 January, that of the second half-year the one in force on
1 July. Art. D441-5: a fixed recovery indemnity of EUR 40, due once per invoice from the first day
of lateness. The terms apply both to every invoice.

Interest runs day by day from the day after the due date (whole days elapsed), each day at its
half-year's rate, over an actual/365 year. The exact sum is rounded once to the cent, half up.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

RECOVERY_INDEMNITY_CENTS = 40_00  # Code de commerce D441-5
MARGIN_BP = 1_000  # L441-10: ECB rate + 10 percentage points
DAYS_PER_YEAR = 365

# ECB main refinancing operations rate in force on 1 January / 1 July, in basis points.
# Source: ECB, "Key ECB interest rates" (MRO 4.50 % from 20 Sep 2023, 4.25 % from 12 Jun 2024,
# 3.15 % from 18 Dec 2024, 2.15 % from 11 Jun 2025). Table date: 2025-10-01; the last entry
# carries forward until the operator adds the next half-year's rate.
ECB_RATE_BP_BY_HALF_YEAR: dict[date, int] = {
    date(2024, 1, 1): 450,
    date(2024, 7, 1): 425,
    date(2025, 1, 1): 315,
    date(2025, 7, 1): 215,
}


def half_year_start(day: date) -> date:
    """1 January or 1 July of ``day``'s half-year."""
    return date(day.year, 1 if day.month <= 6 else 7, 1)


def legal_rate_bp(day: date, table: dict[date, int] | None = None) -> int:
    """The late-payment rate (ECB rate + 10 points) for ``day``; before the table: its first entry."""
    rates = ECB_RATE_BP_BY_HALF_YEAR if table is None else table
    start = half_year_start(day)
    known = [d for d in sorted(rates) if d <= start]
    return rates[known[-1] if known else min(rates)] + MARGIN_BP


def days_late(due_at: datetime, now: datetime) -> int:
    """Whole days elapsed since the due date (0 until a full day has passed)."""
    return max(0, (now - due_at) // timedelta(days=1))


def interest_cents(amount_cents: int, due_at: datetime, now: datetime, table: dict[date, int] | None = None) -> int:
    """Interest owed on ``amount_cents`` unpaid since ``due_at``, as of ``now`` (half up to the cent)."""
    days = days_late(due_at, now)
    if days == 0 or amount_cents <= 0:
        return 0
    first = due_at.astimezone(UTC).date() + timedelta(days=1)
    total = Fraction(0)
    for offset in range(days):
        day = first + timedelta(days=offset)
        total += Fraction(amount_cents * legal_rate_bp(day, table), 10_000 * DAYS_PER_YEAR)
    return int(total + Fraction(1, 2))


def late_fee_cents(amount_cents: int, due_at: datetime, now: datetime, table: dict[date, int] | None = None) -> int:
    """Everything owed for lateness as of ``now``: the indemnity (once late) plus the interest."""
    if now <= due_at or amount_cents <= 0:
        return 0
    return RECOVERY_INDEMNITY_CENTS + interest_cents(amount_cents, due_at, now, table)
