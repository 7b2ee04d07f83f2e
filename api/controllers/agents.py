"""Pairing keys and agents: admins issue pairing keys; an agent redeems one once."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from litestar import Controller, Response, delete, post
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.guards import AnyRequest, ctx_of, principal_of, request_id_of, services_of
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.views import agent_out, pairing_out
from domain.permissions import Action


class PairingKeyController(Controller):
    """One-time keys (1 hour by default) that bind a new agent to the tenant."""

    path = "/api/v1/pairing-keys"
    tags = ["agents"]

    @post("/", operation_id="issuePairingKey", opt={"action": Action.AGENTS_MANAGE}, sync_to_thread=True)
    def issue(self, request: AnyRequest) -> schemas.IssuedSecretOut:
        """Issue a pairing key; give it to `ownllm-agent pair` on the GPU box. Shown only here."""
        services = services_of(request)
        issued = services.command(services.app.issue_pairing_key, ctx_of(request))
        return schemas.IssuedSecretOut(issued.id, issued.secret, issued.prefix, issued.expires_at)

    @listing("listPairingKeys", Action.AGENTS_READ)
    def list_keys(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Response[list[schemas.PairingKeyOut]]:
        """The tenant's pairing keys and their status (open, redeemed, revoked), oldest first."""
        directory = services_of(request).directory
        rows = directory.tenant_pairing_keys(principal_of(request).tenant_id)
        return paginate(request, rows, partial(pairing_out, now=services_of(request).app.clock()), limit, after)

    @delete(
        "/{pairing_key_id:uuid}",
        operation_id="revokePairingKey",
        opt={"action": Action.AGENTS_MANAGE},
        sync_to_thread=True,
    )
    def revoke(self, request: AnyRequest, pairing_key_id: FromPath[UUID], reason: FromQuery[str] = "") -> None:
        """Withdraw an unused pairing key."""
        services = services_of(request)
        services.command(services.app.revoke_pairing_key, ctx_of(request), pairing_key_id, reason)


class AgentController(Controller):
    """Paired agents of the tenant."""

    path = "/api/v1/agents"
    tags = ["agents"]

    @post("/pair", operation_id="pairAgent", sync_to_thread=True)
    def pair(self, request: AnyRequest, data: JSONBody[schemas.PairRequest]) -> schemas.PairedOut:
        """Redeem a pairing key (the key is the credential); returns the agent's NATS credentials once."""
        services = services_of(request)
        paired = services.command(
            services.app.redeem_pairing_key,
            secret=data.pairing_key,
            name=data.name,
            request_id=request_id_of(request),
        )
        settings = services.settings
        nats_url = settings.nats_public_url or settings.nats_url
        return schemas.PairedOut(paired.agent_id, paired.tenant_id, nats_url, paired.nats_user, paired.nats_password)

    @listing("listAgents", Action.AGENTS_READ)
    def list_agents(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Response[list[schemas.AgentOut]]:
        """The tenant's agents, active and revoked, oldest first."""
        directory = services_of(request).directory
        rows = directory.tenant_agents(principal_of(request).tenant_id)
        return paginate(request, rows, agent_out, limit, after)

    @delete(
        "/{agent_id:uuid}",
        operation_id="revokeAgent",
        opt={"action": Action.AGENTS_MANAGE},
        sync_to_thread=True,
    )
    def revoke(self, request: AnyRequest, agent_id: FromPath[UUID], reason: FromQuery[str] = "") -> None:
        """Revoke an agent: NATS refuses and disconnects it within seconds."""
        services = services_of(request)
        services.command(services.app.revoke_agent, ctx_of(request), agent_id, reason)
