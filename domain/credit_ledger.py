"""A tenant's prepaid credits: one lot per purchase, used oldest first, expiring a year on.

The rules are the terms' (``policies/credits.py``); this aggregate applies them and remembers every
movement as an event. Lots are bought in cents and used in micro-cents (see the policy), so
``purchased = debited + expired + refunded + forfeited + balance`` holds exactly, in micro-cents.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.domain import Snapshot as AggregateSnapshot

from domain.errors import InvalidValue, LedgerClosed, NotFound, NotRefundable
from domain.ids import NAMESPACE
from policies import credits as policy
from policies.prices import BILLING_MODES, DEFAULT_BILLING_MODE

DEBIT_MEMORY = 10_000  # the latest usage request ids a ledger remembers to ignore a repeated debit
# A snapshot every this many events: loading a ledger reads at most this many after its latest snapshot.
# A snapshot holds the remembered request ids (up to ~0.5 MB), so not much more often than that.
SNAPSHOT_EVERY = 5_000
MAX_PURCHASE_CENTS = 10_000_000  # $100,000 in one purchase: above that, a typo or an attack
OPEN, EXPIRED, REFUNDED, FORFEITED = "open", "expired", "refunded", "forfeited"


def ledger_id_for(tenant_id: UUID) -> UUID:
    """One ledger per tenant."""
    return uuid5(NAMESPACE, f"credit-ledger:{tenant_id}")


def lot_id_for(tenant_id: UUID, payment_id: str) -> UUID:
    """One lot per payment: a second purchase with the same payment id is the same lot."""
    return uuid5(NAMESPACE, f"credit-lot:{tenant_id}:{payment_id}")


@dataclass
class Lot:
    """One purchase and what is left of it."""

    lot_id: UUID
    payment_id: str
    amount_cents: int
    purchased_at: datetime
    expires_at: datetime
    remaining_micro: int
    state: str = OPEN

    @property
    def amount_micro(self) -> int:
        """The lot's whole value in micro-cents."""
        return self.amount_cents * policy.MICRO_PER_CENT


def check_amount(amount_cents: int) -> None:
    """A purchase is a positive whole number of cents, bounded."""
    if type(amount_cents) is not int or not 0 < amount_cents <= MAX_PURCHASE_CENTS:
        raise InvalidValue(f"amount_cents must be an integer from 1 to {MAX_PURCHASE_CENTS}", "amount_cents")


def check_mode(mode: str) -> None:
    """A known billing mode."""
    if mode not in BILLING_MODES:
        raise InvalidValue(f"billing mode must be one of {', '.join(sorted(BILLING_MODES))}", "mode")


