"""A tenant's suspensions and its appeals against them: open to the tenant's admins even while suspended."""

from __future__ import annotations

from datetime import datetime

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api import enforcement_schemas as schemas
from api.dependencies import CommandService
from api.guards import ALLOWED_WHILE_SUSPENDED
from api.principal import Principal
from domain.application import OwnLLM
from domain.context import Ctx
from domain.permissions import Action
from projections.enforcement import Enforcement


class SuspensionController(Controller):
    """What the operator suspended in the caller's tenant, and until when it may be appealed."""

    path = "/api/v1/suspensions"
    tags = ["appeals"]

    @get("/", operation_id="listSuspensions", opt={"action": Action.APPEALS_READ, ALLOWED_WHILE_SUSPENDED: True},
         sync_to_thread=False)  # fmt: skip
    def list_suspensions(
        self, principal: NamedDependency[Principal], enforcement: NamedDependency[Enforcement],
        now: NamedDependency[datetime],
    ) -> list[schemas.SuspensionOut]:  # fmt: skip
        """The tenant's suspensions, oldest first."""
        return [schemas.suspension_out(s, now) for s in enforcement.tenant_suspensions(principal.tenant_id)]


class AppealController(Controller):
    """Appeals: filed within 30 days of the suspension, one per suspension, decided by the operator."""

    path = "/api/v1/appeals"
    tags = ["appeals"]

    @post("/", operation_id="fileAppeal", opt={"action": Action.APPEALS_FILE, ALLOWED_WHILE_SUSPENDED: True},
          sync_to_thread=True)  # fmt: skip
    def file(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        enforcement: NamedDependency[Enforcement],
        data: JSONBody[schemas.AppealRequest],
    ) -> schemas.AppealOut:
        """Appeal a suspension of the tenant (or of one of its users or keys) within 30 days of it."""
        appeal_id = commands.run(OwnLLM.file_appeal, ctx, suspension_id=data.suspension_id, statement=data.statement)
        return schemas.appeal_out(enforcement.appeals[appeal_id])

    @get("/", operation_id="listAppeals", opt={"action": Action.APPEALS_READ, ALLOWED_WHILE_SUSPENDED: True},
         sync_to_thread=False)  # fmt: skip
    def list_appeals(
        self, principal: NamedDependency[Principal], enforcement: NamedDependency[Enforcement]
    ) -> list[schemas.AppealOut]:
        """The tenant's appeals and their decisions, oldest first."""
        return [schemas.appeal_out(a) for a in enforcement.tenant_appeals(principal.tenant_id)]
