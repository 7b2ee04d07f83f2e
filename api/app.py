"""The composition root: ``create_app(settings)`` wires everything; nothing lives at module level."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from litestar import Litestar, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from litestar.utils.helpers import unwrap_partial

from api.billing_config import billing_config
from api.billing_service import BillingOff, build_billing_service
from api.bodies import JsonBodyRequest
from api.controllers.agents import AgentController, PairingKeyController
from api.controllers.appeals import AppealController, SuspensionController
from api.controllers.audit import AuditController, ReplayController
from api.controllers.billing import BillingController
from api.controllers.credit_purchases import CreditPurchaseController
from api.controllers.credits import CreditController
from api.controllers.features import FeatureController
from api.controllers.invites import InviteController
from api.controllers.keys import KeyController, KeySharingController
from api.controllers.ledger import LedgerController
from api.controllers.legal import LegalController, TermsController
from api.controllers.licences import LicenceController
from api.controllers.lifecycle import DeletionController, ExportController
from api.controllers.operator import OperatorController
from api.controllers.operator_publishing import PublishingController
from api.controllers.stripe_webhook import stripe_webhook
from api.controllers.tenants import TenantController
from api.controllers.usage import UsageController
from api.controllers.users import UserController
from api.dependencies import dependencies
from api.guards import PermissionGuard
from api.operator_auth import OPERATOR_AUTH, OperatorAuthenticator
from api.problems import EXCEPTION_HANDLERS
from api.proxy.endpoints import OPENAPI_OPERATIONS
from api.services import Services, build_services
from api.settings import Settings
from api.signup_gate import SignupGate, SignupRefused, signup_refused
from api.usage_store import agent_uuid, usage_writer

log = logging.getLogger(__name__)


@get("/health", operation_id="health", include_in_schema=True, sync_to_thread=False)
def health() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


async def _echo_request_id(message: Any, scope: Any) -> None:
    """Send the request id back as ``X-Request-ID`` on every response."""
    if message["type"] == "http.response.start":
        request_id = scope.get("state", {}).get("request_id")
        if request_id:
            message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))


DOCS_ASSETS = "/schema-assets"


def docs_assets() -> Any:
    """Swagger UI's files served by us, from a wheel: the docs work on a machine with no internet."""
    from swagger_ui_bundle import swagger_ui_path

    return create_static_files_router(
        path=DOCS_ASSETS, directories=[swagger_ui_path], include_in_schema=False, opt={"public": True}
    )


def openapi_config() -> OpenAPIConfig:
    """OpenAPI at /schema/openapi.json; the browsable UI (Swagger UI, self-hosted) at /schema."""
    swagger = SwaggerRenderPlugin(
        js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon="<link rel='icon' href='data:,'>",  # no third-party request from the docs page
    )
    return OpenAPIConfig(
        title="OwnLLM",
        version="0.1.0",
        description="Private multi-user AI: management API (/api/v1) and OpenAI-compatible proxy (/v1).",
        path="/schema",
        render_plugins=[swagger],
        components=Components(
            security_schemes={
                API_KEY: SecurityScheme(
                    type="http", scheme="bearer", description="An OwnLLM API key: `Authorization: Bearer ollm_...`"
                )
            }
        ),
        # No document-wide security: each operation that needs a key says so (_document_operations),
        # so signup, invite acceptance, pairing and health read as the public routes they are.
    )


API_KEY = "apiKey"


def _document_operations(app: Litestar) -> None:
    """Security per operation, and the /v1 bodies as the gateway reads and writes them.

    A route needs a key when it declares an action (the guard checks it) or is a /v1 route (the
    gateway checks it); the others are public.
    """
    for route in app.routes:
        proxied = route.path.startswith(PROXY_PREFIX)
        for handler in getattr(route, "route_handlers", ()):
            if handler.opt.get("action") is not None or handler.opt.get("operator") or proxied:
                handler.security = [{API_KEY: []}]
            if proxied and isinstance(handler.operation_id, str):
                handler.operation_class = OPENAPI_OPERATIONS.get(handler.operation_id, handler.operation_class)


PROXY_PREFIX = "/v1/"


