"""A tenant's acceptance of one model licence (terms §9): the proxy serves a model only once its licence is accepted."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState
from domain.ids import NAMESPACE

UNLISTED_PREFIX = "unlisted:"  # the key of an acknowledgement for a model the catalogue does not know


class ModelLicence(Aggregate):
    """Accepted by an admin for the whole tenant; withdrawn and accepted again as the tenant decides."""

    class Accepted(Aggregate.Created):
        tenant_id: UUID
        key: str  # the catalogue entry's id, or "unlisted:<model id>" for an acknowledged unlisted model
        licence: str  # the licence's name as the catalogue gave it when accepted ("" for unlisted)
        url: str
        actor: str
        request_id: str

    class Withdrawn(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str

    class Reaccepted(Aggregate.Event):
        tenant_id: UUID
        licence: str
        url: str
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, key: str, **_: Any) -> UUID:
        """One acceptance per tenant and licence: a second concurrent acceptance conflicts on version 1."""
        return uuid5(NAMESPACE, f"model-licence:{tenant_id}:{key}")

    @event(Accepted)
    def __init__(self, tenant_id: UUID, key: str, licence: str, url: str, actor: str, request_id: str) -> None:
        self.tenant_id = tenant_id
        self.key = key
        self.accepted = True

    def withdraw(self, ctx: Ctx) -> None:
        """Stop serving the licence's models to the tenant."""
        self.check_accepted(True)
        self._withdraw(tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id)

    def accept_again(self, ctx: Ctx, licence: str, url: str) -> None:
        """Accept a withdrawn licence again (its current text, as the catalogue now names it)."""
        self.check_accepted(False)
        self._reaccept(tenant_id=self.tenant_id, licence=licence, url=url, actor=ctx.actor, request_id=ctx.request_id)

    def check_accepted(self, expected: bool) -> None:
        """Refuse a withdrawal of what is not accepted, and an acceptance of what already is."""
        if self.accepted != expected:
            raise InvalidState("the licence is already accepted" if self.accepted else "the licence is not accepted")

    @event(Withdrawn)
    def _withdraw(self, tenant_id: UUID, actor: str, request_id: str) -> None:
        self.accepted = False

    @event(Reaccepted)
    def _reaccept(self, tenant_id: UUID, licence: str, url: str, actor: str, request_id: str) -> None:
        self.accepted = True
