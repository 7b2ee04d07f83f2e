"""The windows of terms changes and appeals: nothing a second early, everything on time; the pro-rata refund."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import appeals, terms

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
seconds = st.integers(min_value=-86_400 * 90, max_value=86_400 * 90)


@given(offset=seconds)
def test_an_appeal_is_accepted_from_the_action_until_30_days_later_and_not_a_second_after(offset: int):
    now = T0 + timedelta(seconds=offset)
    assert appeals.may_appeal(T0, now) == (0 <= offset < 30 * 86_400)


@given(offset=seconds, material=st.booleans())
def test_a_change_may_take_effect_only_after_its_notice(offset: int, material: bool):
    effective = T0 + timedelta(seconds=offset)
    ok = offset >= (30 * 86_400 if material else 0)
    if ok:
        terms.check_notice(T0, effective, material)
    else:
        with pytest.raises(terms.NoticeTooShort):
            terms.check_notice(T0, effective, material)


@given(offset=seconds)
def test_use_is_acceptance_from_the_effective_instant(offset: int):
    assert terms.accepted_by_use(T0, T0 + timedelta(seconds=offset)) == (offset >= 0)
    assert terms.in_notice_period(T0 - timedelta(days=30), T0, T0 + timedelta(seconds=offset)) == (
        -30 * 86_400 <= offset < 0
    )


@given(
    paid=st.integers(min_value=0, max_value=10**9),
    length=st.integers(min_value=1, max_value=366 * 86_400),
    at=st.integers(min_value=-86_400, max_value=367 * 86_400),
)
def test_the_prorata_refund_is_the_unused_share_rounded_down(paid: int, length: int, at: int):
    start, end = T0, T0 + timedelta(seconds=length)
    refund = terms.prorata_refund_cents(paid, start, end, T0 + timedelta(seconds=at))
    unused = min(max(length - at, 0), length)
    assert 0 <= refund <= paid
    assert refund * length <= paid * unused < (refund + 1) * length  # floor of the exact share


def test_the_refund_of_a_yearly_plan_rejected_halfway_is_half():
    start = datetime(2027, 1, 1, tzinfo=UTC)
    end = datetime(2028, 1, 1, tzinfo=UTC)
    assert terms.prorata_refund_cents(120_000, start, end, start + (end - start) / 2) == 60_000
    assert terms.prorata_refund_cents(120_000, start, end, end) == 0
    assert terms.prorata_refund_cents(120_000, start, end, start - timedelta(days=1)) == 120_000
