"""The billing sweep: what time alone does to billing, as a task the sweeper runs (``name``, ``run(now)``).

At each run: subscriptions past their period's end renew (or end, when cancelled), and unpaid
invoices past their due date become overdue and accrue late fees up to ``now``. Idempotent: a
second run at the same ``now`` emits nothing; a run that meets a concurrent change skips that one
object (the next run retries it). The sweeper loop itself lives elsewhere (``api/sweeper.py``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from domain.errors import Conflict
from projections.billing_view import BillingView

log = logging.getLogger(__name__)


class BillingSweep:
    """Renewals, ends of cancelled subscriptions, overdue invoices and their late fees."""

    name: str = "billing"

    def __init__(self, app: Any, view: BillingView, catch_up: Any = None) -> None:
        self.app = app
        self.view = view
        self.catch_up = catch_up  # brings the view up to date before reading it (the projection runner's)

    def run(self, now: datetime) -> int:
        """Apply what is due at ``now``; returns the events emitted."""
        if self.catch_up is not None:
            self.catch_up()
        request_id = f"sweep:{self.name}:{now.isoformat()}"
        emitted = 0
        for tenant_id in self.view.subscriptions_due(now):
            emitted += self._guarded(self.app.subscription_due, tenant_id, now, request_id)
        for invoice in self.view.unpaid_past_due(now):
            emitted += self._guarded(self.app.invoice_due, invoice.stripe_invoice_id, now, request_id)
        return emitted

    @staticmethod
    def _guarded(command: Any, *args: Any) -> int:
        try:
            return int(command(*args))
        except Conflict:
            log.info("billing sweep: a concurrent change; the next run retries")
            return 0


class TaxReconciler(Protocol):
    """What corrects Stripe's TaxRates (``BillingService``)."""

    def reconcile_tax(self, tenant_ids: list[UUID]) -> int: ...


class StripeTaxSweep:
    """At the first pass and daily after: each live subscription's Stripe TaxRates made to match its VAT
    decision (subscriptions older than Stripe being told the VAT, or whose re-taxing failed at Stripe).

    ``batch`` subscriptions a pass (two Stripe calls each), so a round over many tenants never holds the
    sweeper's other tasks for long: a round spans several passes, and the next starts a day after it began.
    """

    name: str = "stripe-tax"

    def __init__(
        self, billing: TaxReconciler, view: BillingView, every: timedelta = timedelta(days=1), batch: int = 50
    ) -> None:
        self.billing = billing
        self.view = view
        self.every = every
        self.batch = batch
        self._round: list[UUID] = []  # tenants the current round has still to check
        self._next: datetime | None = None  # when the next round starts

    def run(self, now: datetime) -> int:
        """Emits no event (only Stripe changes); logs how many subscriptions it corrected."""
        if not self._round and (self._next is None or now >= self._next):
            self._round, self._next = sorted(self.view.live_subscriptions()), now + self.every
        chunk, self._round = self._round[: self.batch], self._round[self.batch :]
        changed = self.billing.reconcile_tax(chunk) if chunk else 0
        if changed:
            log.info("stripe tax sweep: %d subscriptions given the TaxRates of their VAT decision", changed)
        return 0
