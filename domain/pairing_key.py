"""A one-time, expiring key an admin hands to a GPU box so its agent can pair with the tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState
from domain.ids import secret_id_for
from domain.one_time import check_usable_once
from domain.sealing import PersonalData


class PairingKey(Aggregate):
    """Redeemed at most once, before it expires, for one agent."""

    class Issued(Aggregate.Created):
        tenant_id: UUID
        prefix: str
        secret_hash: str
        expires_at: datetime
        actor: str
        request_id: str

    class Redeemed(Aggregate.Event):
        tenant_id: UUID
        agent_id: UUID
        actor: str
        request_id: str

    class Revoked(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    @staticmethod
    def create_id(secret_hash: str, **_: Any) -> UUID:
        """Found again from the secret alone."""
        return secret_id_for("pairing-key", secret_hash)

    @event(Issued)
    def __init__(
        self,
        tenant_id: UUID,
        prefix: str,
        secret_hash: str,
        expires_at: datetime,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.expires_at = expires_at
        self.redeemed = False
        self.revoked = False

    def check_redeemable(self, now: datetime) -> None:
        """Refuse a used, revoked or expired key."""
        check_usable_once(
            used="redeemed" if self.redeemed else None,
            revoked=self.revoked,
            expires_at=self.expires_at,
            now=now,
            what="pairing key",
            renew_hint="issue a new one",
        )

    def redeem(self, ctx: Ctx, agent_id: UUID, now: datetime) -> None:
        """Use the key for one agent."""
        self.check_redeemable(now)
        self._redeemed(tenant_id=self.tenant_id, agent_id=agent_id, actor=ctx.actor, request_id=ctx.request_id)

    def revoke(self, ctx: Ctx, reason: str) -> None:
        """Withdraw an unused key."""
        if self.redeemed or self.revoked:
            raise InvalidState("pairing key is no longer open")
        self._revoked(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.tenant_id, reason),
        )

    @event(Redeemed)
    def _redeemed(self, tenant_id: UUID, agent_id: UUID, actor: str, request_id: str) -> None:
        self.redeemed = True

    @event(Revoked)
    def _revoked(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.revoked = True
