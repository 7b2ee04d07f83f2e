"""The billing ledger: every billing fact as a row (amounts in clear, ids pseudonymous), on SQLite or PostgreSQL.

What an accountant and the retention policy need: invoices issued, paid, failed and overdue, late
fees, upgrade charges, payments and refunds, subscription starts, renewals and ends, one row per
event keyed by its notification id. No personal data ever enters a row (the billed party's details
stay sealed in the events), so erasing a subject leaves the ledger intact and truthful. It is a
tracked read model: rows and position are written in one transaction, exactly once, rebuildable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from domain.invoice import Invoice
from domain.payment import Payment
from domain.subscription import Subscription
from projections.log import Recorded, topics_of

TRACKING_NAME = "ownllm/billing"
COLUMNS = "notification_id, tenant_id, at, kind, ref, detail, currency, amount_cents, vat_cents"


class StalePosition(Exception):
    """Another runner moved the ledger on; re-read the position."""


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One billing fact."""

    notification_id: int
    tenant_id: UUID
    at: datetime
    kind: str
    ref: str  # Stripe invoice or payment id, or the plan
    detail: str  # invoice number, plan and interval, refund id
    currency: str
    amount_cents: int
    vat_cents: int = 0


def _invoice_ref(e: Any) -> str:
    return str(e.originator_id)


_ROWS: dict[type, Callable[[int, Any], LedgerRow]] = {
    Invoice.Issued: lambda n, e: LedgerRow(n, e.tenant_id, e.issued_at, "invoice_issued", e.stripe_invoice_id,
                                           e.number, e.currency, e.net_cents, e.vat_cents),
    Invoice.Paid: lambda n, e: LedgerRow(n, e.tenant_id, e.paid_at, "invoice_paid", _invoice_ref(e), e.payment_id,
                                         "", e.amount_cents),
    Invoice.PaymentFailed: lambda n, e: LedgerRow(n, e.tenant_id, e.failed_at, "payment_failed", _invoice_ref(e),
                                                  f"attempt {e.attempt}", "", 0),
    Invoice.Overdue: lambda n, e: LedgerRow(n, e.tenant_id, e.since, "invoice_overdue", _invoice_ref(e), "", "", 0),
    Invoice.LateFeeAccrued: lambda n, e: LedgerRow(n, e.tenant_id, e.as_of, "late_fee", _invoice_ref(e),
                                                   f"total {e.total_cents}", "eur", e.fee_cents),
    Payment.Succeeded: lambda n, e: LedgerRow(n, e.tenant_id, e.succeeded_at, "payment", str(e.originator_id), "",
                                              "", e.amount_cents),
    Payment.Refunded: lambda n, e: LedgerRow(n, e.tenant_id, e.refunded_at, "refund", str(e.originator_id),
                                             e.refund_id, "", e.amount_cents),
    Subscription.Started: lambda n, e: LedgerRow(n, e.tenant_id, e.period_start, "subscription_started", e.plan,
                                                 e.interval, "", 0),
    Subscription.Restarted: lambda n, e: LedgerRow(n, e.tenant_id, e.period_start, "subscription_started", e.plan,
                                                   e.interval, "", 0),
    Subscription.Upgraded: lambda n, e: LedgerRow(n, e.tenant_id, e.timestamp, "upgrade_charged", e.plan,
                                                  f"from {e.from_plan}", e.currency, e.charged_cents),
    Subscription.Renewed: lambda n, e: LedgerRow(n, e.tenant_id, e.period_start, "subscription_renewed", e.plan,
                                                 e.interval, "", 0),
    Subscription.Ended: lambda n, e: LedgerRow(n, e.tenant_id, e.ended_at, "subscription_ended", "", "", "", 0),
}  # fmt: skip


def row_of(notification_id: int, event: Any) -> LedgerRow | None:
    """The ledger row of an event (None for events the ledger does not keep)."""
    make = _ROWS.get(type(event))
    return make(notification_id, event) if make is not None else None


class BillingTable:
    """What the SQLite and PostgreSQL tables offer (``projections/billing_tables.py``)."""

    def position(self) -> int:
        raise NotImplementedError

    def apply(self, expected: int, tracking: Tracking, rows: Sequence[LedgerRow]) -> None:
        raise NotImplementedError

    def rows(self, tenant_id: UUID, since: datetime | None, until: datetime | None) -> list[LedgerRow]:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


class BillingLedger:
    """Feeds billing events to the table, exactly once, batch by batch."""

    name = "billing"
    topics = topics_of(list(_ROWS))

    def __init__(self, table: BillingTable) -> None:
        self.table = table
        self.position = table.position()

    def stored_position(self) -> int:
        """The table's position as its tracking record says."""
        return self.table.position()

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        """Write the rows of ``records`` newer than the position and move it to ``through``, atomically."""
        self._apply([(r.notification_id, r.event) for r in records], through)

    def process_batch(self, events: Sequence[tuple[int, Any]]) -> None:
        """Apply one batch of (notification id, event) newer than the table."""
        fresh = [(n, e) for n, e in events if n > self.position and type(e) in _ROWS]
        if fresh:
            self._apply(fresh, fresh[-1][0])

    def _apply(self, events: Sequence[tuple[int, Any]], through: int) -> None:
        start = self.position
        for _ in range(5):
            if self.position >= through or self.position < start:
                return
            rows = [row for n, e in events if n > self.position and (row := row_of(n, e)) is not None]
            try:
                self.table.apply(self.position, Tracking(TRACKING_NAME, through), rows)
            except (StalePosition, IntegrityError):
                self.position = self.table.position()
                continue
            self.position = through
            return
        raise StalePosition("billing ledger kept losing races; is more than one runner configured?")

    def clear(self) -> None:
        """Drop every row and go back to position 0 (before a rebuild)."""
        self.table.clear()
        self.position = 0

    def query(self, tenant_id: UUID, since: datetime | None = None, until: datetime | None = None) -> list[LedgerRow]:
        """A tenant's billing facts in order (reads the database)."""
        return self.table.rows(tenant_id, since, until)
