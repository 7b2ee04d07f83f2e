"""The inference gateway: authenticate, limit, dispatch over NATS, and meter each request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from uuid import uuid4

import msgspec
from litestar import Request, Response, Router

from api.auth import CredentialsRejected, bearer_secret
from api.bodies import declares_json
from api.client_address import client_address, parse_networks
from api.principal import Principal
from api.proxy import errors
from api.proxy.balance import CreditGate
from api.proxy.context import fit_to_context
from api.proxy.controllers import build_router
from api.proxy.dispatch import Dispatcher
from api.proxy.endpoints import Endpoint
from api.proxy.errors import OpenAIError
from api.proxy.licences import LicenceGate
from api.proxy.limits import Limiter, Refused
from api.proxy.ports import Authenticator, UsageSink
from api.proxy.registry import AgentRegistry
from api.proxy.rejections import TALLIED_STATUSES
from api.proxy.responses import Encoder
from api.proxy.run import JobRun
from api.proxy.schemas import LicensedModel, Model, ModelList
from api.proxy.sharing import SharingDetector
from api.proxy.translate import Generation
from api.proxy.transport import Transport
from api.proxy.usage import Meter, Outcome, UsageWriter, one_by_one
from api.settings import Settings
from domain.permissions import Action, allows

log = logging.getLogger(__name__)

_JSON = "application/json"
_encode = msgspec.json.Encoder().encode
_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def authorization_of(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The ``Authorization`` header from the raw ASGI headers (cheaper than building Litestar's Headers)."""
    return read_headers(raw_headers, False)[0]


def read_headers(raw_headers: Iterable[tuple[bytes, bytes]], forwarded: bool) -> tuple[str | None, str, list[str]]:
    """``Authorization``, ``User-Agent`` (at most 256 bytes) and ``X-Forwarded-For`` (when wanted), in one pass.

    ASGI servers send header names in lower case (uvicorn does); ``Authorization`` is matched in any case.
    """
    authorization: str | None = None
    user_agent = ""
    hops: list[str] = []
    for name, value in raw_headers:
        if name == b"user-agent":
            user_agent = value[:256].decode("latin-1")
        elif name == b"x-forwarded-for":
            if forwarded:
                hops.append(value.decode("latin-1"))
        elif authorization is None and len(name) == 13 and name.lower() == b"authorization":
            authorization = value.decode("latin-1")
    return authorization, user_agent, hops


def outcome_of(status: int) -> Outcome:
    """The usage outcome of a request that ended with an HTTP error status."""
    if status == 504:
        return "timeout"
    return "rejected" if status < 500 else "error"


