"""The terms' credit and price rules, as properties of the pure policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from policies import credits
from policies.prices import ModelPrice, cost_micro

instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))


@given(bought=instants, offset=offsets, used=st.integers(0, 5))
def test_a_lot_is_refundable_only_unused_and_before_30_days_have_passed(
    bought: datetime, offset: timedelta, used: int
) -> None:
    amount = 1_000 * credits.MICRO_PER_CENT
    eligible = credits.refundable(amount, amount - used, bought, bought + offset)
    assert eligible == (used == 0 and offset < timedelta(days=30))


def test_the_refund_window_closes_at_the_exact_instant() -> None:
    bought = datetime(2026, 5, 1, 9, tzinfo=UTC)
    assert credits.refundable(100, 100, bought, bought + timedelta(days=30) - timedelta(microseconds=1))
    assert not credits.refundable(100, 100, bought, bought + timedelta(days=30))


@given(bought=instants)
def test_a_lot_expires_a_calendar_year_after_purchase_at_the_exact_instant(bought: datetime) -> None:
    expiry = credits.expires_at(bought)
    assert 365 <= (expiry - bought).days <= 366
    assert (expiry.month, expiry.day) == (
        (bought.month, bought.day) if (bought.month, bought.day) != (2, 29) else (3, 1)
    )
    assert not credits.is_expired(expiry, expiry - timedelta(microseconds=1))
    assert credits.is_expired(expiry, expiry)


@given(
    remaining=st.lists(st.integers(0, 10_000), min_size=1, max_size=8),
    expired=st.lists(st.booleans(), min_size=8, max_size=8),
    amount=st.integers(0, 50_000),
)
def test_allocation_takes_oldest_usable_lots_first_and_never_an_expired_one(
    remaining: list[int], expired: list[bool], amount: int
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    lots = [credits.OpenLot(uuid4(), now + (timedelta(-1) if expired[i] else timedelta(1)), r)
            for i, r in enumerate(remaining)]  # fmt: skip
    result = credits.allocate(lots, amount, now)
    taken = dict(result.taken)
    usable = [lot for lot in lots if not credits.is_expired(lot.expires_at, now) and lot.remaining_micro > 0]
    assert sum(taken.values()) + result.shortfall_micro == amount
    assert all(lot.lot_id not in taken for lot in lots if credits.is_expired(lot.expires_at, now))
    assert all(taken[i] > 0 for i in taken)
    for index, lot in enumerate(usable):  # a newer lot only once every older one is empty
        if any(newer.lot_id in taken for newer in usable[index + 1 :]):
            assert taken.get(lot.lot_id) == lot.remaining_micro
    assert result.shortfall_micro == max(0, amount - sum(lot.remaining_micro for lot in usable))


@given(prompt=st.integers(0, 10**6), completion=st.integers(0, 10**6), p_in=st.integers(0, 10**10),
       p_out=st.integers(0, 10**10))  # fmt: skip
def test_a_request_costs_its_exact_price_rounded_up_to_one_micro_cent(
    prompt: int, completion: int, p_in: int, p_out: int
) -> None:
    cost = cost_micro(ModelPrice(p_in, p_out), prompt, completion)
    exact = Fraction(prompt * p_in + completion * p_out, 10**6)
    assert isinstance(cost, int) and exact <= cost < exact + 1
