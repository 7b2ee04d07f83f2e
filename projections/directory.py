"""The directory: tenants, users, invites, keys, pairing keys and agents as the API reads them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.agent import Agent
from domain.api_key import ApiKey
from domain.deletion import Deletion
from domain.invite import Invite
from domain.pairing_key import PairingKey
from domain.sealing import ERASED
from domain.tenant import Tenant
from domain.user import User
from projections.directory_agreements import AGREEMENT_HANDLERS
from projections.directory_views import (
    AgentView,
    InviteView,
    KeyView,
    PairingKeyView,
    TenantRows,
    TenantView,
    UserView,
)
from projections.log import topics_of

__all__ = ["AgentView", "Directory", "InviteView", "KeyView", "PairingKeyView", "TenantRows", "TenantView", "UserView"]


_NO_ROWS = TenantRows()


@dataclass
class Directory:
    """In-memory read model, rebuilt from the notification log and kept current by the runner.

    The runner thread writes while request threads read: by-id lookups are single dict reads, and
    per-tenant listings read their own append-only lists, so no reader walks a dict that grows.
    """

    tenants: dict[UUID, TenantView] = field(default_factory=dict)
    users: dict[UUID, UserView] = field(default_factory=dict)
    keys: dict[UUID, KeyView] = field(default_factory=dict)
    keys_by_hash: dict[str, KeyView] = field(default_factory=dict)
    invites: dict[UUID, InviteView] = field(default_factory=dict)
    pairing_keys: dict[UUID, PairingKeyView] = field(default_factory=dict)
    agents: dict[UUID, AgentView] = field(default_factory=dict)
    by_tenant: dict[UUID, TenantRows] = field(default_factory=dict)
    keys_by_user: dict[UUID, list[KeyView]] = field(default_factory=dict)  # one user's keys, oldest first
    invites_by_user: dict[UUID, list[InviteView]] = field(default_factory=dict)  # invites naming a user id
    licence_keys: dict[UUID, str] = field(default_factory=dict)  # acceptance id -> licence key
    publications: dict[str, datetime] = field(default_factory=dict)  # legal document ref -> published at
    feature_names: dict[UUID, str] = field(default_factory=dict)  # opt-in id -> feature name
    agents_version: int = 0  # bumped whenever the set of agent credentials changes
    topics: ClassVar[tuple[str, ...]]  # the events it reads: those of its handler table (set below)

    def process(self, event: Any) -> None:
        """Apply one domain event."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    # -- queries (also the domain's Directory port) -----------------------------------------

    def rows(self, tenant_id: UUID) -> TenantRows:
        """A tenant's rows (empty for an unknown tenant, without creating any)."""
        return self.by_tenant.get(tenant_id, _NO_ROWS)

    def email_taken(self, tenant_id: UUID, email: str, now: datetime) -> bool:
        """A current user or an open, unexpired invite of the tenant has this email."""
        rows = self.rows(tenant_id)
        return any(u.email == email and not u.removed for u in rows.users) or any(
            i.email == email and i.status == "open" and i.expires_at > now for i in rows.invites
        )

    def tenant_users(self, tenant_id: UUID) -> list[UserView]:
        """A tenant's users, oldest first."""
        return self.rows(tenant_id).users[:]

    def tenant_keys(self, tenant_id: UUID, user_id: UUID | None = None) -> list[KeyView]:
        """A tenant's keys (optionally one user's), oldest first."""
        if user_id is None:
            return self.rows(tenant_id).keys[:]
        return [k for k in self.keys_by_user.get(user_id, ())[:] if k.tenant_id == tenant_id]  # not a tenant scan

    def tenant_invites(self, tenant_id: UUID) -> list[InviteView]:
        """A tenant's invites, oldest first."""
        return self.rows(tenant_id).invites[:]

    def tenant_pairing_keys(self, tenant_id: UUID) -> list[PairingKeyView]:
        """A tenant's pairing keys, oldest first."""
        return self.rows(tenant_id).pairing_keys[:]

    def features_on(self, tenant_id: UUID) -> frozenset[str]:
        """The opt-in features the tenant has turned on."""
        return self.by_tenant.get(tenant_id, _NO_ROWS).features

    def accepted_licences(self, tenant_id: UUID) -> frozenset[str]:
        """The model-licence keys the tenant has accepted (an O(1) read for the proxy)."""
        return self.by_tenant.get(tenant_id, _NO_ROWS).licences

    def tenant_agents(self, tenant_id: UUID) -> list[AgentView]:
        """A tenant's agents, oldest first."""
        return self.rows(tenant_id).agents[:]

    def active_agents(self) -> list[AgentView]:
        """Agents of every tenant whose credentials are valid (input of the NATS authorization)."""
        return [a for a in list(self.agents.values()) if a.revoked_at is None]

    def revoked_agents(self) -> list[AgentView]:
        """Agents whose credentials were revoked."""
        return [a for a in list(self.agents.values()) if a.revoked_at is not None]

    def _add(self, tenant_id: UUID) -> TenantRows:
        """The tenant's rows, created on its first row."""
        rows = self.by_tenant.get(tenant_id)
        if rows is None:
            rows = self.by_tenant[tenant_id] = TenantRows()
        return rows

    def in_tenant(self, table: dict[UUID, Any], object_id: UUID, tenant_id: UUID) -> Any | None:
        """An object of the tenant, or None (another tenant's object looks exactly like a missing one)."""
        found = table.get(object_id)
        return found if found is not None and found.tenant_id == tenant_id else None


