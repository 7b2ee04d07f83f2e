"""The price book: every model's token prices, each change effective-dated and announced in advance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValue, NoticeTooShort
from domain.ids import NAMESPACE
from policies.prices import ModelPrice, check_price

PRICE_BOOK_ID = uuid5(NAMESPACE, "price-book")
MAX_MODEL = 200


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """One scheduled price of a model: in force from ``effective_at`` until a later one takes over."""

    version: int  # the book's sequence number of the change; stamped on every debit it priced
    model: str
    price: ModelPrice
    effective_at: datetime


def check_notice(effective_at: datetime, now: datetime, notice: timedelta) -> None:
    """A change takes effect no sooner than the notice period after it is announced."""
    if effective_at < now + notice:
        raise NoticeTooShort(
            f"a price change needs {notice.days} days' notice: effective_at >= {now + notice}", "effective_at"
        )


def check_model(model: str) -> None:
    """A model name is non-empty and bounded."""
    if not model or len(model) > MAX_MODEL:
        raise InvalidValue(f"model must be 1-{MAX_MODEL} characters", "model")


class PriceBook(Aggregate):
    """The one price book of the platform (a natural key: there is only one)."""

    class Opened(Aggregate.Created):
        actor: str
        request_id: str

    class PriceChangeScheduled(Aggregate.Event):
        version: int
        model: str
        input_per_million: int  # micro-cents per million prompt tokens
        output_per_million: int  # micro-cents per million completion tokens
        effective_at: datetime
        scheduled_at: datetime
        notice_days: int
        actor: str
        request_id: str

    @staticmethod
    def create_id(**_: Any) -> UUID:
        """There is one price book."""
        return PRICE_BOOK_ID

    @event(Opened)
    def __init__(self, actor: str, request_id: str) -> None:
        self.changes: dict[str, list[PriceVersion]] = {}  # per model, in the order scheduled
        self.last_version = 0

    def price_at(self, model: str, at: datetime) -> PriceVersion | None:
        """The price in force for ``model`` at ``at``: the latest effective one, the later-scheduled on a tie."""
        best: PriceVersion | None = None
        for change in self.changes.get(model, ()):
            if change.effective_at <= at and (best is None or change.effective_at >= best.effective_at):
                best = change
        return best

    def schedule(self, *, model: str, price: ModelPrice, effective_at: datetime, now: datetime, notice: timedelta,
                 actor: str, request_id: str) -> int:  # fmt: skip
        """Announce a new price for a model; returns its version."""
        check_model(model)
        for field, value in (("input_price", price.input_per_million), ("output_price", price.output_per_million)):
            if not check_price(value):
                raise InvalidValue(f"{field} must be a non-negative integer of micro-cents per million tokens", field)
        check_notice(effective_at, now, notice)
        self._scheduled(version=self.last_version + 1, model=model, input_per_million=price.input_per_million,
                        output_per_million=price.output_per_million, effective_at=effective_at, scheduled_at=now,
                        notice_days=notice.days, actor=actor, request_id=request_id)  # fmt: skip
        return self.last_version

    @event(PriceChangeScheduled)
    def _scheduled(self, version: int, model: str, input_per_million: int, output_per_million: int,
                   effective_at: datetime, scheduled_at: datetime, notice_days: int, actor: str,
                   request_id: str) -> None:  # fmt: skip
        price = ModelPrice(input_per_million, output_per_million)
        self.changes.setdefault(model, []).append(PriceVersion(version, model, price, effective_at))
        self.last_version = version
