"""Model licences: the catalogue with what the tenant accepted; admins accept and withdraw (terms §9)."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.dependencies import CommandService
from api.principal import Principal
from domain.application import OwnLLM
from domain.context import Ctx
from domain.model_licence import UNLISTED_PREFIX
from domain.permissions import Action
from legal import catalogue
from projections.directory import Directory


class LicenceOut(msgspec.Struct):
    """One licence of the catalogue (or an acknowledged unlisted model) and whether the tenant accepted it."""

    key: str
    name: str
    url: str
    publisher: str
    patterns: list[str]
    commercial_use: str
    prohibited_uses: str
    commercial_mau_limit: int | None
    accepted: bool


class AcceptLicence(msgspec.Struct, forbid_unknown_fields=True):
    """Accept by catalogue ``key`` or by ``model`` id; an unlisted model needs ``acknowledge_unlisted``."""

    key: str = ""
    model: str = ""
    acknowledge_unlisted: bool = False


class AcceptedOut(msgspec.Struct):
    """What was accepted."""

    key: str
    name: str
    url: str


class LicenceController(Controller):
    """The licence of each model family, and the tenant's acceptances."""

    path = "/api/v1/licences"
    tags = ["licences"]

    @get("/", operation_id="listLicences", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def list_licences(
        self, principal: NamedDependency[Principal], directory: NamedDependency[Directory]
    ) -> list[LicenceOut]:
        """The catalogue in match order, then acknowledged unlisted models, each with whether it is accepted."""
        accepted = directory.accepted_licences(principal.tenant_id)
        rows = [
            LicenceOut(
                e.key,
                e.licence,
                e.url,
                e.publisher,
                list(e.patterns),
                e.commercial_use,
                e.prohibited_uses,
                e.commercial_mau_limit,
                e.key in accepted,
            )
            for e in catalogue.bundled().entries
        ]
        unlisted = sorted(k for k in accepted if k.startswith(UNLISTED_PREFIX))
        rows += [LicenceOut(k, "", "", "", [k.removeprefix(UNLISTED_PREFIX)], "", "", None, True) for k in unlisted]
        return rows

    @post("/", operation_id="acceptLicence", opt={"action": Action.LICENCES_MANAGE}, sync_to_thread=True)
    def accept(
        self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService], data: JSONBody[AcceptLicence]
    ) -> AcceptedOut:
        """Accept, for the whole tenant, the licence governing a model; its models are served from then on."""
        accepted = commands.run(
            OwnLLM.accept_model_licence,
            ctx,
            model=data.model,
            key=data.key,
            acknowledge_unlisted=data.acknowledge_unlisted,
        )
        return AcceptedOut(accepted.key, accepted.licence, accepted.url)

    @delete("/{key:str}", operation_id="withdrawLicence", opt={"action": Action.LICENCES_MANAGE}, sync_to_thread=True)
    def withdraw(
        self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService], key: FromPath[str]
    ) -> None:
        """Withdraw an acceptance: the licence's models are refused from the next request on."""
        commands.run(OwnLLM.withdraw_model_licence, ctx, key)
