"""Who is calling: the authenticated identity every request handler receives."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.context import Caller
from policies.limits import DEFAULT_PLAN


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated API key and the user, tenant and plan behind it."""

    tenant_id: UUID
    user_id: UUID
    key_id: UUID
    role: str
    scopes: frozenset[str]
    plan: str = DEFAULT_PLAN

    @property
    def actor(self) -> str:
        """The actor recorded on events caused by this caller."""
        return f"key:{self.key_id}"

    @property
    def caller(self) -> Caller:
        """What the domain's rules see of this caller: user, role and key scopes."""
        return Caller(self.user_id, self.role, self.scopes)