class InferenceGateway:
    """The OpenAI-compatible proxy: ``start()``/``stop()`` around the app, ``router()`` for ``/v1``."""

    def __init__(
        self,
        settings: Settings,
        authenticator: Authenticator,
        usage_sink: UsageSink | UsageWriter,
        *,
        limiter: Limiter | None = None,
        licences: LicenceGate | None = None,
        sharing: SharingDetector | None = None,
        keepalive_s: float = 5.0,
        credits: CreditGate | None = None,
    ) -> None:
        self.settings = settings
        self.licences = licences  # None: every model is served (a bare gateway in tests and benchmarks)
        self.sharing = sharing  # None: no key-sharing detection
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.authenticator = authenticator
        self.instance_id = uuid4().hex[:12]
        self.registry = AgentRegistry()
        self.limiter = limiter or Limiter()
        self.credits = credits  # the prepaid-credit admission check (api/proxy/balance.py); None: off
        # The composition passes its own writer (batches, spool); tests and benchmarks a one-record sink.
        self.usage = usage_sink if isinstance(usage_sink, UsageWriter) else UsageWriter(one_by_one(usage_sink))
        self.transport = Transport(
            url=settings.nats_url,
            user=settings.nats_proxy_user,
            password=settings.nats_proxy_password,
            instance_id=self.instance_id,
            registry=self.registry,
            generation_timeout_s=settings.generation_timeout_s,
            keepalive_s=keepalive_s,
        )
        self.dispatcher = Dispatcher(self.transport, self.registry, self.instance_id, settings.accept_timeout_s)
        self._last_prune = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the usage writer and connect to NATS (replies and heartbeats subscribed)."""
        self._loop = asyncio.get_running_loop()
        self.usage.start()
        await self.transport.connect(ca_file=self.settings.nats_ca_file or None)
        self.transport.every_tick(self._prune)

    async def stop(self) -> None:
        """Close NATS, settle pending cancels, and flush every queued usage record."""
        await self.transport.close()
        self.usage.stop()

    def router(self) -> Router:
        """The Litestar router for ``/v1`` with its own OpenAI-shaped exception handlers."""
        return build_router(self)

    def _prune(self) -> None:
        """Forget idle rate-limit subjects and long-gone agents once a minute."""
        now = time.monotonic()
        if now - self._last_prune >= 60:
            self._last_prune = now
            self.limiter.prune()
            self.registry.prune()
            if self.sharing is not None:
                self.sharing.prune()

    def forget_agents(self, agents: Iterable[tuple[str, str]]) -> None:
        """Drop revoked (tenant id, agent id)s from the live registry; safe to call from any thread."""
        pairs = list(agents)
        loop = self._loop
        if loop is None or loop.is_closed():
            self._forget(pairs)
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: nothing left to serve
            loop.call_soon_threadsafe(self._forget, pairs)

    def _forget(self, pairs: list[tuple[str, str]]) -> None:
        for tenant_id, agent_id in pairs:
            self.registry.forget(tenant_id, agent_id)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind a ``Bearer`` header, with the inference scope; 401/403 otherwise."""
        try:
            secret = bearer_secret(authorization)
        except CredentialsRejected:
            self.usage.refused(401, "missing_api_key")  # no tenant: the metrics count it, no event
            raise errors.authentication(_MISSING_KEY, code="missing_api_key") from None  # OpenAI's wording
        try:
            return self.authenticator.authenticate(secret)
        except CredentialsRejected as rejected:
            self.usage.refused(rejected.status, rejected.code or "refused")
            if rejected.status == 403:
                raise errors.permission(rejected.message, code=rejected.code) from None
            raise errors.authentication(rejected.message, code=rejected.code) from None

    def models(self, authorization: str | None) -> bytes:
        """``GET /v1/models`` for the caller's tenant."""
        principal = self.authenticate(authorization)
        self._require_scope(principal)
        served = self.registry.models(str(principal.tenant_id))
        listing = ModelList([self._model(principal, m, seen) for m, seen in sorted(served.items())])
        return _encode(listing)

    def model(self, authorization: str | None, model_id: str) -> bytes:
        """``GET /v1/models/{model}``: 404 unless a live agent of the tenant serves it."""
        principal = self.authenticate(authorization)
        self._require_scope(principal)
        seen = self.registry.models(str(principal.tenant_id)).get(model_id)
        if seen is None:
            raise errors.model_not_found(model_id)
        return _encode(self._model(principal, model_id, seen))

    def _model(self, principal: Principal, model_id: str, seen: float) -> Model:
        """One entry of the model list, with its licence where the licence gate is on."""
        if self.licences is None:
            return Model(id=model_id, created=int(seen), owned_by="ownllm")
        announced = self.registry.announced_licences(str(principal.tenant_id), model_id)
        licence = self.licences.describe(principal.tenant_id, model_id, announced)
        return LicensedModel(id=model_id, created=int(seen), owned_by="ownllm", licence=licence)

    @staticmethod
    def _require_scope(principal: Principal) -> None:
        """403 unless the permission matrix lets this key and role call models."""
        if not allows(principal.role, principal.scopes, Action.INFERENCE):
            if Action.INFERENCE.value not in principal.scopes:
                raise errors.permission("This API key does not have the 'inference' scope.", code="insufficient_scope")
            raise errors.permission(f"The role '{principal.role}' may not call models.", code="insufficient_role")

    async def generate(self, request: Request, endpoint: Endpoint) -> Response:
        """Handle a chat or completion request end to end; exactly one usage record once authenticated."""
        # The app echoes scope["state"]["request_id"] as X-Request-ID: this server-made id, which also names
        # the job and keys the (idempotent) usage record (a client's own id may repeat); set before any refusal.
        request_id = uuid4().hex
        request.scope.setdefault("state", {})["request_id"] = request_id  # type: ignore[typeddict-unknown-key]
        authorization, user_agent, forwarded = read_headers(request.scope["headers"], bool(self.trusted_proxies))
        principal = self.authenticate(authorization)
        if self.sharing is not None:
            peer = request.scope.get("client")
            address = client_address(peer[0] if peer else None, forwarded, self.trusted_proxies)
            self.sharing.observe(principal.key_id, address, user_agent)
        meter = Meter(self.usage, request_id, endpoint.path, principal.tenant_id, principal.user_id, principal.key_id)
        try:
            run = await self._start(request, endpoint, principal, meter)
        except OpenAIError as exc:
            if exc.status in TALLIED_STATUSES:  # refusals are tallied per interval, not one event each
                meter.refuse(exc.status, exc.body.code)
            else:
                meter.finish(outcome_of(exc.status))
            raise
        except BaseException:
            meter.finish("error")
            raise
        if meter.stream:
            return run.stream_response()
        return await run.collect(request.receive)

    async def _start(self, request: Request, endpoint: Endpoint, principal: Principal, meter: Meter) -> JobRun:
        """Check scope and limits, then the body, then hand the job to an agent; the run owns the meter after.

        The rate limit comes before the body is read: a key flooding malformed bodies is refused
        (429, tallied, no event each) like any other flood, instead of writing one usage event per 400.
        """
        self._require_scope(principal)
        grant = self.limiter.admit(principal.plan, principal.tenant_id, principal.key_id)
        if isinstance(grant, Refused):
            raise errors.rate_limited(
                f"Rate limit reached for {grant.limit} on this {grant.scope}. "
                f"Retry after {grant.retry_after_header} s.",
                grant.retry_after_header,
            )
        try:
            generation = await self._read(request, endpoint, principal, meter)
            tenant = str(principal.tenant_id)
            context = self.registry.context_length(tenant, generation.model)  # once: the agents' list is walked
            generation = fit_to_context(generation, context)
            if self.credits is not None:
                grant = self.credits.hold(grant, principal.tenant_id, generation, meter, context)
            encoder: Encoder = endpoint.encoder(
                endpoint.id_prefix + meter.request_id,
                generation.model,
                int(time.time()),
                generation.include_usage,
            )
            return await self.dispatcher.dispatch(generation, tenant, meter, grant, encoder, context, request.receive)
        except BaseException:
            grant.release(0)
            raise

    async def _read(self, request: Request, endpoint: Endpoint, principal: Principal, meter: Meter) -> Generation:
        """The request's generation, its model's licence checked (``max_tokens`` not yet fitted to the context)."""
        if not declares_json(request.headers.get("content-type")):  # OpenAI answers a non-JSON body with a 400
            raise errors.invalid_request(
                "We could not parse the JSON body of your request. Send it with 'Content-Type: application/json'.",
                code="unsupported_media_type",
            )
        generation = endpoint.parse(await request.body())
        meter.model = generation.model
        meter.stream = generation.stream
        if self.licences is not None:
            tenant = str(principal.tenant_id)
            self.licences.check(principal.tenant_id, generation.model, lambda: self.registry.models(tenant))
        return generation
