"""Prepaid credits and token prices: purchases, debits from usage, expiry, refunds, forfeiture, price changes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate

from domain.commands.base import Commands
from domain.context import SYSTEM
from domain.credit_ledger import CreditLedger, ledger_id_for
from domain.errors import NotFound
from domain.price_book import PRICE_BOOK_ID, PriceBook, PriceVersion
from policies.prices import PRICE_NOTICE, ModelPrice, cost_micro, debits_credits

LEDGER_CACHE = 10_000  # ledgers the debit path keeps decoded between batches


@dataclass(frozen=True, slots=True)
class UsageCharge:
    """What a debit needs of one usage record (counts only)."""

    tenant_id: UUID
    usage_request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    requested_at: datetime


class CreditCommands(Commands):
    """The prepaid-credit ledger of each tenant and the platform's price book."""

    price_notice: timedelta = PRICE_NOTICE
    _ledger_cache: OrderedDict[UUID, CreditLedger]
    _ledger_lock: threading.Lock

    # -- reading -------------------------------------------------------------------------------

    def credit_ledger(self, tenant_id: UUID) -> CreditLedger | None:
        """The tenant's ledger, or None before its first purchase or billing mode (from its latest snapshot)."""
        return self._ledgers_from({ledger_id_for(tenant_id): tenant_id}, {}).get(tenant_id)

    def price_book(self) -> PriceBook | None:
        """The price book, or None before the first price was scheduled."""
        found = self._get(PRICE_BOOK_ID)
        return found if isinstance(found, PriceBook) else None

    def price_in_force(self, model: str, at: datetime) -> PriceVersion | None:
        """The price of ``model`` at ``at`` (None: the model has no price then)."""
        book = self.price_book()
        return None if book is None else book.price_at(model, at)

    # -- commands ------------------------------------------------------------------------------

    def purchase_credits(
        self, tenant_id: UUID, amount_cents: int, payment_id: str, purchased_at: datetime, actor: str = SYSTEM
    ) -> UUID:
        """Add a lot of ``amount_cents`` for a succeeded payment; idempotent per ``payment_id`` (returns the lot id)."""
        self._tenant(tenant_id)
        ledger = self._open_ledger(tenant_id, actor, f"purchase:{payment_id}")
        lot_id = ledger.purchase(payment_id=payment_id, amount_cents=amount_cents, purchased_at=purchased_at,
                                 actor=actor, request_id=f"purchase:{payment_id}")  # fmt: skip
        self._save(ledger)
        return lot_id

    def debit_usage(
        self, tenant_id: UUID, usage_request_id: str, model: str, prompt_tokens: int, completion_tokens: int,
        requested_at: datetime,
    ) -> int:  # fmt: skip
        """Debit one request's tokens at the price in force at ``requested_at``; once per request id."""
        return self.debit_usage_batch(
            [UsageCharge(tenant_id, usage_request_id, model, prompt_tokens, completion_tokens, requested_at)]
        )

    def debit_usage_batch(self, charges: Iterable[UsageCharge]) -> int:
        """Debit many requests in one save (the reaction's batch); returns how many debits were recorded.

        Tenants whose billing mode does not debit credits, models without a price and zero-cost
        requests record nothing. A request id already debited is skipped.
        """
        book = self.price_book()
        with self._ledger_lockheld_state():
            by_tenant: dict[UUID, list[UsageCharge]] = {}
            for charge in charges:
                by_tenant.setdefault(charge.tenant_id, []).append(charge)
            ledgers = self._cached_ledgers(list(by_tenant))
            changed, debits = [], 0
            for tenant_id, tenant_charges in by_tenant.items():
                ledger = ledgers.get(tenant_id)
                if ledger is None or not debits_credits(ledger.mode) or book is None:
                    continue
                count = sum(self._debit_one(ledger, book, charge) for charge in tenant_charges)
                if count:
                    changed.append(ledger)
                    debits += count
            if changed:
                try:
                    self._save(*changed)
                except Exception:
                    for ledger in changed:
                        self._ledger_cache.pop(ledger.id, None)
                    raise
            return debits

    def expire_due_lots(self, now: datetime, tenant_ids: Iterable[UUID]) -> int:
        """Emit LotExpired for every lot of these tenants whose expiry instant has come; idempotent."""
        changed, expired = [], 0
        for tenant_id in dict.fromkeys(tenant_ids):
            ledger = self.credit_ledger(tenant_id)
            if ledger is not None:
                count = ledger.expire_due(now, f"expiry:{now.isoformat()}")
                if count:
                    changed.append(ledger)
                    expired += count
        if changed:
            self._save(*changed)
        return expired

    def refund_lot(self, tenant_id: UUID, lot_id: UUID, now: datetime, actor: str = SYSTEM) -> int:
        """Close an unused lot within 30 days of purchase; returns the cents to pay back, or raises NotRefundable."""
        ledger = self._existing_ledger(tenant_id)
        cents = ledger.refund(lot_id, now, actor, f"refund:{lot_id}")
        self._save(ledger)
        return cents

    def forfeit_credits(self, tenant_id: UUID, at: datetime, actor: str = SYSTEM, request_id: str = "") -> int:
        """On termination: forfeit every unexpired remainder and close the ledger (micro-cents; once)."""
        ledger = self.credit_ledger(tenant_id)
        if ledger is None:
            return 0
        amount = ledger.forfeit(at, actor, request_id or f"forfeit:{tenant_id}")
        self._save(ledger)
        return amount

    def set_billing_mode(self, tenant_id: UUID, mode: str, actor: str = SYSTEM, request_id: str = "") -> bool:
        """Whether the tenant's usage debits credits ("credits") or is covered by its plan ("plan")."""
        self._tenant(tenant_id)
        ledger = self._open_ledger(tenant_id, actor, request_id or f"billing-mode:{tenant_id}")
        changed = ledger.set_mode(mode, actor, request_id or f"billing-mode:{tenant_id}")
        self._save(ledger)
        return changed

    def schedule_price_change(
        self, model: str, input_price: int, output_price: int, effective_at: datetime, actor: str = SYSTEM,
        request_id: str = "",
    ) -> int:  # fmt: skip
        """Announce a model's new prices (micro-cents per million tokens); effective_at >= now + notice.

        Returns the change's version. Each tenant whose usage debits credits gets a notice in the
        outbox (``projections/credit_view.py`` writes one row per affected tenant from this event).
        """
        now = self.clock()
        book = self.price_book() or PriceBook(actor=actor, request_id=request_id or "price-book")
        version = book.schedule(model=model, price=ModelPrice(input_price, output_price), effective_at=effective_at,
                                now=now, notice=self.price_notice, actor=actor,
                                request_id=request_id or f"price:{model}:{effective_at.isoformat()}")  # fmt: skip
        self._save(book)
        return version

    # -- helpers -------------------------------------------------------------------------------

    def _open_ledger(self, tenant_id: UUID, actor: str, request_id: str) -> CreditLedger:
        return self.credit_ledger(tenant_id) or CreditLedger(tenant_id=tenant_id, actor=actor, request_id=request_id)

    def _existing_ledger(self, tenant_id: UUID) -> CreditLedger:
        ledger = self.credit_ledger(tenant_id)
        if ledger is None:
            raise NotFound("the tenant has no credits")
        return ledger

    @staticmethod
    def _debit_one(ledger: CreditLedger, book: PriceBook, charge: UsageCharge) -> bool:
        price = book.price_at(charge.model, charge.requested_at)
        if price is None:
            return False
        cost = cost_micro(price.price, charge.prompt_tokens, charge.completion_tokens)
        return ledger.debit(usage_request_id=charge.usage_request_id, model=charge.model, price_version=price.version,
                            requested_at=charge.requested_at, cost_micro=cost, actor=SYSTEM,
                            request_id=f"debit:{charge.usage_request_id}")  # fmt: skip

    def _ledger_lockheld_state(self) -> threading.Lock:
        if "_ledger_lock" not in self.__dict__:
            self._ledger_lock = threading.Lock()
            self._ledger_cache = OrderedDict()
        return self._ledger_lock

    def _cached_ledgers(self, tenant_ids: list[UUID]) -> dict[UUID, CreditLedger]:
        """The ledgers, decoded once and brought forward by the events stored since.

        A cached ledger is never ahead of the store: a failed save here drops what it changed, and a
        reaction whose transaction failed after this returned calls :meth:`forget_cached_ledgers`
        before its retry (``api/credit_debits.py``). So the events after its version are all it lacks.
        """
        ids = {ledger_id_for(t): t for t in tenant_ids}
        cached = {i: ledger for i in ids if (ledger := self._ledger_cache.pop(i, None)) is not None}
        found = self._ledgers_from(ids, cached)
        for ledger in found.values():
            self._ledger_cache[ledger.id] = ledger
        while len(self._ledger_cache) > LEDGER_CACHE:
            self._ledger_cache.popitem(last=False)
        return found

    def _ledgers_from(self, ids: dict[UUID, UUID], known: dict[UUID, CreditLedger]) -> dict[UUID, CreditLedger]:
        """The ledgers of ``ids`` (ledger id -> tenant id) by tenant: each from ``known``, else its latest
        snapshot, brought forward by the events stored since (one query for the snapshots and one for the
        events, where the store can). A ledger read over a snapshot interval of events (older than its
        snapshots) is snapshotted, so it is read whole once, not at every load."""
        starts = known | self._latest_snapshots([i for i in ids if i not in known])
        tails = self._tails({i: (starts[i].version + 1 if i in starts else 1) for i in ids})
        every = self.snapshotting_intervals.get(CreditLedger)
        found: dict[UUID, CreditLedger] = {}
        for ledger_id, events in tails.items():
            start = starts.get(ledger_id)
            ledger = project_aggregate(start, events) if events else start
            if isinstance(ledger, CreditLedger):
                found[ids[ledger_id]] = ledger
                if self.snapshots is not None and every and len(events) >= every:
                    self._put_snapshot(ledger)
        return found

    def _latest_snapshots(self, ledger_ids: list[UUID]) -> dict[UUID, CreditLedger]:
        """The ledgers as their latest snapshots hold them (those that have one): one query where the store can."""
        if self.snapshots is None or not ledger_ids:
            return {}
        select = getattr(self.snapshots.recorder, "select_latest_of", None)
        if select is not None:
            latest = [self.snapshots.mapper.to_domain_event(stored) for stored in select(ledger_ids)]
        else:
            latest = [s for i in ledger_ids for s in self.snapshots.get(i, desc=True, limit=1)]
        return {s.originator_id: s.mutate(None) for s in latest if isinstance(s, CreditLedger.Snapshot)}

    def mismatched_snapshots(self, tenant_ids: Iterable[UUID]) -> tuple[int, list[str]]:
        """(snapshots checked, those that differ from their events replayed): a snapshot is derived state
        outside the integrity chain, so an auditor's check replays each snapshotted ledger and compares."""
        checked, wrong = 0, list[str]()
        if self.snapshots is None:
            return checked, wrong
        for tenant_id in tenant_ids:
            ledger_id, version = ledger_id_for(tenant_id), 0
            try:
                for snapshot in self.snapshots.get(ledger_id):
                    checked, version = checked + 1, snapshot.originator_version
                    replayed = project_aggregate(None, self.events.get(ledger_id, lte=version))
                    if replayed is None or held_state(snapshot.mutate(None)) != held_state(replayed):  # type: ignore[attr-defined]
                        wrong.append(f"credit ledger of tenant {tenant_id}: the snapshot at version {version} "
                                     "differs from its events")  # fmt: skip
            except Exception as exc:  # a snapshot altered so far that it no longer decodes
                checked += 1
                wrong.append(f"credit ledger of tenant {tenant_id}: a snapshot after version {version} does not "
                             f"read ({type(exc).__name__})")  # fmt: skip
        return checked, wrong

    def forget_cached_ledgers(self) -> None:
        """Drop every cached ledger (a reaction batch is being retried: its saves may not have happened)."""
        with self._ledger_lockheld_state():
            self._ledger_cache.clear()

    def _tails(self, starts: dict[UUID, int]) -> dict[UUID, list[Any]]:
        """Each aggregate's events from a version on: one query where the recorder can."""
        select = getattr(self.recorder, "select_events_from", None)
        if select is not None:
            stored = select(list(starts.items()))
        else:
            stored = [e for i, v in starts.items() for e in self.recorder.select_events(i, gt=v - 1)]
        tails: dict[UUID, list[Any]] = {i: [] for i in starts}
        for record in stored:
            tails[record.originator_id].append(self.mapper.to_domain_event(record))
        return tails


def held_state(aggregate: object) -> dict[str, Any]:
    """What an aggregate holds, its pending events aside."""
    return {name: value for name, value in vars(aggregate).items() if name != "_pending_events"}


def charges_from(records: Iterable[Mapping[str, Any]]) -> list[UsageCharge]:
    """Usage charges from plain mappings (tests, benches)."""
    return [UsageCharge(**dict(r)) for r in records]
