"""Who did it, for which tenant, and in which request: carried by every command and event."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Ctx:
    """The command's provenance: actor (``user:<id>``, ``key:<id>``, ``agent:<id>`` or ``system``)."""

    actor: str
    tenant_id: UUID
    request_id: str
