"""Signup and the caller's own tenant."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import JSONBody

from api import schemas
from api.guards import AnyRequest, principal_of, request_id_of, services_of
from api.views import tenant_out, user_out
from domain.errors import NotFound
from domain.permissions import Action


class TenantController(Controller):
    """Tenants: public signup, then each tenant sees only itself."""

    path = "/api/v1"
    tags = ["tenants"]

    @post("/tenants", operation_id="signupTenant", sync_to_thread=True)
    def signup(self, request: AnyRequest, data: JSONBody[schemas.SignupRequest]) -> schemas.SignupResponse:
        """Sign up an organisation and its first admin; the admin API key is shown only in this answer."""
        services = services_of(request)
        result = services.command(
            services.app.signup,
            slug=data.slug,
            name=data.name,
            admin_name=data.admin_name,
            admin_email=data.admin_email,
            request_id=request_id_of(request),
        )
        key = result.admin_key
        return schemas.SignupResponse(
            tenant=tenant_out(services.directory.tenants[result.tenant_id]),
            admin=user_out(services.directory.users[result.admin_user_id]),
            api_key=schemas.IssuedSecretOut(key.id, key.secret, key.prefix, key.expires_at),
        )

    @get("/tenant", operation_id="getTenant", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def current(self, request: AnyRequest) -> schemas.TenantOut:
        """The tenant of the calling key."""
        tenant = services_of(request).directory.tenants.get(principal_of(request).tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant_out(tenant)

    @get("/me", operation_id="getMe", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def me(self, request: AnyRequest) -> schemas.MeOut:
        """Who the calling key belongs to, and what it may do."""
        principal = principal_of(request)
        directory = services_of(request).directory
        return schemas.MeOut(
            user=user_out(directory.users[principal.user_id]),
            tenant=tenant_out(directory.tenants[principal.tenant_id]),
            key_id=principal.key_id,
            scopes=sorted(principal.scopes),
        )
