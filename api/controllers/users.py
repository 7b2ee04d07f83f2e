"""Users of the caller's tenant: list, change role, suspend, reinstate, remove."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.principal import Principal
from api.views import user_out
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import NotFound
from domain.permissions import Action
from projections.directory import Directory


class UserController(Controller):
    """Admins manage users; oversight roles read them."""

    path = "/api/v1/users"
    tags = ["users"]

    @listing("listUsers", Action.USERS_READ)
    def list_users(
        self,
        request: AnyRequest,
        principal: NamedDependency[Principal],
        directory: NamedDependency[Directory],
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
    ) -> Response[list[schemas.UserOut]]:
        """All users of the tenant, oldest first, removed ones included with their status."""
        return paginate(request, directory.tenant_users(principal.tenant_id), user_out, limit, after)

    @get("/{user_id:uuid}", operation_id="getUser", opt={"action": Action.USERS_READ}, sync_to_thread=False)
    def get_user(
        self, principal: NamedDependency[Principal], directory: NamedDependency[Directory], user_id: FromPath[UUID]
    ) -> schemas.UserOut:
        """One user of the tenant."""
        user = directory.in_tenant(directory.users, user_id, principal.tenant_id)
        if user is None:
            raise NotFound("user not found")
        return user_out(user)

    @post(
        "/{user_id:uuid}/role",
        operation_id="changeUserRole",
        opt={"action": Action.USERS_MANAGE},
        sync_to_thread=True,
    )
    def change_role(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        user_id: FromPath[UUID],
        data: JSONBody[schemas.RoleChangeRequest],
    ) -> schemas.UserOut:
        """Give a user another role (the tenant always keeps one active admin)."""
        commands.run(OwnLLM.change_role, ctx, user_id, data.role, data.reason)
        return user_out(directory.users[user_id])

    @post(
        "/{user_id:uuid}/suspend",
        operation_id="suspendUser",
        opt={"action": Action.USERS_MANAGE},
        sync_to_thread=True,
    )
    def suspend(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        user_id: FromPath[UUID],
        data: JSONBody[schemas.ReasonRequest],
    ) -> schemas.UserOut:
        """Suspend a user: their keys are refused until reinstated."""
        commands.run(OwnLLM.suspend_user, ctx, user_id, data.reason)
        return user_out(directory.users[user_id])

    @post(
        "/{user_id:uuid}/reinstate",
        operation_id="reinstateUser",
        opt={"action": Action.USERS_MANAGE},
        sync_to_thread=True,
    )
    def reinstate(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        user_id: FromPath[UUID],
        data: JSONBody[schemas.ReasonRequest],
    ) -> schemas.UserOut:
        """Reinstate a suspended user."""
        commands.run(OwnLLM.reinstate_user, ctx, user_id, data.reason)
        return user_out(directory.users[user_id])

    @delete("/{user_id:uuid}", operation_id="removeUser", opt={"action": Action.USERS_MANAGE}, sync_to_thread=True)
    def remove(
        self,
        ctx: NamedDependency[Ctx],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        now: NamedDependency[datetime],
        user_id: FromPath[UUID],
        reason: FromQuery[str] = "",
    ) -> Response[None]:
        """Remove a user from the tenant; their keys stop working at once. ``?reason=`` is recorded.

        Keys they minted for other users keep working (they belong to those users): when any is still
        usable, the answer carries ``Link: </api/v1/keys?all_users=true&issued_by=ID>; rel="review"``.
        """
        commands.run(OwnLLM.remove_user, ctx, user_id, reason)
        headers = {"Link": review_link(user_id)} if minted_for_others(directory, ctx.tenant_id, user_id, now) else {}
        return Response(None, status_code=204, headers=headers)


def review_link(issuer: UUID) -> str:
    """Where an admin reviews the keys ``issuer`` minted for other users."""
    return f'</api/v1/keys?all_users=true&issued_by={issuer}>; rel="review"'


def minted_for_others(directory: Directory, tenant_id: UUID, issuer: UUID, now: datetime) -> bool:
    """Whether ``issuer`` minted a key for another user that still works (not revoked, not expired)."""
    return any(
        k.issued_by == issuer and k.user_id != issuer and k.revoked_at is None and not _expired(k.expires_at, now)
        for k in directory.tenant_keys(tenant_id)
    )


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