class CreditLedger(Aggregate):
    """The prepaid credits of one tenant and its billing mode."""

    class Opened(Aggregate.Created):
        tenant_id: UUID
        actor: str
        request_id: str

    class LotPurchased(Aggregate.Event):
        tenant_id: UUID
        lot_id: UUID
        payment_id: str
        amount_cents: int
        purchased_at: datetime
        expires_at: datetime
        actor: str
        request_id: str

    class Debited(Aggregate.Event):
        tenant_id: UUID
        usage_request_id: str
        model: str
        price_version: int
        requested_at: datetime
        cost_micro: int
        taken: list[dict[str, Any]]  # [{"lot_id": str, "micro": int}], oldest lot first
        shortfall_micro: int  # what no lot could cover (bounded by the proxy's admission check)
        actor: str
        request_id: str

    class LotExpired(Aggregate.Event):
        tenant_id: UUID
        lot_id: UUID
        expired_at: datetime  # the lot's expiry instant, whenever the sweep noticed it
        amount_micro: int
        actor: str
        request_id: str

    class LotRefunded(Aggregate.Event):
        tenant_id: UUID
        lot_id: UUID
        payment_id: str
        amount_cents: int
        refunded_at: datetime
        actor: str
        request_id: str

    class Forfeited(Aggregate.Event):
        tenant_id: UUID
        forfeited_at: datetime
        lots: list[dict[str, Any]]  # [{"lot_id": str, "micro": int}]
        amount_micro: int
        actor: str
        request_id: str

    class BillingModeSet(Aggregate.Event):
        tenant_id: UUID
        mode: str
        actor: str
        request_id: str

    class Snapshot(AggregateSnapshot):
        """The ledger's state as plain values (lots as a list, remembered debits in order)."""

        @classmethod
        def take(cls, aggregate: Any) -> CreditLedger.Snapshot:
            """The state to store: no set, deque or dataclass, and no UUID as a key."""
            snapshot = super().take(aggregate)
            state = snapshot.state
            state["lots"] = [dataclasses.asdict(lot) for lot in aggregate.lots.values()]
            state["_debit_order"] = list(aggregate._debit_order)
            state["totals"] = dict(aggregate.totals)
            del state["recent_debits"]  # the same ids as the order
            return snapshot

        def mutate(self, _: None) -> CreditLedger:
            """The ledger as it stood at the snapshot's version."""
            ledger = super().mutate(_)
            assert isinstance(ledger, CreditLedger)
            ledger.lots = {lot.lot_id: lot for lot in (Lot(**fields) for fields in ledger.__dict__["lots"])}
            ledger._debit_order = deque(ledger.__dict__["_debit_order"])
            ledger.recent_debits = set(ledger._debit_order)
            ledger.totals = dict(ledger.totals)
            return ledger

    @staticmethod
    def create_id(tenant_id: UUID, **_: Any) -> UUID:
        """The tenant's ledger id."""
        return ledger_id_for(tenant_id)

    @event(Opened)
    def __init__(self, tenant_id: UUID, actor: str, request_id: str) -> None:
        self.tenant_id = tenant_id
        self.mode = DEFAULT_BILLING_MODE
        self.lots: dict[UUID, Lot] = {}  # in purchase order: the FIFO order
        self.payments: dict[str, UUID] = {}
        self.recent_debits: set[str] = set()
        self._debit_order: deque[str] = deque()
        self.closed = False
        self.totals = {"purchased": 0, "debited": 0, "expired": 0, "refunded": 0, "forfeited": 0, "shortfall": 0}

    # -- reading -----------------------------------------------------------------------------

    def open_lots(self) -> list[policy.OpenLot]:
        """The lots still open (some may be past expiry but not swept yet), oldest first."""
        return [policy.OpenLot(lot.lot_id, lot.expires_at, lot.remaining_micro)
                for lot in self.lots.values() if lot.state == OPEN]  # fmt: skip

    def balance_micro(self, now: datetime) -> int:
        """What the credits can pay at ``now``; expired lots count for nothing, swept or not."""
        return policy.usable_balance(self.open_lots(), now)

    def lot(self, lot_id: UUID) -> Lot:
        """One lot, or NotFound."""
        found = self.lots.get(lot_id)
        if found is None:
            raise NotFound("credit lot not found")
        return found

    # -- invariants --------------------------------------------------------------------------

    def check_open(self) -> None:
        """Nothing is bought or refunded once the credits were forfeited."""
        if self.closed:
            raise LedgerClosed("the tenant's credits were forfeited on termination")

    def check_refundable(self, lot: Lot, now: datetime) -> None:
        """Completely unused, open, unexpired and within 30 days of purchase."""
        if lot.state != OPEN or policy.is_expired(lot.expires_at, now):
            raise NotRefundable(f"the lot is {lot.state if lot.state != OPEN else 'expired'}")
        if not policy.refundable(lot.amount_micro, lot.remaining_micro, lot.purchased_at, now):
            raise NotRefundable("only a completely unused lot can be refunded, within 30 days of purchase")

    # -- commands (each triggers exactly one event) -------------------------------------------

    def purchase(
        self, *, payment_id: str, amount_cents: int, purchased_at: datetime, actor: str, request_id: str
    ) -> UUID:
        """Add a lot for a payment; the same payment again adds nothing (its lot id is returned)."""
        if payment_id in self.payments:
            return self.payments[payment_id]
        self.check_open()
        check_amount(amount_cents)
        if not payment_id or len(payment_id) > 255:
            raise InvalidValue("payment_id must be 1-255 characters", "payment_id")
        lot_id = lot_id_for(self.tenant_id, payment_id)
        self._lot_purchased(tenant_id=self.tenant_id, lot_id=lot_id, payment_id=payment_id, amount_cents=amount_cents,
                            purchased_at=purchased_at, expires_at=policy.expires_at(purchased_at), actor=actor,
                            request_id=request_id)  # fmt: skip
        return lot_id

    def debit(self, *, usage_request_id: str, model: str, price_version: int, requested_at: datetime,
              cost_micro: int, actor: str, request_id: str) -> bool:  # fmt: skip
        """Take a request's cost from the lots oldest first (as they stood at its time); once per request."""
        if usage_request_id in self.recent_debits or cost_micro <= 0:
            return False
        allocation = policy.allocate(self.open_lots(), cost_micro, requested_at)
        taken = [{"lot_id": str(lot_id), "micro": micro} for lot_id, micro in allocation.taken]
        self._debited(tenant_id=self.tenant_id, usage_request_id=usage_request_id, model=model,
                      price_version=price_version, requested_at=requested_at, cost_micro=cost_micro, taken=taken,
                      shortfall_micro=allocation.shortfall_micro, actor=actor, request_id=request_id)  # fmt: skip
        return True

    def expire_due(self, now: datetime, request_id: str) -> int:
        """One LotExpired per open lot whose expiry instant has come; none when already expired."""
        due = [lot for lot in self.lots.values() if lot.state == OPEN and policy.is_expired(lot.expires_at, now)]
        for lot in due:
            self._lot_expired(tenant_id=self.tenant_id, lot_id=lot.lot_id, expired_at=lot.expires_at,
                              amount_micro=lot.remaining_micro, actor="system", request_id=request_id)  # fmt: skip
        return len(due)

    def refund(self, lot_id: UUID, now: datetime, actor: str, request_id: str) -> int:
        """Close an untouched lot within its window; returns the cents to pay back."""
        self.check_open()
        lot = self.lot(lot_id)
        self.check_refundable(lot, now)
        self._lot_refunded(tenant_id=self.tenant_id, lot_id=lot_id, payment_id=lot.payment_id,
                           amount_cents=lot.amount_cents, refunded_at=now, actor=actor,
                           request_id=request_id)  # fmt: skip
        return lot.amount_cents

    def forfeit(self, at: datetime, actor: str, request_id: str) -> int:
        """On termination: every unexpired remainder is forfeited and the ledger closes (once)."""
        if self.closed:
            return 0
        lots = policy.forfeited_on_termination(self.open_lots(), at)
        total = sum(micro for _, micro in lots)
        self._forfeited(tenant_id=self.tenant_id, forfeited_at=at, amount_micro=total, actor=actor,
                        lots=[{"lot_id": str(lot_id), "micro": micro} for lot_id, micro in lots],
                        request_id=request_id)  # fmt: skip
        return total

    def set_mode(self, mode: str, actor: str, request_id: str) -> bool:
        """Change the billing mode; no event when it is already the mode."""
        check_mode(mode)
        if mode == self.mode:
            return False
        self._billing_mode_set(tenant_id=self.tenant_id, mode=mode, actor=actor, request_id=request_id)
        return True

    # -- events applied ------------------------------------------------------------------------

    @event(LotPurchased)
    def _lot_purchased(self, tenant_id: UUID, lot_id: UUID, payment_id: str, amount_cents: int,
                       purchased_at: datetime, expires_at: datetime, actor: str, request_id: str) -> None:  # fmt: skip
        lot = Lot(lot_id, payment_id, amount_cents, purchased_at, expires_at, amount_cents * policy.MICRO_PER_CENT)
        self.lots[lot_id] = lot
        self.payments[payment_id] = lot_id
        self.totals["purchased"] += lot.amount_micro

    @event(Debited)
    def _debited(self, tenant_id: UUID, usage_request_id: str, model: str, price_version: int,
                 requested_at: datetime, cost_micro: int, taken: list[dict[str, Any]], shortfall_micro: int,
                 actor: str, request_id: str) -> None:  # fmt: skip
        for part in taken:
            self.lots[UUID(str(part["lot_id"]))].remaining_micro -= int(part["micro"])
            self.totals["debited"] += int(part["micro"])
        self.totals["shortfall"] += shortfall_micro
        self.recent_debits.add(usage_request_id)
        self._debit_order.append(usage_request_id)
        if len(self._debit_order) > DEBIT_MEMORY:
            self.recent_debits.discard(self._debit_order.popleft())

    @event(LotExpired)
    def _lot_expired(self, tenant_id: UUID, lot_id: UUID, expired_at: datetime, amount_micro: int, actor: str,
                     request_id: str) -> None:  # fmt: skip
        self._close(lot_id, EXPIRED, amount_micro)

    @event(LotRefunded)
    def _lot_refunded(self, tenant_id: UUID, lot_id: UUID, payment_id: str, amount_cents: int,
                      refunded_at: datetime, actor: str, request_id: str) -> None:  # fmt: skip
        self._close(lot_id, REFUNDED, amount_cents * policy.MICRO_PER_CENT)

    @event(Forfeited)
    def _forfeited(self, tenant_id: UUID, forfeited_at: datetime, lots: list[dict[str, Any]], amount_micro: int,
                   actor: str, request_id: str) -> None:  # fmt: skip
        for part in lots:
            self._close(UUID(str(part["lot_id"])), FORFEITED, int(part["micro"]))
        self.closed = True

    @event(BillingModeSet)
    def _billing_mode_set(self, tenant_id: UUID, mode: str, actor: str, request_id: str) -> None:
        self.mode = mode

    def _close(self, lot_id: UUID, state: str, micro: int) -> None:
        lot = self.lots[lot_id]
        lot.state, lot.remaining_micro = state, lot.remaining_micro - micro
        self.totals[state] += micro
