"""Signup and the caller's own tenant."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post, put
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, JSONBody

from api import schemas
from api.dependencies import CommandService
from api.guards import AnyRequest
from api.principal import Principal
from api.settings import Settings
from api.signup_gate import SignupGate
from api.views import tenant_out, user_out
from domain.application import OwnLLM
from domain.context import Ctx
from domain.errors import NotFound, SlugTaken
from domain.ids import tenant_id_for
from domain.permissions import Action
from projections.directory import Directory

# What a taken slug answers an anonymous caller: that this one cannot be had, and nothing about
# whose it is (no name, id or date of the tenant that holds it, not even the slug echoed back).
SLUG_UNAVAILABLE = "this slug is not available; choose another"
TOKEN_DOC = "The operator's signup token, needed when this server takes signups by invitation only"


class TenantController(Controller):
    """Tenants: public signup, then each tenant sees only itself."""

    path = "/api/v1"
    tags = ["tenants"]

    @post(
        "/tenants",
        operation_id="signupTenant",
        sync_to_thread=True,
        responses={
            403: ResponseSpec(None, description="Signup is closed, or needs a signup token (OWNLLM_SIGNUP)"),
            409: ResponseSpec(None, description="The slug is not available"),
            429: ResponseSpec(None, description="Too many signups; see Retry-After"),
            503: ResponseSpec(None, description="The server holds as many organisations as it is configured to"),
        },
    )
    def signup(
        self,
        request: AnyRequest,
        request_id: NamedDependency[str],
        commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory],
        signup_gate: NamedDependency[SignupGate],
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.SignupRequest],
        signup_token: Annotated[
            str | None, HeaderParameter(name="X-Signup-Token", max_length=200, description=TOKEN_DOC)
        ] = None,
    ) -> schemas.SignupResponse:
        """Sign up an organisation and its first admin; the admin API key is shown only in this answer.

        Limited per client address; the server may take signups only with an operator's signup token
        (``X-Signup-Token``), or none at all.
        """
        peer = request.client.host if request.client else None
        signup_gate.admit(peer, request.headers.getall("x-forwarded-for", []), signup_token)
        with signup_gate.capacity():
            if tenant_id_for(data.slug) in directory.tenants:
                raise SlugTaken(SLUG_UNAVAILABLE)  # answered before any work, the same as the store's refusal
            try:
                result = commands.run(
                    OwnLLM.signup,
                    slug=data.slug,
                    name=data.name,
                    admin_name=data.admin_name,
                    admin_email=data.admin_email,
                    request_id=request_id,
                    accept_terms=data.accept_terms,
                )
            except SlugTaken:  # another signup took it a moment ago (maybe in another process)
                raise SlugTaken(SLUG_UNAVAILABLE) from None
        key = result.admin_key
        return schemas.SignupResponse(
            tenant=tenant_out(directory.tenants[result.tenant_id], settings.activity_jurisdiction),
            admin=user_out(directory.users[result.admin_user_id]),
            api_key=schemas.IssuedSecretOut(key.id, key.secret, key.prefix, key.expires_at),
        )

    @get("/tenant", operation_id="getTenant", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def current(
        self, principal: NamedDependency[Principal], directory: NamedDependency[Directory],
        settings: NamedDependency[Settings],
    ) -> schemas.TenantOut:  # fmt: skip
        """The tenant of the calling key."""
        tenant = directory.tenants.get(principal.tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant_out(tenant, settings.activity_jurisdiction)

    @put(
        "/tenant/jurisdiction", operation_id="setTenantJurisdiction", opt={"action": Action.TENANT_MANAGE},
        sync_to_thread=True,
    )  # fmt: skip
    def set_jurisdiction(
        self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService],
        directory: NamedDependency[Directory], settings: NamedDependency[Settings],
        data: JSONBody[schemas.JurisdictionIn],
    ) -> schemas.TenantOut:  # fmt: skip
        """Set whose law keeps the tenant's activity records (audit, usage): an ISO 3166-1 alpha-2 code (admins).

        Billing records follow the operator's jurisdiction, whatever this says.
        """
        commands.run(OwnLLM.set_jurisdiction, ctx, data.jurisdiction)
        return tenant_out(directory.tenants[ctx.tenant_id], settings.activity_jurisdiction)

    @get("/me", operation_id="getMe", opt={"action": Action.TENANT_READ}, sync_to_thread=False)
    def me(
        self, principal: NamedDependency[Principal], directory: NamedDependency[Directory],
        settings: NamedDependency[Settings],
    ) -> schemas.MeOut:  # fmt: skip
        """Who the calling key belongs to, and what it may do."""
        return schemas.MeOut(
            user=user_out(directory.users[principal.user_id]),
            tenant=tenant_out(directory.tenants[principal.tenant_id], settings.activity_jurisdiction),
            key_id=principal.key_id,
            scopes=sorted(principal.scopes),
        )