def _tenant_registered(d: Directory, e: Tenant.Registered) -> None:
    d.tenants[e.originator_id] = TenantView(e.originator_id, e.slug, str(e.name), e.admin_user_id, e.timestamp)


def _tenant_suspended(d: Directory, e: Tenant.Suspended) -> None:
    d.tenants[e.originator_id].suspended = True


def _tenant_reinstated(d: Directory, e: Tenant.Reinstated) -> None:
    d.tenants[e.originator_id].suspended = False


def _tenant_terminated(d: Directory, e: Tenant.Terminated) -> None:
    tenant = d.tenants[e.originator_id]
    tenant.suspended = tenant.terminated = True


def _subject_erased(d: Directory, e: Deletion.SubjectErased) -> None:
    """Redact every copy of the subject's sealed values at once (the events now read ``<erased>`` too)."""
    rows = d.rows(e.tenant_id)
    if e.subject_kind == "tenant":
        if (tenant := d.tenants.get(e.tenant_id)) is not None:
            tenant.name = ERASED  # also when an old event held it in clear
        for agent in rows.agents:
            agent.name = ERASED
        return
    user = d.users.get(e.subject_id)
    if user is not None:
        user.name = user.email = ERASED
        user.removed = user.erased = True
    for key in d.keys_by_user.get(e.subject_id, ()):  # the person's own, not a scan of the tenant's
        if key.tenant_id == e.tenant_id:
            key.name = ERASED
            key.revoked_at = key.revoked_at or e.timestamp
    for invite in d.invites_by_user.get(e.subject_id, ()):
        if invite.tenant_id == e.tenant_id:
            invite.email = ERASED


def _user_joined(d: Directory, e: User.Joined) -> None:
    user = UserView(e.originator_id, e.tenant_id, str(e.name), str(e.email), e.role, e.timestamp)
    d.users[user.id] = user
    d._add(user.tenant_id).users.append(user)


def _user_role_changed(d: Directory, e: User.RoleChanged) -> None:
    d.users[e.originator_id].role = e.role


def _user_suspended(d: Directory, e: User.Suspended) -> None:
    d.users[e.originator_id].suspended = True


def _user_reinstated(d: Directory, e: User.Reinstated) -> None:
    d.users[e.originator_id].suspended = False


def _user_removed(d: Directory, e: User.Removed) -> None:
    d.users[e.originator_id].removed = True


