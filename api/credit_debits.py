"""Credits follow usage: the reaction that debits lots from usage events, and the expiry sweep task."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.commands.credits import UsageCharge
from domain.usage import UsageRecord


class Debiting(Protocol):
    """The command the reaction issues (``OwnLLM.debit_usage_batch``)."""

    def debit_usage_batch(self, charges: Iterable[UsageCharge]) -> int:
        """Debit the requests; returns how many debits were recorded."""
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
    topics: tuple[str, ...] = (get_topic(UsageRecord.Recorded),)

    def __init__(self, app: Debiting) -> None:
        self.app = app

    def handle(self, event: Any, position: int) -> None:
        """Debit one request."""
        self.app.debit_usage_batch([charge_of(event)])

    def handle_batch(self, events: Sequence[tuple[Any, int]]) -> None:
        """Debit a batch of requests in one save."""
        self.app.debit_usage_batch([charge_of(event) for event, _ in events])


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
