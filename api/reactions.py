"""The platform's reactions to events (handlers of ``projections.reactions``), wired by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.utils import get_topic

from api.nats_auth import AgentAccount, NatsAuthorization
from domain.agent import Agent
from domain.tenant import Tenant
from projections.directory import Directory


def nats_accounts(directory: Directory) -> list[AgentAccount]:
    """The NATS logins of every active agent whose tenant is not suspended (a suspended tenant's agents are cut off)."""
    tenants = directory.tenants
    return [
        AgentAccount(str(a.id), str(a.tenant_id), a.nats_user, a.nats_password_bcrypt)
        for a in directory.active_agents()
        if (tenant := tenants.get(a.tenant_id)) is not None and not tenant.suspended
    ]


class NatsAuthorizationResync:
    """Rewrites NATS's authorization when an agent is paired or revoked or its tenant suspended or
    reinstated, and reloads the server (nats-server drops the connections of users it no longer has).

    Retried with backoff until the reload succeeds: a revoked agent keeps its NATS access only for as
    long as the reload fails, never silently for good. Idempotent (the file is rendered whole from
    the directory), so running it again after a crash is harmless.
    """

    name = "nats-authorization"
    topics = tuple(
        sorted(
            get_topic(cls)
            for cls in (Agent.Paired, Agent.Revoked, Tenant.Suspended, Tenant.Reinstated, Tenant.Terminated)
        )
    )

    def __init__(
        self,
        authorization: NatsAuthorization,
        accounts: Callable[[], list[AgentAccount]],
        catch_up: Callable[[], object],
    ) -> None:
        self.authorization = authorization
        self.accounts = accounts
        self.catch_up = catch_up

    def handle(self, event: Any, position: int) -> None:
        """Bring the directory up to this event at least, then write and reload the authorization."""
        self.catch_up()
        self.authorization.sync(self.accounts())
