"""Late fees (L441-10: ECB rate + 10 points pro rata temporis, EUR 40 once) and retention per jurisdiction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.late_fees import RECOVERY_INDEMNITY_CENTS, interest_cents, late_fee_cents, legal_rate_bp
from policies.retention import may_delete, retained_until

DUE = datetime(2025, 3, 1, tzinfo=UTC)


def test_legal_rate_is_the_half_years_ecb_rate_plus_ten_points() -> None:
    assert legal_rate_bp(date(2025, 3, 1)) == 315 + 1_000
    assert legal_rate_bp(date(2025, 7, 1)) == 215 + 1_000
    assert legal_rate_bp(date(2026, 2, 1)) == 215 + 1_000  # the last entry carries forward


def test_nothing_before_the_due_date_then_the_indemnity_from_the_first_instant() -> None:
    assert late_fee_cents(100_00, DUE, DUE) == 0
    assert late_fee_cents(100_00, DUE, DUE + timedelta(hours=1)) == RECOVERY_INDEMNITY_CENTS


def test_interest_pro_rata_temporis() -> None:
    # 10,000.00 at 13.15 % for 30 days: 1,000,000 * 0.1315 * 30 / 365 = 10,808.219... cents -> 10,808
    assert interest_cents(1_000_000, DUE, DUE + timedelta(days=30)) == 10_808
    assert late_fee_cents(1_000_000, DUE, DUE + timedelta(days=30)) == 10_808 + 40_00


def test_interest_across_half_years_uses_each_rate() -> None:
    due = datetime(2025, 6, 30, tzinfo=UTC)
    # interest starts the day after the due date: all 10 days from 1 July at 12.15 %
    assert interest_cents(3_650_000, due, due + timedelta(days=10)) == 12_150
    due = datetime(2025, 6, 25, tzinfo=UTC)  # 5 days in June at 13.15 %, 5 in July at 12.15 %
    assert interest_cents(3_650_000, due, due + timedelta(days=10)) == 5 * 1_315 + 5 * 1_215


@given(st.integers(1, 10**8), st.integers(0, 3_000), st.integers(0, 3_000))
def test_fees_only_grow_with_time(amount: int, a: int, b: int) -> None:
    early, late = sorted((a, b))
    before = late_fee_cents(amount, DUE, DUE + timedelta(days=early))
    assert before <= late_fee_cents(amount, DUE, DUE + timedelta(days=late))


def test_retention_norway_five_years_after_the_financial_year() -> None:
    at = datetime(2026, 3, 15, tzinfo=UTC)
    assert retained_until("NO", at) == datetime(2032, 1, 1, tzinfo=UTC)
    assert not may_delete("NO", at, datetime(2031, 12, 31, 23, tzinfo=UTC))
    assert may_delete("NO", at, datetime(2032, 1, 1, tzinfo=UTC))


def test_retention_france_ten_years() -> None:
    at = datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert retained_until("FR", at) == datetime(2037, 1, 1, tzinfo=UTC)
    assert retained_until("fr", at, year_end_month=6) == datetime(2037, 7, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="no retention rule"):
        retained_until("DE", at)
