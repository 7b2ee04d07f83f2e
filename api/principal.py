"""Who is calling: the authenticated identity every request handler receives."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

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
