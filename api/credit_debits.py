"""Credits follow usage: the reaction that debits lots from usage events, and the expiry sweep task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.commands.credits import UsageCharge
from domain.usage import UsageRecord
from projections.log import Recorded


class Debiting(Protocol):
    """The command the reaction issues (``OwnLLM.debit_usage_batch``)."""

    def debit_usage_batch(self, charges: Iterable[UsageCharge]) -> int:
        """Debit the requests; returns how many debits were recorded."""
        ...

    def forget_cached_ledgers(self) -> None:
        """Drop the ledgers the debits keep decoded."""
        ...


class Expiring(Protocol):
    """The command the sweep issues (``OwnLLM.expire_due_lots``)."""

    def expire_due_lots(self, now: datetime, tenant_ids: Iterable[UUID]) -> int:
        """Expire the due lots of these tenants; returns how many LotExpired events were recorded."""
        ...


def charge_of(event: Any) -> UsageCharge:
    """What a usage event costs in tokens, and when the request started (recorded at its end)."""
    requested_at = event.timestamp - timedelta(milliseconds=max(0, int(event.duration_ms)))
    return UsageCharge(
        tenant_id=event.tenant_id,
        usage_request_id=event.request_id,
        model=event.model,
        prompt_tokens=int(event.prompt_tokens),
        completion_tokens=int(event.completion_tokens),
        requested_at=requested_at,
    )


class CreditDebits:
    """Debits each request's tokens from its tenant's lots, oldest first, at the price of its time.

    A tracked reaction: the debits of a batch of usage events are saved in ONE transaction with the
    handler's position (``projections.reactions.BatchReaction``), so each request is debited exactly
    once whatever point the process stops at; the ledger also ignores a repeated usage request id.
    The request's time is the usage event's time less its duration (the record is written at its end).
    """

    name = "credit-debits"
    batch_size = 1000  # usage events per transaction (the runner's default is 100)
    topics: tuple[str, ...] = (get_topic(UsageRecord.Recorded),)

    def __init__(self, app: Debiting, idle: Callable[[int], bool] = lambda _: False) -> None:
        self.app = app
        self.idle = idle
        self.handled = 0  # the last position handed to the command (recorded or not)

    def handle(self, event: Any, position: int) -> None:
        """Debit one request."""
        self.app.debit_usage_batch([charge_of(event)])

    def handle_batch(self, items: Sequence[Recorded]) -> None:
        """Debit a batch of requests in one save.

        ``idle(position)`` is true when no tenant's usage debits credits as of that position (the
        composition asks the in-memory credit model): the batch is then passed without decoding a
        usage event, so a platform without credit tenants pays nothing for this reaction.
        A batch at or before a position already handled is a retry: the transaction that held the
        earlier attempt's debits failed, so the ledgers cached since are ahead of the store: dropped.
        """
        if not items or self.idle(items[-1].notification_id):
            return
        if items[0].notification_id <= self.handled:
            self.app.forget_cached_ledgers()
        self.handled = items[-1].notification_id
        self.app.debit_usage_batch([charge_of(item.event) for item in items])


class CreditExpirySweep:
    """A sweep task (``name``, ``run(now) -> int``): expires every lot whose instant has come; idempotent.

    ``due(now)`` names the tenants holding an open lot expired at ``now`` (the credit read model's
    query); the command re-checks each ledger, so a stale read model only costs a no-op.
    """

    name = "credit-expiry"

    def __init__(self, app: Expiring, due: Callable[[datetime], Iterable[UUID]]) -> None:
        self.app = app
        self.due = due

    def run(self, now: datetime) -> int:
        """Emit LotExpired for every due lot; returns how many events were emitted."""
        tenants = list(self.due(now))
        return self.app.expire_due_lots(now, tenants) if tenants else 0