def create_app(settings: Settings, services: Services | None = None) -> Litestar:
    """Build the Litestar app: management API, OpenAI-compatible proxy, background runners."""
    services = services or build_services(settings)
    route_handlers: list[Any] = [
        health,
        docs_assets(),
        TenantController,
        UserController,
        InviteController,
        KeyController,
        PairingKeyController,
        AgentController,
        LicenceController,
        FeatureController,
        KeySharingController,
        LegalController,
        TermsController,
        UsageController,
        CreditController,
        AuditController,
        ReplayController,
        LedgerController,
        OperatorController,
        PublishingController,
        SuspensionController,
        AppealController,
        DeletionController,
        ExportController,
        stripe_webhook,
        BillingController,
        CreditPurchaseController,
    ]
    billing = billing_config(settings)
    billing_service = build_billing_service(billing, services)
    gate = SignupGate(settings, services.directory, lambda: services.app.clock().timestamp())
    on_startup: list[Any] = []
    on_shutdown: list[Any] = [services.close]
    # The guard covers every route but /v1: the gateway authenticates its own requests (api/proxy/gateway.py),
    # and Litestar would otherwise copy the route handler for the guard on every inference request.
    guarded = Router(path="/", route_handlers=route_handlers, guards=[PermissionGuard(services.authenticator)])
    inference = _inference(settings, services)
    routers: list[Router] = [guarded]
    if inference is not None:
        routers.append(inference.router())
        on_startup.insert(0, inference.start)
        on_shutdown.insert(0, inference.stop)
    app = Litestar(
        route_handlers=routers,
        dependencies=dependencies(services)
        | {"signup_gate": Provide(lambda: gate, sync_to_thread=False)}
        | {"billing": Provide(lambda: billing, sync_to_thread=False)}
        | {"billing_view": Provide(lambda: services.billing, sync_to_thread=False)}
        | {"billing_ledger": Provide(lambda: services.billing_ledger, sync_to_thread=False)}
        | {"billing_service": Provide(lambda: billing_service, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS | {SignupRefused: signup_refused, BillingOff: billing_off},
        request_class=JsonBodyRequest,
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        state=State({"inference": inference, OPERATOR_AUTH: _operator_auth(services)}),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        before_send=[_echo_request_id],
        debug=False,
    )
    _summaries_from_docstrings(app)
    _document_operations(app)
    return app


def _operator_auth(services: Services) -> OperatorAuthenticator:
    """The operator routes' authenticator: operator tokens from the enforcement read model."""
    auth = services.authenticator
    return OperatorAuthenticator(services.enforcement, auth.pepper, auth.directory_behind_s)


def billing_off(_: Any, exc: BillingOff) -> Any:
    """503: this server sells no plans (no Stripe key configured)."""
    from api.problems import problem

    return problem(503, exc.title, str(exc), "billing-off")


def _summaries_from_docstrings(app: Litestar) -> None:
    """The docs list each operation by the first line of its docstring, not its function name."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            doc = (unwrap_partial(handler.fn).__doc__ or "").strip()
            if doc and not handler.summary:
                handler.summary = doc.splitlines()[0].rstrip(".")


def _inference(settings: Settings, services: Services) -> Any:
    """The OpenAI-compatible proxy and its NATS side (see api/proxy), or None when disabled."""
    if not settings.inference:
        return None
    from api.key_sharing import SharingReporter
    from api.proxy import InferenceGateway
    from api.proxy.balance import CreditGate
    from api.proxy.licences import LicenceGate
    from api.proxy.sharing import SharingDetector
    from legal import catalogue
    from policies.sharing import SharingLimits

    licences = LicenceGate(catalogue.bundled(), services.directory.accepted_licences)
    sharing = None
    if settings.key_sharing:
        reporter = SharingReporter(services)
        window = timedelta(seconds=settings.key_sharing_window_s)
        limits = SharingLimits(settings.key_sharing_networks, settings.key_sharing_user_agents, window)
        sharing = SharingDetector(reporter.report, limits)
        services.on_close(reporter.close)
    usage = usage_writer(settings, services.app)
    gateway = InferenceGateway(
        settings,
        services.authenticator,
        usage,
        licences=licences if settings.model_licence_gate else None,
        sharing=sharing,
        credits=CreditGate(services.credits),
    )
    services.on_agents_changed(lambda: _forget_revoked_agents(services, gateway))
    return gateway


def _forget_revoked_agents(services: Services, gateway: Any) -> None:
    """A revoked agent leaves /v1/models at once, not only when its heartbeats stop."""
    gateway.forget_agents((str(a.tenant_id), str(a.id)) for a in services.directory.revoked_agents())


def _usage_sink(services: Services) -> Any:
    """One usage record straight to the domain command (the proxy writes batches: ``api/usage_store.py``).

    No catch-up per record: nobody reads their own usage write, and one query per inference
    request would be pure overhead on the metering thread. The agent id comes off the wire: one
    that is not a paired agent's uuid is recorded as unknown rather than losing the record.
    """
    record_usage = services.app.record_usage

    def record(*, agent_id: str | None, **fields: Any) -> Any:
        return record_usage(agent_id=agent_uuid(agent_id), **fields)

    return record
