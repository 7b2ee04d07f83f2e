"""A Stripe event we have applied: its id's uuid5 is the aggregate's, so a redelivery conflicts and is a no-op."""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.ids import NAMESPACE


def stripe_event_id(event_id: str) -> UUID:
    """The aggregate id of a Stripe event id (``evt_...``)."""
    return uuid5(NAMESPACE, f"stripe-event:{event_id}")


class StripeEvent(Aggregate):
    """Saved in the same transaction as what the event changed: applied exactly once, whatever the redeliveries."""

    class Received(Aggregate.Created):
        event_id: str
        type: str
        tenant_id: UUID
        outcome: str  # what we did: "applied", "ignored", "stale" (older than what we know)
        actor: str
        request_id: str

    @staticmethod
    def create_id(event_id: str, **_: object) -> UUID:
        """See :func:`stripe_event_id`."""
        return stripe_event_id(event_id)

    @event(Received)
    def __init__(self, event_id: str, type: str, tenant_id: UUID, outcome: str, actor: str, request_id: str) -> None:
        self.event_id = event_id
        self.type = type
        self.tenant_id = tenant_id
        self.outcome = outcome
