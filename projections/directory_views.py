"""The rows of the directory read model, as the API lists them (never a secret: hashes only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


@dataclass(slots=True)
class TenantView:
    """A tenant as listed."""

    id: UUID
    slug: str
    name: str
    admin_user_id: UUID
    registered_at: datetime
    suspended: bool = False
    plan: str = ""  # empty until billing assigns one: the settings' default plan applies
    terms_version: int = 0  # the latest version of the terms the tenant accepted (0: none recorded)
    terms_rejected: int = 0  # a version of the terms the tenant rejected in its notice period (0: none)
    terminated: bool = False  # the contract ended: its members are erased within 30 days
    jurisdiction: str = ""  # set by its admin (ISO 3166-1 alpha-2); "": the operator's default applies


@dataclass(slots=True)
class UserView:
    """A user as listed; ``name``/``email`` read ``<erased>`` once the subject is erased."""

    id: UUID
    tenant_id: UUID
    name: str
    email: str
    role: str
    joined_at: datetime
    suspended: bool = False
    removed: bool = False
    erased: bool = False

    @property
    def status(self) -> str:
        """active, suspended, removed or erased."""
        if self.erased:
            return "erased"
        return "removed" if self.removed else "suspended" if self.suspended else "active"


@dataclass(slots=True)
class KeyView:
    """An API key as listed (never its secret) plus its hash for authentication."""

    id: UUID
    tenant_id: UUID
    user_id: UUID
    name: str
    prefix: str
    secret_hash: str
    scopes: frozenset[str]
    expires_at: datetime | None
    issued_at: datetime
    revoked_at: datetime | None = None
    issued_by: UUID | None = None  # the user who minted it; None: operator, signup/joining, or older keys
    suspended: bool = False  # by the operator, or as suspected shared under the tenant's policy
    sharing_suspected_at: datetime | None = None  # the last time the key-sharing detector reported it


@dataclass(slots=True)
class InviteView:
    """An invite as listed (never its token)."""

    id: UUID
    tenant_id: UUID
    user_id: UUID
    email: str
    role: str
    expires_at: datetime
    issued_at: datetime
    status: str = "open"


@dataclass(slots=True)
class PairingKeyView:
    """A pairing key as listed (never its secret)."""

    id: UUID
    tenant_id: UUID
    prefix: str
    expires_at: datetime
    issued_at: datetime
    status: str = "open"
    agent_id: UUID | None = None


@dataclass(slots=True)
class AgentView:
    """A paired agent and its NATS identity (bcrypt hash only)."""

    id: UUID
    tenant_id: UUID
    name: str
    nats_user: str
    nats_password_bcrypt: str
    paired_at: datetime
    revoked_at: datetime | None = None


@dataclass(slots=True)
class TenantRows:
    """One tenant's rows in event order (oldest first); lists only grow, so readers may slice them
    while the runner thread appends."""

    users: list[UserView] = field(default_factory=list)
    keys: list[KeyView] = field(default_factory=list)
    invites: list[InviteView] = field(default_factory=list)
    pairing_keys: list[PairingKeyView] = field(default_factory=list)
    agents: list[AgentView] = field(default_factory=list)
    licences: frozenset[str] = frozenset()  # accepted model-licence keys; replaced whole, never mutated
    features: frozenset[str] = frozenset()  # opt-in features turned on; replaced whole, never mutated
