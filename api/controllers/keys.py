"""Personal API keys: users issue and revoke their own; admins may for anyone in the tenant."""

from __future__ import annotations

from functools import partial
from uuid import UUID

from litestar import Controller, Response, delete, post
from litestar.params import FromPath, FromQuery, JSONBody

from api import schemas
from api.guards import AnyRequest, can, ctx_of, principal_of, services_of
from api.pagination import DEFAULT_LIMIT, After, Limit, listing, paginate
from api.views import key_out
from domain.errors import NotFound, PermissionDenied
from domain.permissions import Action


class KeyController(Controller):
    """The secret is shown once at issue; listings show the visible prefix only."""

    path = "/api/v1/keys"
    tags = ["api-keys"]

    @listing("listKeys", Action.KEYS_READ_OWN)
    def list_keys(
        self,
        request: AnyRequest,
        all_users: FromQuery[bool] = False,
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
    ) -> Response[list[schemas.KeyOut]]:
        """The caller's keys, oldest first; ``?all_users=true`` lists the tenant's (admin, compliance, auditor)."""
        principal = principal_of(request)
        if all_users and not can(request, Action.KEYS_READ_ALL):
            raise PermissionDenied("listing every user's keys needs an admin, compliance or auditor role")
        user_id = None if all_users else principal.user_id
        rows = services_of(request).directory.tenant_keys(principal.tenant_id, user_id)
        return paginate(request, rows, partial(key_out, now=services_of(request).app.clock()), limit, after)

    @post("/", operation_id="issueKey", opt={"action": Action.KEYS_OWN}, sync_to_thread=True)
    def issue(self, request: AnyRequest, data: JSONBody[schemas.IssueKeyRequest]) -> schemas.IssuedKeyOut:
        """Issue a key for yourself (or, as admin, for ``user_id``); the secret is in this answer only."""
        principal = principal_of(request)
        owner = data.user_id or principal.user_id
        if owner != principal.user_id and not can(request, Action.KEYS_MANAGE_ALL):
            raise PermissionDenied("only admins may issue keys for another user")
        services = services_of(request)
        issued = services.command(
            services.app.issue_api_key,
            ctx_of(request),
            user_id=owner,
            name=data.name,
            scopes=list(data.scopes),
            expires_at=data.expires_at,
        )
        key = services.directory.keys[issued.id]
        return schemas.IssuedKeyOut(issued.id, owner, issued.secret, issued.prefix, sorted(key.scopes), key.expires_at)

    @delete("/{key_id:uuid}", operation_id="revokeKey", opt={"action": Action.KEYS_OWN}, sync_to_thread=True)
    def revoke(self, request: AnyRequest, key_id: FromPath[UUID], reason: FromQuery[str] = "") -> None:
        """Revoke a key; it is refused from the next request on."""
        principal = principal_of(request)
        services = services_of(request)
        key = services.directory.in_tenant(services.directory.keys, key_id, principal.tenant_id)
        if key is None:
            raise NotFound("apikey not found")
        if key.user_id != principal.user_id and not can(request, Action.KEYS_MANAGE_ALL):
            raise NotFound("apikey not found")
        services.command(services.app.revoke_api_key, ctx_of(request), key_id, reason)
