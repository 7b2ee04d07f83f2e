"""Read-model rows to response structs."""

from __future__ import annotations

from api import schemas
from projections.directory import AgentView, InviteView, KeyView, PairingKeyView, TenantView, UserView


def tenant_out(t: TenantView) -> schemas.TenantOut:
    return schemas.TenantOut(t.id, t.slug, t.name, "suspended" if t.suspended else "active", t.registered_at)


def user_out(u: UserView) -> schemas.UserOut:
    return schemas.UserOut(u.id, u.name, u.email, u.role, u.status, u.joined_at)


def invite_out(i: InviteView) -> schemas.InviteOut:
    return schemas.InviteOut(i.id, i.email, i.role, i.status, i.expires_at, i.issued_at)


def key_out(k: KeyView) -> schemas.KeyOut:
    status = "revoked" if k.revoked_at else "active"
    return schemas.KeyOut(
        k.id, k.user_id, k.name, k.prefix, sorted(k.scopes), status, k.expires_at, k.issued_at, k.revoked_at
    )


def pairing_out(p: PairingKeyView) -> schemas.PairingKeyOut:
    return schemas.PairingKeyOut(p.id, p.prefix, p.status, p.expires_at, p.issued_at, p.agent_id)


def agent_out(a: AgentView) -> schemas.AgentOut:
    return schemas.AgentOut(a.id, a.name, "revoked" if a.revoked_at else "active", a.paired_at, a.revoked_at)
