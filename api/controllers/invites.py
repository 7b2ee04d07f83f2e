"""Invites: admins invite by email and role; the invitee accepts with the token."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from litestar import Controller, Response, delete, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.outbox.invitations import mail_invitation
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.principal import Principal
from api.views import invite_out
from domain.application import OwnLLM
from domain.context import Ctx
from domain.permissions import Action
from projections.directory import Directory


class InviteController(Controller):
    """Invite tokens are shown once and expire (7 days by default)."""

    path = "/api/v1/invites"
    tags = ["invites"]

    @post("/", operation_id="inviteUser", opt={"action": Action.USERS_INVITE}, sync_to_thread=True)
    def invite(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        outbox: NamedDependency[Any],
        data: JSONBody[schemas.InviteRequest],
    ) -> schemas.IssuedInviteOut:
        """Invite an email with a role; the token in this answer is shown only once (and mailed when SMTP is set)."""
        issued = commands.run(OwnLLM.invite_user, ctx, email=data.email, role=data.role)
        assert issued.expires_at is not None
        mail_invitation(outbox, ctx, issued, data.email, data.role)
        return schemas.IssuedInviteOut(issued.id, issued.secret, issued.expires_at)

    @listing("listInvites", Action.USERS_READ)
    def list_invites(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
    ) -> Response[list[schemas.InviteOut]]:
        """The tenant's invites and their status (open, accepted, revoked), oldest first."""
        rows = directory.tenant_invites(principal.tenant_id)
        return paginate(request, rows, partial(invite_out, now=now), limit, after)

    @delete(
        "/{invite_id:uuid}",
        operation_id="revokeInvite",
        opt={"action": Action.USERS_INVITE},
        sync_to_thread=True,
    )
    def revoke(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        invite_id: FromPath[UUID],
        reason: FromQuery[str] = "",
    ) -> None:
        """Withdraw an open invite."""
        commands.run(OwnLLM.revoke_invite, ctx, invite_id, reason)

    @post("/accept", operation_id="acceptInvite", sync_to_thread=True)
    def accept(
        self,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        data: JSONBody[schemas.AcceptInviteRequest],
    ) -> schemas.JoinedOut:
        """Accept an invite (no API key needed: the token is the credential); returns a first API key once."""
        joined = commands.run(OwnLLM.accept_invite, token=data.token, name=data.name, request_id=request_id)
        key = joined.api_key
        return schemas.JoinedOut(
            joined.tenant_id,
            joined.user_id,
            joined.role,
            schemas.IssuedSecretOut(key.id, key.secret, key.prefix, key.expires_at),
        )
