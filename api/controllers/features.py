"""Opt-in features, beta ones labelled (terms §6): listed for every member, turned on and off by admins."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.dependencies import CommandService
from api.principal import Principal
from domain.application import OwnLLM
from domain.context import Ctx
from domain.features import FEATURES
from domain.permissions import Action
from projections.directory import Directory


class FeatureOut(msgspec.Struct):
    """A feature, whether it is beta (may change or disappear without notice) and whether it is on."""

    name: str
    summary: str
    beta: bool
    on: bool


class FeatureChoice(msgspec.Struct, forbid_unknown_fields=True):
    """Turn the feature on or off."""

    on: bool


class FeatureController(Controller):
    """The tenant's opt-in features."""

    path = "/api/v1/features"
    tags = ["features"]

    @get("/", operation_id="listFeatures", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def list_features(
        self, principal: NamedDependency[Principal], directory: NamedDependency[Directory]
    ) -> list[FeatureOut]:
        """Every opt-in feature, labelled beta where it is, and whether the tenant has it on."""
        on = directory.features_on(principal.tenant_id)
        return [FeatureOut(f.name, f.summary, f.beta, f.name in on) for f in FEATURES.values()]

    @put("/{name:str}", operation_id="setFeature", opt={"action": Action.FEATURES_MANAGE}, sync_to_thread=True)
    def set_feature(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        name: FromPath[str],
        data: JSONBody[FeatureChoice],
    ) -> FeatureChoice:
        """Turn a feature on or off for the whole tenant (admins)."""
        commands.run(OwnLLM.set_feature, ctx, name, data.on)
        return data
