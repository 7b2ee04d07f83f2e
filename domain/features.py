"""Features a tenant may turn on, beta ones clearly labelled (terms §6: beta features are off until a tenant
turns them on, may change or be withdrawn without the usual notice, and carry no availability commitment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, NotFound
from domain.ids import NAMESPACE


@dataclass(frozen=True, slots=True)
class Feature:
    """One opt-in feature."""

    name: str
    summary: str
    beta: bool


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(
            "key-sharing-suspension",
            "Suspend an API key at once when the key-sharing detector suspects it is shared (otherwise admins "
            "are only told). The heuristic may change.",
            beta=True,
        ),
    )
}


def check_feature(name: str) -> Feature:
    """The feature of that name, or :class:`NotFound`."""
    feature = FEATURES.get(name)
    if feature is None:
        raise NotFound(f"no feature {name!r}; known: {', '.join(sorted(FEATURES))}")
    return feature


class FeatureOptIn(Aggregate):
    """A tenant's choice for one feature: on or off, as often as it likes."""

    class OptedIn(Aggregate.Created):
        tenant_id: UUID
        feature: str
        beta: bool  # as labelled when the tenant turned it on
        actor: str
        request_id: str

    class OptedOut(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str

    class OptedInAgain(Aggregate.Event):
        tenant_id: UUID
        beta: bool
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, feature: str, **_: Any) -> UUID:
        """One choice per tenant and feature."""
        return uuid5(NAMESPACE, f"feature:{tenant_id}:{feature}")

    @event(OptedIn)
    def __init__(self, tenant_id: UUID, feature: str, beta: bool, actor: str, request_id: str) -> None:
        self.tenant_id = tenant_id
        self.feature = feature
        self.on = True

    def opt_out(self, ctx: Ctx) -> None:
        """Turn the feature off."""
        if not self.on:
            raise InvalidState(f"{self.feature} is already off")
        self._opted_out(tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id)

    def opt_in_again(self, ctx: Ctx, beta: bool) -> None:
        """Turn the feature on again."""
        if self.on:
            raise InvalidState(f"{self.feature} is already on")
        self._opted_in_again(tenant_id=self.tenant_id, beta=beta, actor=ctx.actor, request_id=ctx.request_id)

    @event(OptedOut)
    def _opted_out(self, tenant_id: UUID, actor: str, request_id: str) -> None:
        self.on = False

    @event(OptedInAgain)
    def _opted_in_again(self, tenant_id: UUID, beta: bool, actor: str, request_id: str) -> None:
        self.on = True
