"""Read-model rows to response structs."""

from __future__ import annotations

from datetime import datetime

from api import schemas
from projections.directory import AgentView, InviteView, KeyView, PairingKeyView, TenantView, UserView


def tenant_out(t: TenantView, default_jurisdiction: str = "") -> schemas.TenantOut:
    """A tenant as the API shows it; its jurisdiction, or ``default_jurisdiction`` when it set none."""
    status = "suspended" if t.suspended else "active"
    jurisdiction = t.jurisdiction or default_jurisdiction
    return schemas.TenantOut(t.id, t.slug, t.name, status, t.registered_at, jurisdiction, not t.jurisdiction)


def user_out(u: UserView) -> schemas.UserOut:
    return schemas.UserOut(u.id, u.name, u.email, u.role, u.status, u.joined_at)


def invite_out(i: InviteView, now: datetime) -> schemas.InviteOut:
    return schemas.InviteOut(i.id, i.email, i.role, _unless_expired(i.status, i.expires_at, now), i.expires_at,
                             i.issued_at)  # fmt: skip


def key_out(k: KeyView, now: datetime) -> schemas.KeyOut:
    status = "revoked" if k.revoked_at else "suspended" if k.suspended else _unless_expired("active", k.expires_at, now)
    return schemas.KeyOut(
        k.id, k.user_id, k.name, k.prefix, sorted(k.scopes), status, k.expires_at, k.issued_at, k.revoked_at,
        k.issued_by, k.sharing_suspected_at,
    )  # fmt: skip


def pairing_out(p: PairingKeyView, now: datetime) -> schemas.PairingKeyOut:
    status = _unless_expired(p.status, p.expires_at, now)
    return schemas.PairingKeyOut(p.id, p.prefix, status, p.expires_at, p.issued_at, p.agent_id)


def agent_out(a: AgentView) -> schemas.AgentOut:
    return schemas.AgentOut(a.id, a.name, "revoked" if a.revoked_at else "active", a.paired_at, a.revoked_at)


def _unless_expired(status: str, expires_at: datetime | None, now: datetime) -> str:
    """``expired`` for a still-usable status whose time is up (the stored status never says so)."""
    if status in ("open", "active") and expires_at is not None and expires_at <= now:
        return "expired"
    return status
