"""Every tenant's credit balance, billing mode and the price book, in memory in every API process.

What the proxy's admission check reads on each request (``api/proxy/balance.py``): a dict lookup
and a few lots, no database. Kept current by the projection runner's poll (every 0.1 s) like the
directory. It also remembers the usage request ids debited lately, so a process knows when its own
finished requests have reached the ledger (and stops counting them as pending).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.credit_ledger import CreditLedger
from domain.price_book import PriceBook
from policies.credits import MICRO_PER_CENT, is_expired
from policies.prices import DEFAULT_BILLING_MODE, ModelPrice, debits_credits
from projections.log import topics_of

_LEDGER_EVENTS = (
    CreditLedger.LotPurchased, CreditLedger.Debited, CreditLedger.LotExpired, CreditLedger.LotRefunded,
    CreditLedger.Forfeited, CreditLedger.BillingModeSet,
)  # fmt: skip
RECENT_DEBITS = 50_000  # per tenant: far more than one process can have pending between two polls


@dataclass
class TenantCredit:
    """One tenant's open lots (remaining micro-cents, expiry), billing mode and recent debits."""

    mode: str = DEFAULT_BILLING_MODE
    lots: dict[UUID, list[Any]] = field(default_factory=dict)  # lot id -> [remaining_micro, expires_at]
    debited: set[str] = field(default_factory=set)
    _order: deque[str] = field(default_factory=deque)

    def balance(self, now: datetime) -> int:
        """What the open lots can pay at ``now`` (expired ones count for nothing)."""
        return sum(remaining for remaining, expires in self.lots.values() if not is_expired(expires, now))

    def remember(self, request_id: str) -> None:
        self.debited.add(request_id)
        self._order.append(request_id)
        if len(self._order) > RECENT_DEBITS:
            self.debited.discard(self._order.popleft())


class CreditBalances:
    """In-memory read model of balances and prices; thread-safe (the runner writes, requests read)."""

    topics: ClassVar[tuple[str, ...]] = topics_of([*_LEDGER_EVENTS, PriceBook.PriceChangeScheduled])

    def __init__(self) -> None:
        self.tenants: dict[UUID, TenantCredit] = {}
        self.prices: dict[str, list[tuple[datetime, int, ModelPrice]]] = {}  # model -> (effective_at, version, price)
        self.lock = threading.Lock()
        self.debiting_tenants: set[UUID] = set()

    def process(self, event: Any) -> None:
        """Apply one event."""
        with self.lock:
            if isinstance(event, PriceBook.PriceChangeScheduled):
                changes = self.prices.setdefault(event.model, [])
                changes.append(
                    (event.effective_at, event.version, ModelPrice(event.input_per_million, event.output_per_million))
                )
                changes.sort(key=lambda c: (c[0], c[1]))
                return
            if not isinstance(event, _LEDGER_EVENTS):
                return  # another in-memory model's event (they share one read of the log)
            credit = self.tenants.setdefault(event.tenant_id, TenantCredit())
            if isinstance(event, CreditLedger.LotPurchased):
                credit.lots[event.lot_id] = [event.amount_cents * MICRO_PER_CENT, event.expires_at]
            elif isinstance(event, CreditLedger.Debited):
                for part in event.taken:
                    credit.lots[UUID(str(part["lot_id"]))][0] -= int(part["micro"])
                credit.remember(event.usage_request_id)
            elif isinstance(event, (CreditLedger.LotExpired, CreditLedger.LotRefunded)):
                credit.lots.pop(event.lot_id, None)
            elif isinstance(event, CreditLedger.Forfeited):
                for part in event.lots:
                    credit.lots.pop(UUID(str(part["lot_id"])), None)
            elif isinstance(event, CreditLedger.BillingModeSet):
                credit.mode = event.mode
                (self.debiting_tenants.add if debits_credits(event.mode) else self.debiting_tenants.discard)(
                    event.tenant_id
                )

    def debiting(self, tenant_id: UUID) -> TenantCredit | None:
        """The tenant's credits when its usage debits them; None otherwise (no check needed)."""
        credit = self.tenants.get(tenant_id)
        return credit if credit is not None and debits_credits(credit.mode) else None

    def due(self, now: datetime) -> list[UUID]:
        """Tenants holding an open lot expired at ``now`` (what the expiry sweep must close)."""
        with self.lock:
            return [t for t, c in self.tenants.items() if any(is_expired(e, now) for _, e in c.lots.values())]

    def price_at(self, model: str, at: datetime) -> ModelPrice | None:
        """The price in force (the latest effective change; on a tie the later version)."""
        found = None
        for effective_at, _, price in self.prices.get(model, ()):
            if effective_at > at:
                break
            found = price
        return found
