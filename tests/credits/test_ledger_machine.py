"""The credit ledger against a model of the terms, under purchases, usage at changing prices, clock
moves, expiry sweeps, refunds and termination (hypothesis state machine, injected clock).

Requests are admitted as the proxy admits them (``api/proxy/balance.py``): only while the balance
less the reservations of requests in flight covers the request's maximum cost. Invariants: FIFO
(checked against an independent allocation), an expired lot is never debited, refunds only for
untouched lots within 30 days, purchases = debits + expired + refunded + forfeited + balance to the
micro-cent, and an overdraw only for a request whose funds were closed (expired, refunded or
forfeited) while it was in flight, never more than its own cost.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.commands.credits import held_state
from domain.credit_ledger import EXPIRED, FORFEITED, OPEN, REFUNDED, CreditLedger, ledger_id_for
from domain.errors import LedgerClosed, NotRefundable
from policies.credits import MICRO_PER_CENT, expires_at
from policies.prices import ModelPrice, cost_micro
from tests.credits.support import popo_app
from tests.support.clock import ManualClock

MODELS = ("small", "large")
START = datetime(2026, 1, 1, tzinfo=UTC)
TMP = Path(tempfile.mkdtemp(prefix="credit-machine-"))


@dataclass
class ModelLot:
    lot_id: UUID
    amount_micro: int
    purchased_at: datetime
    expires_at: datetime
    remaining: int
    state: str = OPEN


@dataclass
class InFlight:
    request_id: str
    model: str
    prompt: int
    max_completion: int
    requested_at: datetime
    reserved: int
    closures_seen: int  # the number of lot closures when it started


class CreditLedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = ManualClock(START)
        self.app = popo_app(TMP, self.clock)
        self.app.snapshotting_intervals = {CreditLedger: 3}  # type: ignore[misc]  # snapshots all along the way
        signed = self.app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                                 request_id="signup")  # fmt: skip
        self.tenant = signed.tenant_id
        self.app.set_billing_mode(self.tenant, "credits")
        self.lots: list[ModelLot] = []
        self.prices: list[tuple[int, str, ModelPrice, datetime]] = []  # version, model, price, effective_at
        self.in_flight: list[InFlight] = []
        self.finished: list[tuple[str, str, int, int, datetime]] = []
        self.payments = 0
        self.requests = 0
        self.closures = 0
        self.terminated = False
        self.purchased = self.debited = self.shortfall = 0
        for model in MODELS:  # a price from the start (scheduled before it, with its notice)
            self.clock.now = START - timedelta(days=30)
            self.schedule(model, 100_000_000, 300_000_000, 0)
        self.clock.now = START

    # -- the model's price book ----------------------------------------------------------------

    def price_at(self, model: str, at: datetime) -> ModelPrice | None:
        best = None
        for _, m, price, effective in self.prices:
            if m == model and effective <= at and (best is None or effective >= best[1]):
                best = (price, effective)
        return None if best is None else best[0]

    def available(self) -> int:
        usable = sum(lot.remaining for lot in self.lots if lot.state == OPEN and self.clock.now < lot.expires_at)
        return usable - sum(r.reserved for r in self.in_flight)

    # -- rules ---------------------------------------------------------------------------------

    @rule(cents=st.integers(1, 3_000))
    def purchase(self, cents: int) -> None:
        self.payments += 1
        payment = f"pi_{self.payments}"
        if self.terminated:
            try:
                self.app.purchase_credits(self.tenant, cents, payment, self.clock.now)
            except LedgerClosed:
                return
            raise AssertionError("a purchase after termination was accepted")
        lot_id = self.app.purchase_credits(self.tenant, cents, payment, self.clock.now)
        self.lots.append(ModelLot(lot_id, cents * MICRO_PER_CENT, self.clock.now, expires_at(self.clock.now),
                                  cents * MICRO_PER_CENT))  # fmt: skip
        self.purchased += cents * MICRO_PER_CENT
        assert self.app.purchase_credits(self.tenant, cents, payment, self.clock.now) == lot_id  # a redelivery

    @rule(model=st.sampled_from(MODELS), input_price=st.integers(0, 5 * 10**9),
          output_price=st.integers(0, 10**10), extra_days=st.integers(0, 90))  # fmt: skip
    def schedule(self, model: str, input_price: int, output_price: int, extra_days: int) -> None:
        effective = self.clock.now + timedelta(days=30 + extra_days)
        version = self.app.schedule_price_change(model, input_price, output_price, effective)
        self.prices.append((version, model, ModelPrice(input_price, output_price), effective))

    @rule(
        seconds=st.one_of(st.integers(0, 3_600), st.integers(0, 40 * 86_400), st.integers(300 * 86_400, 400 * 86_400))
    )
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @precondition(lambda self: self.lots)
    @rule(data=st.data(), which=st.sampled_from(["refund window", "expiry"]), offset_us=st.sampled_from([-1, 0, 1]))
    def advance_to_an_edge(self, data: st.DataObject, which: str, offset_us: int) -> None:
        """Time travel to a lot's refund-window close or expiry instant, or one microsecond either side."""
        lot = data.draw(st.sampled_from(self.lots))
        edge = lot.purchased_at + timedelta(days=30) if which == "refund window" else lot.expires_at
        target = edge + timedelta(microseconds=offset_us)
        if target > self.clock.now:
            self.clock.now = target

    @rule(model=st.sampled_from(MODELS), prompt=st.integers(0, 20_000), max_completion=st.integers(0, 20_000))
    def start_request(self, model: str, prompt: int, max_completion: int) -> None:
        price = self.price_at(model, self.clock.now)
        assert price is not None
        reserve = cost_micro(price, prompt, max_completion)
        if reserve > self.available():
            return  # the proxy refuses it (429 insufficient_quota)
        self.requests += 1
        self.in_flight.append(InFlight(f"req-{self.requests}", model, prompt, max_completion, self.clock.now,
                                       reserve, self.closures))  # fmt: skip

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def finish_request(self, data: st.DataObject) -> None:
        request = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        completion = data.draw(st.integers(0, request.max_completion))
        price = self.price_at(request.model, request.requested_at)
        assert price is not None
        cost = cost_micro(price, request.prompt, completion)
        assert cost <= request.reserved
        self.app.debit_usage(self.tenant, request.request_id, request.model, request.prompt, completion,
                             request.requested_at)  # fmt: skip
        self.finished.append((request.request_id, request.model, request.prompt, completion, request.requested_at))
        if cost == 0:
            return
        shortfall = self._model_debit(cost, request.requested_at)
        if request.closures_seen == self.closures:
            assert shortfall == 0, "overdrawn although no lot closed while the request ran"
        assert shortfall <= cost
        self.shortfall += shortfall
        debit = self.app.credit_ledger(self.tenant)
        assert debit is not None
        assert debit.totals["shortfall"] == self.shortfall

    @precondition(lambda self: self.finished)
    @rule(data=st.data())
    def repeat_debit(self, data: st.DataObject) -> None:
        request_id, model, prompt, completion, at = data.draw(st.sampled_from(self.finished))
        before = self.app.credit_ledger(self.tenant)
        self.app.debit_usage(self.tenant, request_id, model, prompt, completion, at)  # a redelivered usage event
        after = self.app.credit_ledger(self.tenant)
        assert before is not None and after is not None and after.version == before.version

    @rule()
    def sweep(self) -> None:
        count = self.app.expire_due_lots(self.clock.now, [self.tenant])
        due = [lot for lot in self.lots if lot.state == OPEN and self.clock.now >= lot.expires_at]
        assert count == len(due)
        for lot in due:
            lot.state, lot.remaining = EXPIRED, 0
        self.closures += bool(due)
        assert self.app.expire_due_lots(self.clock.now, [self.tenant]) == 0  # idempotent

    @precondition(lambda self: self.lots)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        lot = data.draw(st.sampled_from(self.lots))
        now = self.clock.now
        eligible = (not self.terminated and lot.state == OPEN and lot.remaining == lot.amount_micro
                    and now < lot.purchased_at + timedelta(days=30))  # fmt: skip
        try:
            cents = self.app.refund_lot(self.tenant, lot.lot_id, now)
        except (NotRefundable, LedgerClosed):
            assert not eligible
            return
        assert eligible, "a refund the terms do not allow"
        assert cents * MICRO_PER_CENT == lot.amount_micro
        lot.state, lot.remaining = REFUNDED, 0
        self.closures += 1

    @precondition(lambda self: not self.terminated)
    @rule()
    def terminate(self) -> None:
        self.app.forfeit_credits(self.tenant, self.clock.now)
        for lot in self.lots:
            if lot.state == OPEN and self.clock.now < lot.expires_at and lot.remaining:
                lot.state, lot.remaining = FORFEITED, 0
        self.terminated = True
        self.closures += 1

    def _model_debit(self, cost: int, at: datetime) -> int:
        """An independent FIFO: oldest purchase first, skipping closed lots and lots expired at ``at``."""
        left = cost
        for lot in self.lots:
            if left and lot.state == OPEN and at < lot.expires_at and lot.remaining:
                part = min(left, lot.remaining)
                lot.remaining -= part
                left -= part
                self.debited += part
        return left

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def lots_match_the_model(self) -> None:
        if not hasattr(self, "app"):
            return
        ledger = self.app.credit_ledger(self.tenant)
        if ledger is None:
            assert not self.lots
            return
        actual = [(lot.lot_id, lot.remaining_micro, lot.state) for lot in ledger.lots.values()]
        assert actual == [(lot.lot_id, lot.remaining, lot.state) for lot in self.lots]

    @invariant()
    def every_micro_cent_is_accounted_for(self) -> None:
        if not hasattr(self, "app") or (ledger := self.app.credit_ledger(self.tenant)) is None:
            return
        t: dict[str, Any] = ledger.totals
        now = self.clock.now
        unswept = sum(
            lot.remaining_micro for lot in ledger.lots.values() if lot.state == OPEN and now >= lot.expires_at
        )
        balance = ledger.balance_micro(now)
        assert t["purchased"] == self.purchased
        assert t["debited"] == self.debited
        assert t["purchased"] == t["debited"] + t["expired"] + unswept + t["refunded"] + t["forfeited"] + balance
        assert balance >= 0

    @invariant()
    def a_snapshot_and_the_events_after_it_are_the_whole_history(self) -> None:
        if not hasattr(self, "app") or (loaded := self.app.credit_ledger(self.tenant)) is None:
            return
        ledger_id = ledger_id_for(self.tenant)
        replayed = project_aggregate(None, self.app.events.get(ledger_id))
        assert held_state(loaded) == held_state(replayed)
        self.app.forget_cached_ledgers()  # the debit path's way in after a restart: the latest snapshot
        debit_path = self.app._cached_ledgers([self.tenant])[self.tenant]
        assert held_state(debit_path) == held_state(replayed)


TestCreditLedger = CreditLedgerMachine.TestCase
TestCreditLedger.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
