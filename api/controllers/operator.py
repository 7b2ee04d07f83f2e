"""The operator API: suspend and reinstate tenants, users and keys; decide appeals. Operator tokens only."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api import enforcement_schemas as schemas
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.operator_auth import operator_guard, operator_of
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import NotFound
from projections.enforcement import Enforcement


def _ctx(request: AnyRequest, tenant_id: UUID, request_id: str) -> Ctx:
    return Ctx(operator_of(request).actor, tenant_id, request_id)


class OperatorController(Controller):
    """Only an operator token (``ownllm operator create-token NAME``) passes; tenant keys get 401."""

    path = "/api/v1/operator"
    tags = ["operator"]
    guards = [operator_guard]
    opt = {"operator": True}

    @post("/suspensions", operation_id="operatorSuspend", sync_to_thread=True)
    def suspend(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        enforcement: NamedDependency[Enforcement],
        now: NamedDependency[datetime],
        data: JSONBody[schemas.SuspendRequest],
    ) -> schemas.SuspensionOut:
        """Suspend a tenant, a user or an API key, with a reason code and a summary (sent to the tenant's admins)."""
        case_id = commands.run(
            OwnLLM.suspend,
            _ctx(request, data.tenant_id, request_id),
            kind=data.kind,
            subject_id=data.subject_id,
            reason_code=data.reason_code,
            summary=data.summary,
        )
        return schemas.suspension_out(enforcement.suspensions[case_id], now)

    @post("/reinstatements", operation_id="operatorReinstate", sync_to_thread=True, status_code=204)
    def reinstate(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        data: JSONBody[schemas.ReinstateRequest],
    ) -> None:
        """Reinstate a suspended tenant, user or API key; its suspension is lifted."""
        ctx = _ctx(request, data.tenant_id, request_id)
        commands.run(OwnLLM.reinstate, ctx, kind=data.kind, subject_id=data.subject_id, reason=data.reason)

    @get("/suspensions", operation_id="operatorListSuspensions", sync_to_thread=False)
    def suspensions(
        self, enforcement: NamedDependency[Enforcement], now: NamedDependency[datetime]
    ) -> list[schemas.SuspensionOut]:
        """Every suspension, oldest first."""
        return [schemas.suspension_out(s, now) for s in list(enforcement.suspensions.values())]

    @get("/appeals", operation_id="operatorListAppeals", sync_to_thread=False)
    def appeals(self, enforcement: NamedDependency[Enforcement]) -> list[schemas.AppealOut]:
        """Every appeal, oldest first (open ones await a decision)."""
        return [schemas.appeal_out(a) for a in enforcement.all_appeals()]

    @post("/appeals/{appeal_id:uuid}/decision", operation_id="operatorDecideAppeal", sync_to_thread=True)
    def decide(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        enforcement: NamedDependency[Enforcement],
        appeal_id: FromPath[UUID],
        data: JSONBody[schemas.DecisionRequest],
    ) -> schemas.AppealOut:
        """Uphold the suspension or lift it (lifting reinstates its subject at once)."""
        found = enforcement.appeals.get(appeal_id)
        if found is None:
            raise NotFound("appeal not found")
        ctx = _ctx(request, found.tenant_id, request_id)
        commands.run(OwnLLM.decide_appeal, ctx, appeal_id=appeal_id, outcome=data.outcome, reason=data.reason)
        return schemas.appeal_out(enforcement.appeals[appeal_id])
