"""Users of the caller's tenant: list, change role, suspend, reinstate, remove."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from litestar import Controller, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.guards import AnyRequest, ctx_of, principal_of, services_of
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.views import user_out
from domain.application import OwnLLM
from domain.errors import NotFound
from domain.permissions import Action


class UserController(Controller):
    """Admins manage users; oversight roles read them."""

    path = "/api/v1/users"
    tags = ["users"]

    @listing("listUsers", Action.USERS_READ)
    def list_users(
        self, request: AnyRequest, limit: Limit = DEFAULT_LIMIT, after: After = None
    ) -> Response[list[schemas.UserOut]]:
        """All users of the tenant, oldest first, removed ones included with their status."""
        directory = services_of(request).directory
        return paginate(request, directory.tenant_users(principal_of(request).tenant_id), user_out, limit, after)

    @get("/{user_id:uuid}", operation_id="getUser", opt={"action": Action.USERS_READ}, sync_to_thread=False)
    def get_user(self, request: AnyRequest, user_id: FromPath[UUID]) -> schemas.UserOut:
        """One user of the tenant."""
        directory = services_of(request).directory
        user = directory.in_tenant(directory.users, user_id, principal_of(request).tenant_id)
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
        request: AnyRequest,
        user_id: FromPath[UUID],
        data: JSONBody[schemas.RoleChangeRequest],
    ) -> schemas.UserOut:
        """Give a user another role (the tenant always keeps one active admin)."""
        return _act(request, OwnLLM.change_role, user_id, data.role, data.reason)

    @post(
        "/{user_id:uuid}/suspend",
        operation_id="suspendUser",
        opt={"action": Action.USERS_MANAGE},
        sync_to_thread=True,
    )
    def suspend(
        self, request: AnyRequest, user_id: FromPath[UUID], data: JSONBody[schemas.ReasonRequest]
    ) -> schemas.UserOut:
        """Suspend a user: their keys are refused until reinstated."""
        return _act(request, OwnLLM.suspend_user, user_id, data.reason)

    @post(
        "/{user_id:uuid}/reinstate",
        operation_id="reinstateUser",
        opt={"action": Action.USERS_MANAGE},
        sync_to_thread=True,
    )
    def reinstate(
        self, request: AnyRequest, user_id: FromPath[UUID], data: JSONBody[schemas.ReasonRequest]
    ) -> schemas.UserOut:
        """Reinstate a suspended user."""
        return _act(request, OwnLLM.reinstate_user, user_id, data.reason)

    @delete("/{user_id:uuid}", operation_id="removeUser", opt={"action": Action.USERS_MANAGE}, sync_to_thread=True)
    def remove(self, request: AnyRequest, user_id: FromPath[UUID], reason: FromQuery[str] = "") -> None:
        """Remove a user from the tenant; their keys stop working at once. ``?reason=`` is recorded."""
        services = services_of(request)
        services.command(services.app.remove_user, ctx_of(request), user_id, reason)


def _act(request: AnyRequest, command: Callable[..., None], user_id: UUID, *args: str) -> schemas.UserOut:
    """Run one user command of the application for the caller, then answer the user as it is now."""
    services = services_of(request)
    services.command(command, services.app, ctx_of(request), user_id, *args)
    return user_out(services.directory.users[user_id])
