"""A personal API key: shown once, stored as a keyed hash, scoped, optionally expiring."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.ids import secret_id_for
from domain.roles import SCOPES_BY_ROLE, Role, Scope
from domain.sealing import PersonalData


def check_scopes(scopes: list[str], role: str) -> tuple[str, ...]:
    """Known scopes that the owner's role may hold, deduplicated and sorted."""
    if not scopes:
        raise InvalidValue("at least one scope is required", "scopes")
    allowed = SCOPES_BY_ROLE[Role(role)]
    result = set()
    for name in scopes:
        try:
            scope = Scope(name)
        except ValueError:
            raise InvalidValue(f"unknown scope '{name}'; one of: {', '.join(Scope)}", "scopes") from None
        if scope not in allowed:
            raise InvalidValue(f"role '{role}' may not hold scope '{name}'", "scopes")
        result.add(scope.value)
    return tuple(sorted(result))


class ApiKey(Aggregate):
    """Belongs to exactly one user; revocation is effective on the next request."""

    class Issued(Aggregate.Created):
        """``issued_by``: the user who minted the key (None: the operator, or the platform at signup
        or joining; also every key recorded before the field existed, see ``upcast_v1_v2``)."""

        class_version = 2
        tenant_id: UUID
        user_id: UUID
        name: PersonalData
        prefix: str
        secret_hash: str
        scopes: tuple[str, ...]
        expires_at: datetime | None
        actor: str
        request_id: str
        issued_by: UUID | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Keys issued before issuers were recorded: the issuer is unknown."""
            state["issued_by"] = None

    class Revoked(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    class SharingSuspected(Aggregate.Event):
        """Used from more networks or programs within the window than one person uses (terms §3).

        Counts only: the addresses themselves stay in the detecting process's memory for the window.
        """

        tenant_id: UUID
        network_count: int
        user_agent_count: int
        window_s: int
        suspended: bool  # the tenant chose to suspend suspected keys; otherwise its admins are told only
        actor: str
        request_id: str

    class Suspended(Aggregate.Event):
        """The operator stopped the key (reinstatable, unlike a revocation)."""

        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed
        reason_code: str
        suspension_id: UUID | None

    class Reinstated(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    @staticmethod
    def create_id(secret_hash: str, **_: Any) -> UUID:
        """The key's id follows from its hash."""
        return secret_id_for("api-key", secret_hash)

    @event(Issued)
    def __init__(
        self,
        tenant_id: UUID,
        user_id: UUID,
        name: PersonalData,
        prefix: str,
        secret_hash: str,
        scopes: tuple[str, ...],
        expires_at: datetime | None,
        actor: str,
        request_id: str,
        issued_by: UUID | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.issued_by = issued_by
        self.scopes = tuple(scopes)
        self.expires_at = expires_at
        self.revoked = False
        self.suspended = False
        self.suspension_id: UUID | None = None

    def revoke(self, ctx: Ctx, reason: str) -> None:
        """Stop the key working."""
        if self.revoked:
            raise InvalidState("key is already revoked")
        self._revoked(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.user_id, reason),
        )

    def suspect_sharing(
        self, ctx: Ctx, network_count: int, user_agent_count: int, window_s: int, suspend: bool
    ) -> None:
        """Record the suspicion; suspend the key too when the tenant chose so (not a revoked one)."""
        if self.revoked:
            raise InvalidState("key is revoked")
        self._sharing_suspected(
            tenant_id=self.tenant_id, network_count=network_count, user_agent_count=user_agent_count,
            window_s=window_s, suspended=suspend and not self.suspended, actor=ctx.actor, request_id=ctx.request_id,
        )  # fmt: skip

    @event(Revoked)
    def _revoked(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.revoked = True

    @event(SharingSuspected)
    def _sharing_suspected(
        self,
        tenant_id: UUID,
        network_count: int,
        user_agent_count: int,
        window_s: int,
        suspended: bool,
        actor: str,
        request_id: str,
    ) -> None:
        self.suspended = self.suspended or suspended

    def suspend(self, ctx: Ctx, reason: str, reason_code: str, suspension_id: UUID | None) -> None:
        """Stop the key until reinstated."""
        if self.revoked:
            raise InvalidState("key is revoked")
        if self.suspended:
            raise InvalidState("key is already suspended")
        self._suspended(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.user_id, reason),
            reason_code=reason_code,
            suspension_id=suspension_id,
        )

    def reinstate(self, ctx: Ctx, reason: str) -> None:
        """Let a suspended key work again."""
        if not self.suspended:
            raise InvalidState("key is not suspended")
        self._reinstated(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.user_id, reason),
        )

    @event(Suspended)
    def _suspended(
        self,
        tenant_id: UUID,
        actor: str,
        request_id: str,
        reason: PersonalData,
        reason_code: str,
        suspension_id: UUID | None,
    ) -> None:
        self.suspended = True
        self.suspension_id = suspension_id

    @event(Reinstated)
    def _reinstated(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.suspended = False
