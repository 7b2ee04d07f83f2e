"""The Stripe tax sweep's rounds: every live subscription checked once a round, a bounded number a pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import given
from hypothesis import strategies as st

from api.billing_sweep import StripeTaxSweep
from projections.billing_view import BillingView, SubscriptionRow

START = datetime(2027, 1, 1, tzinfo=UTC)


class Checked:
    """The tenants each pass handed over (the Stripe side is the localstripe story's)."""

    def __init__(self) -> None:
        self.passes: list[list[UUID]] = []

    def reconcile_tax(self, tenant_ids: list[UUID]) -> int:
        self.passes.append(list(tenant_ids))
        return 0


def view_with(live: int, ended: int) -> BillingView:
    view = BillingView()
    for status in ["active"] * live + ["ended"] * ended:
        view.subscriptions[uuid4()] = SubscriptionRow("team", "month", START, START + timedelta(days=30), status)
    return view


@given(
    live=st.integers(0, 300),
    ended=st.integers(0, 20),
    batch=st.integers(1, 60),
    gaps_s=st.lists(st.integers(1, 40_000), min_size=1, max_size=40),
)
def test_each_round_checks_every_live_subscription_once_a_bounded_number_a_pass(
    live: int, ended: int, batch: int, gaps_s: list[int]
) -> None:
    view, checked = view_with(live, ended), Checked()
    sweep = StripeTaxSweep(checked, view, timedelta(days=1), batch)
    now, round_started, rounds = START, START, []
    current: list[UUID] = []
    for gap in [0, *gaps_s]:
        now += timedelta(seconds=gap)
        before = len(checked.passes)
        sweep.run(now)
        handed = checked.passes[len(checked.passes) - 1] if len(checked.passes) > before else []
        assert len(handed) <= batch
        if handed and not current:  # a round began: a day after the last one did, or at the first pass
            assert not rounds or now - round_started >= timedelta(days=1)
            round_started = now
        current += handed
        if len(current) == live and current:
            rounds.append(current)
            current = []
    live_ids = set(view.live_subscriptions())
    assert len(live_ids) == live
    for done in rounds:
        assert sorted(done) == sorted(live_ids)  # every live one, once; no ended one
    if live:
        assert rounds or current  # the first pass always starts a round


def test_a_round_over_many_tenants_spans_passes_and_the_next_waits_a_day() -> None:
    view, checked = view_with(120, 5), Checked()
    sweep = StripeTaxSweep(checked, view, timedelta(days=1), batch=50)
    for minutes in (0, 1, 2, 3, 60):
        sweep.run(START + timedelta(minutes=minutes))
    assert [len(p) for p in checked.passes] == [50, 50, 20]
    sweep.run(START + timedelta(days=1))
    assert [len(p) for p in checked.passes] == [50, 50, 20, 50]
