"""Invites: admins invite by email and role; the invitee accepts with the token."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from litestar import Controller, Response, delete, post
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.guards import AnyRequest, ctx_of, principal_of, request_id_of, services_of
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.views import invite_out
from domain.permissions import Action


class InviteController(Controller):
    """Invite tokens are shown once and expire (7 days by default)."""

    path = "/api/v1/invites"
    tags = ["invites"]

    @post("/", operation_id="inviteUser", opt={"action": Action.USERS_INVITE}, sync_to_thread=True)
    def invite(self, request: AnyRequest, data: JSONBody[schemas.InviteRequest]) -> schemas.IssuedInviteOut:
        """Invite an email with a role; the token in this answer is shown only once."""
        services = services_of(request)
        issued = services.command(services.app.invite_user, ctx_of(request), email=data.email, role=data.role)
        assert issued.expires_at is not None
        return schemas.IssuedInviteOut(issued.id, issued.secret, issued.expires_at)

    @listing("listInvites", Action.USERS_READ)
    def list_invites(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Response[list[schemas.InviteOut]]:
        """The tenant's invites and their status (open, accepted, revoked), oldest first."""
        directory = services_of(request).directory
        rows = directory.tenant_invites(principal_of(request).tenant_id)
        return paginate(request, rows, partial(invite_out, now=services_of(request).app.clock()), limit, after)

    @delete(
        "/{invite_id:uuid}",
        operation_id="revokeInvite",
        opt={"action": Action.USERS_INVITE},
        sync_to_thread=True,
    )
    def revoke(self, request: AnyRequest, invite_id: FromPath[UUID], reason: FromQuery[str] = "") -> None:
        """Withdraw an open invite."""
        services = services_of(request)
        services.command(services.app.revoke_invite, ctx_of(request), invite_id, reason)

    @post("/accept", operation_id="acceptInvite", sync_to_thread=True)
    def accept(self, request: AnyRequest, data: JSONBody[schemas.AcceptInviteRequest]) -> schemas.JoinedOut:
        """Accept an invite (no API key needed: the token is the credential); returns a first API key once."""
        services = services_of(request)
        joined = services.command(
            services.app.accept_invite, token=data.token, name=data.name, request_id=request_id_of(request)
        )
        key = joined.api_key
        return schemas.JoinedOut(
            joined.tenant_id,
            joined.user_id,
            joined.role,
            schemas.IssuedSecretOut(key.id, key.secret, key.prefix, key.expires_at),
        )
