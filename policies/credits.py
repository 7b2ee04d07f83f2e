"""Prepaid credits: lot expiry, first-in-first-out use, refund eligibility and forfeiture.

The terms of service (both products) say: "Prepaid credits are bought in USD amounts ($10 = $10 of
service) and keep their dollar value. Credits expire 1 year after purchase and are consumed
first-in-first-out; they are refundable only while completely unused and within 30 days of
purchase; they are forfeited on termination." These functions are those sentences, nothing more.
Amounts are integers: lots are bought in cents and used in micro-cents (1 cent = 1,000,000), so a
request costing a thousandth of a cent is charged exactly, not rounded up to a cent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

MICRO_PER_CENT = 1_000_000
REFUND_WINDOW = timedelta(days=30)  # "within 30 days of purchase"
LOT_LIFETIME_YEARS = 1  # "Credits expire 1 year after purchase"


def expires_at(purchased_at: datetime) -> datetime:
    """The same instant one calendar year later; a lot bought on 29 February expires on 1 March.

    (The anniversary does not exist then; the later day keeps the customer's full year.)
    """
    try:
        return purchased_at.replace(year=purchased_at.year + LOT_LIFETIME_YEARS)
    except ValueError:  # 29 February
        return purchased_at.replace(year=purchased_at.year + LOT_LIFETIME_YEARS, month=3, day=1)


def is_expired(lot_expires_at: datetime, now: datetime) -> bool:
    """A lot is expired from its expiry instant on (at the exact instant, not the next sweep)."""
    return now >= lot_expires_at


def refund_window_closes(purchased_at: datetime) -> datetime:
    """The first instant a lot can no longer be refunded."""
    return purchased_at + REFUND_WINDOW


def refundable(amount_micro: int, remaining_micro: int, purchased_at: datetime, now: datetime) -> bool:
    """Completely unused and within 30 days of purchase (the 30th day's last instant excluded)."""
    return remaining_micro == amount_micro > 0 and purchased_at <= now < refund_window_closes(purchased_at)


@dataclass(frozen=True, slots=True)
class OpenLot:
    """What FIFO allocation needs of a lot: its id, when it expires and what is left of it."""

    lot_id: UUID
    expires_at: datetime
    remaining_micro: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """How a debit is taken: amounts per lot, oldest first, and what no lot could cover."""

    taken: tuple[tuple[UUID, int], ...]
    shortfall_micro: int


def allocate(lots: Sequence[OpenLot], amount_micro: int, at: datetime) -> Allocation:
    """Take ``amount_micro`` from ``lots`` (given oldest purchase first) as they stood at ``at``.

    First-in-first-out: a lot is touched only once every older lot usable at ``at`` is empty. A lot
    expired at ``at`` is never touched. What the usable lots cannot cover is the shortfall (the
    overdraw the proxy's admission check bounds, see ``api/proxy/balance.py``).
    """
    if amount_micro < 0:
        raise ValueError("a debit is never negative")
    left, taken = amount_micro, []
    for lot in lots:
        if left == 0:
            break
        if lot.remaining_micro <= 0 or is_expired(lot.expires_at, at):
            continue
        part = min(left, lot.remaining_micro)
        taken.append((lot.lot_id, part))
        left -= part
    return Allocation(tuple(taken), left)


def usable_balance(lots: Iterable[OpenLot], now: datetime) -> int:
    """What the lots can still pay at ``now``: expired lots count for nothing, swept or not."""
    return sum(lot.remaining_micro for lot in lots if not is_expired(lot.expires_at, now))


def forfeited_on_termination(lots: Iterable[OpenLot], at: datetime) -> tuple[tuple[UUID, int], ...]:
    """On termination every unexpired lot's remainder is forfeited (expired ones are already gone)."""
    return tuple(
        (lot.lot_id, lot.remaining_micro)
        for lot in lots
        if lot.remaining_micro > 0 and not is_expired(lot.expires_at, at)
    )