def _invite_issued(d: Directory, e: Invite.Issued) -> None:
    invite = InviteView(e.originator_id, e.tenant_id, e.user_id, str(e.email), e.role, e.expires_at, e.timestamp)
    d.invites[invite.id] = invite
    d._add(invite.tenant_id).invites.append(invite)
    d.invites_by_user.setdefault(invite.user_id, []).append(invite)


def _invite_accepted(d: Directory, e: Invite.Accepted) -> None:
    d.invites[e.originator_id].status = "accepted"


def _invite_revoked(d: Directory, e: Invite.Revoked) -> None:
    d.invites[e.originator_id].status = "revoked"


def _key_issued(d: Directory, e: ApiKey.Issued) -> None:
    key = KeyView(
        e.originator_id,
        e.tenant_id,
        e.user_id,
        str(e.name),
        e.prefix,
        e.secret_hash,
        frozenset(e.scopes),
        e.expires_at,
        e.timestamp,
        issued_by=e.issued_by,
    )
    d.keys[key.id] = key
    d.keys_by_hash[key.secret_hash] = key
    d._add(key.tenant_id).keys.append(key)
    d.keys_by_user.setdefault(key.user_id, []).append(key)


def _key_revoked(d: Directory, e: ApiKey.Revoked) -> None:
    d.keys[e.originator_id].revoked_at = e.timestamp


def _key_suspended(d: Directory, e: ApiKey.Suspended | ApiKey.Reinstated) -> None:
    d.keys[e.originator_id].suspended = isinstance(e, ApiKey.Suspended)


def _pairing_issued(d: Directory, e: PairingKey.Issued) -> None:
    pairing = PairingKeyView(e.originator_id, e.tenant_id, e.prefix, e.expires_at, e.timestamp)
    d.pairing_keys[pairing.id] = pairing
    d._add(pairing.tenant_id).pairing_keys.append(pairing)


def _pairing_redeemed(d: Directory, e: PairingKey.Redeemed) -> None:
    view = d.pairing_keys[e.originator_id]
    view.status, view.agent_id = "redeemed", e.agent_id


def _pairing_revoked(d: Directory, e: PairingKey.Revoked) -> None:
    d.pairing_keys[e.originator_id].status = "revoked"


def _agent_paired(d: Directory, e: Agent.Paired) -> None:
    agent = AgentView(e.originator_id, e.tenant_id, str(e.name), e.nats_user, e.nats_password_bcrypt, e.timestamp)
    d.agents[agent.id] = agent
    d._add(agent.tenant_id).agents.append(agent)
    d.agents_version += 1


def _agent_revoked(d: Directory, e: Agent.Revoked) -> None:
    d.agents[e.originator_id].revoked_at = e.timestamp
    d.agents_version += 1


_HANDLERS: dict[type, Callable[[Directory, Any], None]] = {
    Tenant.Registered: _tenant_registered,
    Tenant.Suspended: _tenant_suspended,
    Tenant.Reinstated: _tenant_reinstated,
    Tenant.Terminated: _tenant_terminated,
    Deletion.SubjectErased: _subject_erased,
    User.Joined: _user_joined,
    User.RoleChanged: _user_role_changed,
    User.Suspended: _user_suspended,
    User.Reinstated: _user_reinstated,
    User.Removed: _user_removed,
    Invite.Issued: _invite_issued,
    Invite.Accepted: _invite_accepted,
    Invite.Revoked: _invite_revoked,
    ApiKey.Issued: _key_issued,
    ApiKey.Revoked: _key_revoked,
    ApiKey.Suspended: _key_suspended,
    ApiKey.Reinstated: _key_suspended,
    PairingKey.Issued: _pairing_issued,
    PairingKey.Redeemed: _pairing_redeemed,
    PairingKey.Revoked: _pairing_revoked,
    Agent.Paired: _agent_paired,
    Agent.Revoked: _agent_revoked,
    **AGREEMENT_HANDLERS,
}
Directory.topics = topics_of(_HANDLERS)
