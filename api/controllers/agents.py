"""Pairing keys and agents: admins issue pairing keys; an agent redeems one once."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from uuid import UUID

from litestar import Controller, Response, delete, post
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.principal import Principal
from api.settings import Settings, agent_nats_url
from api.views import agent_out, pairing_out
from domain.application import OwnLLM
from domain.context import Ctx
from domain.permissions import Action
from projections.directory import Directory


class PairingKeyController(Controller):
    """One-time keys (1 hour by default) that bind a new agent to the tenant."""

    path = "/api/v1/pairing-keys"
    tags = ["agents"]

    @post("/", operation_id="issuePairingKey", opt={"action": Action.AGENTS_MANAGE}, sync_to_thread=True)
    def issue(self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService]) -> schemas.IssuedSecretOut:
        """Issue a pairing key; give it to `ownllm-agent pair` on the GPU box. Shown only here."""
        issued = commands.run(OwnLLM.issue_pairing_key, ctx)
        return schemas.IssuedSecretOut(issued.id, issued.secret, issued.prefix, issued.expires_at)

    @listing("listPairingKeys", Action.AGENTS_READ)
    def list_keys(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
    ) -> Response[list[schemas.PairingKeyOut]]:
        """The tenant's pairing keys and their status (open, redeemed, revoked), oldest first."""
        rows = directory.tenant_pairing_keys(principal.tenant_id)
        return paginate(request, rows, partial(pairing_out, now=now), limit, after)

    @delete(
        "/{pairing_key_id:uuid}",
        operation_id="revokePairingKey",
        opt={"action": Action.AGENTS_MANAGE},
        sync_to_thread=True,
    )
    def revoke(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        pairing_key_id: FromPath[UUID],
        reason: FromQuery[str] = "",
    ) -> None:
        """Withdraw an unused pairing key."""
        commands.run(OwnLLM.revoke_pairing_key, ctx, pairing_key_id, reason)


class AgentController(Controller):
    """Paired agents of the tenant."""

    path = "/api/v1/agents"
    tags = ["agents"]

    @post("/pair", operation_id="pairAgent", sync_to_thread=True)
    def pair(
        self,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.PairRequest],
    ) -> schemas.PairedOut:
        """Redeem a pairing key (the key is the credential); returns the agent's NATS credentials once."""
        nats_url = agent_nats_url(settings)
        if not nats_url:  # checked before redeeming, so the key stays usable once the operator fixes it
            raise ServiceUnavailableException(
                detail="this platform has no NATS URL for agents yet: its operator must set OWNLLM_NATS_PUBLIC_URL"
            )
        paired = commands.run(OwnLLM.redeem_pairing_key, secret=data.pairing_key, name=data.name, request_id=request_id)
        return schemas.PairedOut(paired.agent_id, paired.tenant_id, nats_url, paired.nats_user, paired.nats_password)

    @listing("listAgents", Action.AGENTS_READ)
    def list_agents(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        directory: NamedDependency[Directory],
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
    ) -> Response[list[schemas.AgentOut]]:
        """The tenant's agents, active and revoked, oldest first."""
        return paginate(request, directory.tenant_agents(principal.tenant_id), agent_out, limit, after)

    @delete(
        "/{agent_id:uuid}",
        operation_id="revokeAgent",
        opt={"action": Action.AGENTS_MANAGE},
        sync_to_thread=True,
    )
    def revoke(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        agent_id: FromPath[UUID],
        reason: FromQuery[str] = "",
    ) -> None:
        """Revoke an agent: NATS refuses and disconnects it within seconds."""
        commands.run(OwnLLM.revoke_agent, ctx, agent_id, reason)
