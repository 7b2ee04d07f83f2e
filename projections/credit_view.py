"""Credits as the billing pages read them: lots, movements (purchases, debits, expiries, refunds,
forfeits), balance, and the price-change notices outbox, as a tracked SQL read model.

Rows and the tracking record are written in one transaction, so each event is applied exactly once.
No personal data: ids, amounts, dates, model names.

The notices outbox: a price change (``PriceBook.PriceChangeScheduled``) writes one row per tenant
whose billing mode debits credits at that moment, with ``sent_at`` empty. Whatever delivers notices
(mail, the dashboard) reads :meth:`CreditProjection.pending_notices` and marks them with
:meth:`CreditProjection.mark_sent`; a rebuild writes the same rows again (deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from domain.credit_ledger import CreditLedger
from domain.price_book import PriceBook
from policies.prices import debits_credits
from projections.log import Recorded, topics_of

TRACKING_NAME = "ownllm/credits"
MOVEMENT_KINDS = ("purchase", "debit", "expiry", "refund", "forfeit")


class StalePosition(Exception):
    """Another runner moved the view on; re-read the position."""


@dataclass(frozen=True, slots=True)
class LotRow:
    lot_id: UUID
    payment_id: str
    amount_cents: int
    purchased_at: datetime
    expires_at: datetime
    remaining_micro: int
    state: str


@dataclass(frozen=True, slots=True)
class MovementRow:
    position: int  # the event's notification id: the keyset cursor
    at: datetime
    kind: str
    amount_micro: int  # what left (debit, expiry, refund, forfeit) or entered (purchase) the balance
    lot_id: UUID | None
    usage_request_id: str
    model: str
    price_version: int | None
    shortfall_micro: int


@dataclass(frozen=True, slots=True)
class NoticeRow:
    position: int
    tenant_id: UUID
    model: str
    input_per_million: int
    output_per_million: int
    effective_at: datetime
    scheduled_at: datetime
    version: int


# Write operations, dialect-free: the tables turn each into their SQL.
Op = tuple[str, tuple[Any, ...]]


def _move(position: int, tenant: UUID, at: datetime, kind: str, micro: int, lot: UUID | None, request: str = "",
          model: str = "", version: int | None = None, shortfall: int = 0) -> Op:  # fmt: skip
    return ("move", (position, tenant, at, kind, micro, lot, request, model, version, shortfall))


def ops_of(position: int, event: Any) -> list[Op]:
    """The rows one event writes (see ``projections/credit_tables.py`` for each op's SQL)."""
    t: Any = getattr(event, "tenant_id", None)
    if isinstance(event, CreditLedger.LotPurchased):
        micro = event.amount_cents * 1_000_000
        lot = (t, event.lot_id, event.payment_id, event.amount_cents, event.purchased_at, event.expires_at, micro)
        return [("lot", lot), _move(position, t, event.purchased_at, "purchase", micro, event.lot_id)]
    if isinstance(event, CreditLedger.Debited):
        taken: list[Op] = [("take", (int(p["micro"]), UUID(str(p["lot_id"])))) for p in event.taken]
        paid = sum(int(p["micro"]) for p in event.taken)
        first = UUID(str(event.taken[0]["lot_id"])) if event.taken else None
        debit = _move(position, t, event.requested_at, "debit", paid, first, event.usage_request_id, event.model,
                      event.price_version, event.shortfall_micro)  # fmt: skip
        return [*taken, debit]
    if isinstance(event, CreditLedger.LotExpired):
        return [("close", ("expired", event.lot_id)),
                _move(position, t, event.expired_at, "expiry", event.amount_micro, event.lot_id)]  # fmt: skip
    if isinstance(event, CreditLedger.LotRefunded):
        micro = event.amount_cents * 1_000_000
        return [
            ("close", ("refunded", event.lot_id)),
            _move(position, t, event.refunded_at, "refund", micro, event.lot_id),
        ]
    if isinstance(event, CreditLedger.Forfeited):
        closes: list[Op] = [("close", ("forfeited", UUID(str(p["lot_id"])))) for p in event.lots]
        return [*closes, _move(position, t, event.forfeited_at, "forfeit", event.amount_micro, None)]
    if isinstance(event, CreditLedger.BillingModeSet):
        return [("mode", (t, event.mode, debits_credits(event.mode)))]
    if isinstance(event, PriceBook.PriceChangeScheduled):
        return [("notices", (position, event.model, event.input_per_million, event.output_per_million,
                             event.effective_at, event.timestamp, event.version))]  # fmt: skip
    return []


class CreditTables(Protocol):
    """The tables on SQLite or PostgreSQL."""

    def position(self) -> int: ...
    def apply(self, expected: int, tracking: Tracking, ops: Sequence[Op]) -> None: ...
    def lots(self, tenant_id: UUID) -> list[LotRow]: ...
    def balance(self, tenant_id: UUID, now: datetime) -> int: ...
    def movements(self, tenant_id: UUID, after: int, limit: int) -> list[MovementRow]: ...
    def count_movements(self, tenant_id: UUID) -> int: ...
    def due_tenants(self, now: datetime) -> list[UUID]: ...
    def pending_notices(self, limit: int) -> list[NoticeRow]: ...
    def mark_sent(self, notices: Sequence[tuple[int, UUID]], at: datetime) -> None: ...
    def clear(self) -> None: ...


class CreditProjection:
    """Feeds the credit events to the tables, exactly once, batch by batch."""

    name = "credits"
    topics = topics_of([
        CreditLedger.LotPurchased, CreditLedger.Debited, CreditLedger.LotExpired, CreditLedger.LotRefunded,
        CreditLedger.Forfeited, CreditLedger.BillingModeSet, PriceBook.PriceChangeScheduled,
    ])  # fmt: skip

    def __init__(self, tables: CreditTables) -> None:
        self.tables = tables
        self.position = tables.position()

    def stored_position(self) -> int:
        return self.tables.position()

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        """Apply the events after the position and move it to ``through``, atomically."""
        start = self.position
        for _ in range(5):
            if self.position >= through or self.position < start:
                return
            ops = [
                op for r in records if r.notification_id > self.position for op in ops_of(r.notification_id, r.event)
            ]
            try:
                self.tables.apply(self.position, Tracking(TRACKING_NAME, through), ops)
            except (StalePosition, IntegrityError):
                self.position = self.tables.position()
                continue
            self.position = through
            return
        raise StalePosition("credit projection kept losing races; is more than one runner configured?")

    def clear(self) -> None:
        self.tables.clear()
        self.position = 0

    # -- queries (the billing pages, the sweep, the notices' sender) ---------------------------

    def lots(self, tenant_id: UUID) -> list[LotRow]:
        return self.tables.lots(tenant_id)

    def balance(self, tenant_id: UUID, now: datetime) -> int:
        """Micro-cents the open, unexpired lots still hold at ``now``."""
        return self.tables.balance(tenant_id, now)

    def movements(self, tenant_id: UUID, after: int = 0, limit: int = 100) -> list[MovementRow]:
        """Oldest first, after the position ``after`` (keyset)."""
        return self.tables.movements(tenant_id, after, limit)

    def count_movements(self, tenant_id: UUID) -> int:
        return self.tables.count_movements(tenant_id)

    def due_tenants(self, now: datetime) -> list[UUID]:
        """Tenants holding an open lot expired at ``now`` (the expiry sweep's work)."""
        return self.tables.due_tenants(now)

    def pending_notices(self, limit: int = 100) -> list[NoticeRow]:
        """Price-change notices not yet marked sent, oldest first."""
        return self.tables.pending_notices(limit)

    def mark_sent(self, notices: Sequence[tuple[int, UUID]], at: datetime) -> None:
        """Mark (position, tenant) notices as sent (the sender's acknowledgement)."""
        self.tables.mark_sent(notices, at)
