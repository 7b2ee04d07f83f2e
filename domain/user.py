"""A user of a tenant: joins through signup or an accepted invite; personal data sealed."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import InvalidState, InvalidValue
from domain.roles import Role
from domain.sealing import PersonalData


def check_role(role: str) -> Role:
    """A known role, or :class:`InvalidValue` naming the field."""
    try:
        return Role(role)
    except ValueError:
        raise InvalidValue(f"unknown role '{role}'; one of: {', '.join(Role)}", "role") from None


class User(Aggregate):
    """A person in one tenant, with one role; removed users stay in history but lose all access."""

    class Joined(Aggregate.Created):
        tenant_id: UUID
        name: PersonalData
        email: PersonalData
        role: str
        invite_id: UUID | None
        actor: str
        request_id: str

    class RoleChanged(Aggregate.Event):
        tenant_id: UUID
        role: str
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    class Suspended(Aggregate.Event):
        """``reason_code``/``suspension_id``: set when the operator acted (an admin's suspension has none)."""

        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed
        reason_code: str = ""
        suspension_id: UUID | None = None

    class Reinstated(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    class Removed(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str
        reason: PersonalData  # free text may name people: sealed

    @event(Joined)
    def __init__(
        self,
        id: UUID,
        tenant_id: UUID,
        name: PersonalData,
        email: PersonalData,
        role: str,
        invite_id: UUID | None,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.email = email
        self.role = role
        self.suspended = False
        self.suspension_id: UUID | None = None  # the operator's open action, when it stopped this
        self.removed = False

    @property
    def active(self) -> bool:
        """May authenticate and act."""
        return not (self.suspended or self.removed)

    def check_not_removed(self) -> None:
        """Removed users are history: no command changes them."""
        if self.removed:
            raise InvalidState("user was removed")

    def change_role(self, ctx: Ctx, role: str, reason: str) -> None:
        """Give the user another role."""
        self.check_not_removed()
        new_role = check_role(role)
        if new_role == self.role:
            raise InvalidState(f"user already has role '{role}'")
        self._role_changed(
            tenant_id=self.tenant_id,
            role=new_role.value,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.id, reason),
        )

    def suspend(self, ctx: Ctx, reason: str, reason_code: str = "", suspension_id: UUID | None = None) -> None:
        """Stop the user's access until reinstated."""
        self.check_not_removed()
        if self.suspended:
            raise InvalidState("user is already suspended")
        self._suspended(
            tenant_id=self.tenant_id,
            actor=ctx.actor,
            request_id=ctx.request_id,
            reason=PersonalData(self.id, reason),
            reason_code=reason_code,
            suspension_id=suspension_id,
        )

    def reinstate(self, ctx: Ctx, reason: str) -> None:
        """Restore a suspended user's access."""
        self.check_not_removed()
        if not self.suspended:
            raise InvalidState("user is not suspended")
        self._reinstated(
            tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id, reason=PersonalData(self.id, reason)
        )

    def remove(self, ctx: Ctx, reason: str) -> None:
        """Remove the user from the tenant; all their keys stop working at once."""
        self.check_not_removed()
        self._removed(
            tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id, reason=PersonalData(self.id, reason)
        )

    @event(RoleChanged)
    def _role_changed(self, tenant_id: UUID, role: str, actor: str, request_id: str, reason: PersonalData) -> None:
        self.role = role

    @event(Suspended)
    def _suspended(
        self,
        tenant_id: UUID,
        actor: str,
        request_id: str,
        reason: PersonalData,
        reason_code: str = "",
        suspension_id: UUID | None = None,
    ) -> None:
        self.suspended = True
        self.suspension_id = suspension_id

    @event(Reinstated)
    def _reinstated(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.suspended = False

    @event(Removed)
    def _removed(self, tenant_id: UUID, actor: str, request_id: str, reason: PersonalData) -> None:
        self.removed = True
