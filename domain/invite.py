"""An invitation to join a tenant: a one-time token that expires."""

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


class Invite(Aggregate):
    """Issued by an admin for an email and a role; accepting it creates the user."""

    class Issued(Aggregate.Created):
        tenant_id: UUID
        user_id: UUID
        email: PersonalData
        role: str
        token_hash: str
        expires_at: datetime
        actor: str
        request_id: str

    class Accepted(Aggregate.Event):
        tenant_id: UUID
        user_id: UUID
        actor: str
        request_id: str

    class Revoked(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    @staticmethod
    def create_id(token_hash: str, **_: Any) -> UUID:
        """Found again from the token alone."""
        return secret_id_for("invite", token_hash)

    @event(Issued)
    def __init__(
        self,
        tenant_id: UUID,
        user_id: UUID,
        email: PersonalData,
        role: str,
        token_hash: str,
        expires_at: datetime,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.email = email
        self.role = role
        self.expires_at = expires_at
        self.accepted = False
        self.revoked = False

    def check_open(self, now: datetime) -> None:
        """Refuse a used, revoked or late invite."""
        check_usable_once(
            used="accepted" if self.accepted else None,
            revoked=self.revoked,
            expires_at=self.expires_at,
            now=now,
            what="invite",
            renew_hint="ask an admin for a new one",
        )

    def accept(self, ctx: Ctx, now: datetime) -> None:
        """Mark the invite used by the user it names."""
        self.check_open(now)
        self._accepted(tenant_id=self.tenant_id, user_id=self.user_id, actor=ctx.actor, request_id=ctx.request_id)

    def revoke(self, ctx: Ctx, reason: str) -> None:
        """Withdraw an unused invite."""
        if self.accepted or self.revoked:
            raise InvalidState("invite is no longer open")
        self._revoked(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.user_id, reason),
        )

    @event(Accepted)
    def _accepted(self, tenant_id: UUID, user_id: UUID, actor: str, request_id: str) -> None:
        self.accepted = True

    @event(Revoked)
    def _revoked(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.revoked = True
