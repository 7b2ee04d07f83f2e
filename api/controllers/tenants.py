"""Signup and the caller's own tenant."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api import schemas
from api.dependencies import CommandService
from api.principal import Principal
from api.views import tenant_out, user_out
from domain.application import OwnLLM
from domain.errors import NotFound
from domain.permissions import Action
from projections.directory import Directory


class TenantController(Controller):
    """Tenants: public signup, then each tenant sees only itself."""

    path = "/api/v1"
    tags = ["tenants"]

    @post("/tenants", operation_id="signupTenant", sync_to_thread=True)
    def signup(
        self,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        data: JSONBody[schemas.SignupRequest],
    ) -> schemas.SignupResponse:
        """Sign up an organisation and its first admin; the admin API key is shown only in this answer."""
        result = commands.run(
            OwnLLM.signup,
            slug=data.slug,
            name=data.name,
            admin_name=data.admin_name,
            admin_email=data.admin_email,
            request_id=request_id,
        )
        key = result.admin_key
        return schemas.SignupResponse(
            tenant=tenant_out(directory.tenants[result.tenant_id]),
            admin=user_out(directory.users[result.admin_user_id]),
            api_key=schemas.IssuedSecretOut(key.id, key.secret, key.prefix, key.expires_at),
        )

    @get("/tenant", operation_id="getTenant", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def current(
        self, principal: NamedDependency[Principal], directory: NamedDependency[Directory]
    ) -> schemas.TenantOut:
        """The tenant of the calling key."""
        tenant = directory.tenants.get(principal.tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant_out(tenant)

    @get("/me", operation_id="getMe", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def me(self, principal: NamedDependency[Principal], directory: NamedDependency[Directory]) -> schemas.MeOut:
        """Who the calling key belongs to, and what it may do."""
        return schemas.MeOut(
            user=user_out(directory.users[principal.user_id]),
            tenant=tenant_out(directory.tenants[principal.tenant_id]),
            key_id=principal.key_id,
            scopes=sorted(principal.scopes),
        )
