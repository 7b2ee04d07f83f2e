"""An agent on a tenant's GPU box, paired with a pairing key; it connects out to NATS."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState
from domain.sealing import PersonalData


class Agent(Aggregate):
    """Holds the agent's NATS identity (user name and bcrypt hash of its password)."""

    class Paired(Aggregate.Created):
        tenant_id: UUID
        pairing_key_id: UUID
        name: PersonalData  # a device name may name its owner ("alice-desktop"): sealed under the tenant
        nats_user: str
        nats_password_bcrypt: str
        actor: str
        request_id: str

    class Revoked(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    @event(Paired)
    def __init__(
        self,
        id: UUID,
        tenant_id: UUID,
        pairing_key_id: UUID,
        name: PersonalData,
        nats_user: str,
        nats_password_bcrypt: str,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.revoked = False

    def revoke(self, ctx: Ctx, reason: str) -> None:
        """Cut the agent off; NATS refuses it within seconds."""
        if self.revoked:
            raise InvalidState("agent is already revoked")
        self._revoked(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.tenant_id, reason),
        )

    @event(Revoked)
    def _revoked(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.revoked = True
