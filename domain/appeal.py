"""An appeal against a suspension: filed by the suspended party within 30 days, decided by the operator."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.ids import NAMESPACE
from domain.sealing import PersonalData


class Outcome(StrEnum):
    """What the operator decided."""

    UPHELD = "upheld"
    LIFTED = "lifted"


def check_outcome(outcome: str) -> Outcome:
    """A known outcome, or :class:`InvalidValue`."""
    try:
        return Outcome(outcome)
    except ValueError:
        raise InvalidValue(f"unknown outcome '{outcome}'; one of: {', '.join(Outcome)}", "outcome") from None


class Appeal(Aggregate):
    """One appeal per suspension: its id follows from the suspension's, so a second filing conflicts."""

    class Filed(Aggregate.Created):
        tenant_id: UUID
        suspension_id: UUID
        statement: PersonalData  # the appellant's own words: sealed under the appellant
        actor: str
        request_id: str

    class Decided(Aggregate.Event):
        tenant_id: UUID
        outcome: str
        reason: PersonalData  # the operator's reasons may name people: sealed under the tenant
        actor: str
        request_id: str

    @staticmethod
    def create_id(suspension_id: UUID, **_: Any) -> UUID:
        """The appeal of a suspension."""
        return uuid5(NAMESPACE, f"appeal:{suspension_id}")

    @event(Filed)
    def __init__(
        self, tenant_id: UUID, suspension_id: UUID, statement: PersonalData, actor: str, request_id: str
    ) -> None:
        self.tenant_id = tenant_id
        self.suspension_id = suspension_id
        self.outcome: str | None = None

    def decide(self, ctx: Ctx, outcome: Outcome, reason: str) -> None:
        """The operator's decision; final."""
        if self.outcome is not None:
            raise InvalidState(f"the appeal was already decided ({self.outcome})")
        self._decided(
            tenant_id=self.tenant_id,
            outcome=outcome.value,
            reason=PersonalData(self.tenant_id, reason),
            actor=ctx.actor,
            request_id=ctx.request_id,
        )

    @event(Decided)
    def _decided(self, tenant_id: UUID, outcome: str, reason: PersonalData, actor: str, request_id: str) -> None:
        self.outcome = outcome
