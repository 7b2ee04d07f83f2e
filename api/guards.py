"""Authentication and the permission matrix, applied to every route in one guard."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.auth import bearer_secret
from api.principal import Principal
from api.services import Services
from domain.context import Ctx
from domain.permissions import Action, authorize

AnyRequest = Request[Any, Any, Any]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def services_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    """The process's services, stored on the app at start."""
    return connection.app.state.services  # type: ignore[no-any-return]


def request_id_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The caller's ``X-Request-ID`` when well-formed, else a fresh one (echoed in the response)."""
    state = connection.scope.setdefault("state", {})
    if "request_id" not in state:
        given = connection.headers.get("x-request-id", "")
        state["request_id"] = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
    return state["request_id"]  # type: ignore[no-any-return]


def permission_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Routes declare ``opt={"action": Action.X}``; the key must authenticate and be allowed it."""
    action: Action | None = handler.opt.get("action")
    request_id_of(connection)
    if action is None:
        return
    principal = services_of(connection).authenticator.authenticate(
        bearer_secret(connection.headers.get("authorization"))
    )
    authorize(principal.role, principal.scopes, action)
    connection.scope["state"]["principal"] = principal


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller (set by the guard)."""
    return connection.scope["state"]["principal"]  # type: ignore[no-any-return]


def ctx_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Ctx:
    """The command context of an authenticated request."""
    principal = principal_of(connection)
    return Ctx(actor=principal.actor, tenant_id=principal.tenant_id, request_id=request_id_of(connection))


def can(connection: ASGIConnection[Any, Any, Any, Any], action: Action) -> bool:
    """Whether the authenticated caller may also do ``action`` (for own-vs-all decisions)."""
    from domain.permissions import allows

    principal = principal_of(connection)
    return allows(principal.role, principal.scopes, action)
