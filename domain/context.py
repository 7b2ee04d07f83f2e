"""Who did it, for which tenant, and in which request: carried by every command and event."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Caller:
    """The key-holder a command runs for: their user, their role and the scopes of their key."""

    user_id: UUID
    role: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Ctx:
    """The command's provenance: actor (``user:<id>``, ``key:<id>``, ``agent:<id>`` or ``system``).

    ``caller`` is the key-holder whose role and scopes limit what the command may do to another
    user's objects (see ``domain/authorization.py``); None when the system itself acts (the CLI, the
    demo setup, reactions), which no role limits within the tenant.
    """

    actor: str
    tenant_id: UUID
    request_id: str
    caller: Caller | None = None
