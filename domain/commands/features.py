"""Opt-in features: a tenant turns them on and off; beta ones are labelled (terms §6)."""

from __future__ import annotations

from uuid import UUID

from domain.commands.base import Commands
from domain.context import Ctx
from domain.errors import InvalidState
from domain.features import FeatureOptIn, check_feature


class FeatureCommands(Commands):
    """Each choice is an event; a feature is off until the tenant opts in."""

    def set_feature(self, ctx: Ctx, name: str, on: bool) -> None:
        """Turn an opt-in feature on or off for the tenant (beta ones are labelled: terms §6)."""
        self._tenant(ctx.tenant_id).check_active()
        feature = check_feature(name)
        choice = self._get(FeatureOptIn.create_id(ctx.tenant_id, name))
        if isinstance(choice, FeatureOptIn):
            if on:
                choice.opt_in_again(ctx, feature.beta)
            else:
                choice.opt_out(ctx)
        elif on:
            choice = FeatureOptIn(
                tenant_id=ctx.tenant_id, feature=name, beta=feature.beta, actor=ctx.actor, request_id=ctx.request_id
            )
        else:
            raise InvalidState(f"{name} is already off")
        self._save(choice)

    def feature_on(self, tenant_id: UUID, name: str) -> bool:
        """Whether the tenant has the feature on (off until it opts in)."""
        choice = self._get(FeatureOptIn.create_id(tenant_id, name))
        return isinstance(choice, FeatureOptIn) and choice.on
