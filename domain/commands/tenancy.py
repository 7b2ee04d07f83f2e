"""Tenancy: signup, tenant suspension, invites, and the users' roles and status."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

from domain import secrets
from domain.commands.access import AccessCommands, IssuedSecret
from domain.commands.base import check_name, check_reason, normalise_email
from domain.context import Ctx
from domain.errors import AlreadyMember, AlreadyUsed, Conflict, InvalidValue, PermissionDenied, SlugTaken
from domain.invite import Invite
from domain.roles import SCOPES_BY_ROLE, Role
from domain.sealing import PersonalData
from domain.tenant import Tenant, check_slug, sealed_name
from domain.terms import TermsAnswer
from domain.user import User, check_role
from legal.documents import LegalDocument, in_force


@dataclass(frozen=True, slots=True)
class SignedUp:
    """The outcome of a signup."""

    tenant_id: UUID
    admin_user_id: UUID
    admin_key: IssuedSecret


@dataclass(frozen=True, slots=True)
class Joined:
    """The outcome of accepting an invite."""

    tenant_id: UUID
    user_id: UUID
    role: str
    api_key: IssuedSecret


class TenancyCommands(AccessCommands):
    """Tenants, their users and invites; every user change keeps the tenant's acting admins in step."""

    def signup(
        self, *, slug: str, name: str, admin_name: str, admin_email: str, request_id: str, accept_terms: str = ""
    ) -> SignedUp:
        """Register a tenant with its first admin, who gets an admin API key.

        ``accept_terms`` names the version of the terms the admin explicitly accepted (the one in force);
        it is recorded with the tenant, atomically. Empty: no acceptance (an operator creating a tenant).
        """
        check_slug(slug)
        terms = self._terms_to_accept(accept_terms)
        org_name = check_name(name, "name")
        admin_id = uuid4()
        actor = f"user:{admin_id}"
        tenant = Tenant(
            slug=slug, name=sealed_name(slug, org_name), admin_user_id=admin_id, actor=actor, request_id=request_id
        )
        admin = User(
            id=admin_id,
            tenant_id=tenant.id,
            name=PersonalData(admin_id, check_name(admin_name, "admin_name")),
            email=PersonalData(admin_id, normalise_email(admin_email)),
            role=Role.ADMIN.value,
            invite_id=None,
            actor=actor,
            request_id=request_id,
        )
        ctx = Ctx(actor=actor, tenant_id=tenant.id, request_id=request_id)
        key, issued = self._new_api_key(ctx, admin, "signup admin key", list(SCOPES_BY_ROLE[Role.ADMIN]), None)
        answers = [
            TermsAnswer.accept(tenant.id, t.kind, t.version, t.sha256, "explicit", actor, request_id) for t in terms
        ]
        self._save(tenant, admin, key, *answers, conflict=SlugTaken(f"slug '{slug}' is taken"))
        return SignedUp(tenant_id=tenant.id, admin_user_id=admin_id, admin_key=issued)

    def _terms_to_accept(self, ref: str) -> list[LegalDocument]:
        """The terms in force when ``ref`` names them; a stale or unknown version is refused."""
        if not ref:
            return []
        current = in_force(self.documents(), "terms", self.clock())
        if current is None or ref != current.ref:
            expected = current.ref if current else "none"
            raise InvalidValue(f"accept_terms must name the terms in force: {expected}", "accept_terms")
        return [current]

    def suspend_tenant(self, ctx: Ctx, reason: str) -> None:
        """Operator action: stop all access for the tenant."""
        tenant = self._tenant(ctx.tenant_id)
        tenant.suspend(ctx, check_reason(reason))
        self._save(tenant)

    def reinstate_tenant(self, ctx: Ctx, reason: str) -> None:
        """Operator action: restore access."""
        tenant = self._tenant(ctx.tenant_id)
        tenant.reinstate(ctx, check_reason(reason))
        self._save(tenant)

    # -- invites -----------------------------------------------------------------------------

    def invite_user(self, ctx: Ctx, *, email: str, role: str) -> IssuedSecret:
        """Invite an email with a role; the token is shown once and expires."""
        self._tenant(ctx.tenant_id).check_active()
        address = normalise_email(email)
        role_value = check_role(role).value
        if self.directory is not None and self.directory.email_taken(ctx.tenant_id, address, self.clock()):
            raise AlreadyMember("this email already has a user or an open invite in the tenant")
        token = secrets.new_secret(secrets.INVITE_PREFIX)
        user_id = uuid4()
        expires_at = self.clock() + self.invite_ttl
        invite = Invite(
            tenant_id=ctx.tenant_id,
            user_id=user_id,
            email=PersonalData(user_id, address),
            role=role_value,
            token_hash=secrets.keyed_hash(self.pepper, token),
            expires_at=expires_at,
            actor=ctx.actor,
            request_id=ctx.request_id,
        )
        self._save(invite, conflict=Conflict("token collision; retry"))
        return IssuedSecret(invite.id, token, secrets.visible_prefix(token), expires_at)

    def revoke_invite(self, ctx: Ctx, invite_id: UUID, reason: str) -> None:
        """Withdraw an open invite."""
        invite = self._load(Invite, invite_id, ctx.tenant_id)
        invite.revoke(ctx, check_reason(reason))
        self._save(invite)

    def accept_invite(self, *, token: str, name: str, request_id: str) -> Joined:
        """Create the invited user; they get a first API key with their role's scopes."""
        invite = self._by_secret(Invite, token, "invite")
        tenant = self._tenant(invite.tenant_id)
        tenant.check_active()
        actor = f"user:{invite.user_id}"
        ctx = Ctx(actor=actor, tenant_id=invite.tenant_id, request_id=request_id)
        invite.accept(ctx, self.clock())
        user = User(
            id=invite.user_id,
            tenant_id=invite.tenant_id,
            name=PersonalData(invite.user_id, check_name(name, "name")),
            email=invite.email,
            role=invite.role,
            invite_id=invite.id,
            actor=actor,
            request_id=request_id,
        )
        key, issued = self._new_api_key(ctx, user, "first key", list(SCOPES_BY_ROLE[Role(invite.role)]), None)
        if user.role == Role.ADMIN:
            tenant.appoint_admin(ctx, user.id)
        self._save(invite, user, key, tenant, conflict=AlreadyUsed("invite was already accepted"))
        return Joined(tenant_id=invite.tenant_id, user_id=user.id, role=user.role, api_key=issued)

    # -- users -------------------------------------------------------------------------------

    def change_role(self, ctx: Ctx, user_id: UUID, role: str, reason: str) -> None:
        """Give a user another role; the tenant keeps at least one active admin."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.change_role(ctx, role, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def suspend_user(self, ctx: Ctx, user_id: UUID, reason: str) -> None:
        """Stop a user's access (their keys are refused) until reinstated."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.suspend(ctx, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def reinstate_user(self, ctx: Ctx, user_id: UUID, reason: str) -> None:
        """Restore a suspended user (one the operator suspended only through the operator or an appeal)."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        if user.suspended and user.suspension_id is not None:
            raise PermissionDenied("the operator suspended this user: only an appeal or the operator lifts it")
        user.reinstate(ctx, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def remove_user(self, ctx: Ctx, user_id: UUID, reason: str) -> None:
        """Remove a user; every key of theirs stops working on the next request."""
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        user.remove(ctx, check_reason(reason))
        self._count_admin(ctx, tenant, user)

    def _count_admin(self, ctx: Ctx, tenant: Tenant, user: User) -> None:
        """Keep the tenant's acting admins in step with the user, and save both at once.

        Saving the tenant too (when its admins change) makes two concurrent demotions of the last
        two admins conflict on the tenant's version: one of them gets 409, never both through.
        """
        if user.active and user.role == Role.ADMIN:
            tenant.appoint_admin(ctx, user.id)
        else:
            tenant.step_down_admin(ctx, user.id)
        self._save(user, tenant)
