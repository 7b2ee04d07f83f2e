"""Authentication and the permission matrix, applied to every route in one guard."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.auth import KeyAuthenticator, bearer_secret
from api.principal import Principal
from domain.permissions import Action, authorize

AnyRequest = Request[Any, Any, Any]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The caller's ``X-Request-ID`` when well-formed, else a fresh one (echoed in the response)."""
    state = connection.scope.setdefault("state", {})
    if "request_id" not in state:
        given = connection.headers.get("x-request-id", "")
        state["request_id"] = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
    return state["request_id"]  # type: ignore[no-any-return]


ALLOWED_WHILE_SUSPENDED = "allowed_while_suspended"  # opt flag: a suspended tenant's keys may call this route


class PermissionGuard:
    """Routes declare ``opt={"action": Action.X}``; the key must authenticate and be allowed it.

    A route that also declares ``opt={ALLOWED_WHILE_SUSPENDED: True}`` stays open to a suspended
    tenant (read-only exports, appeals); suspended users and keys are still refused there.
    """

    def __init__(self, authenticator: KeyAuthenticator) -> None:
        self.authenticator = authenticator

    def __deepcopy__(self, memo: dict[int, Any]) -> PermissionGuard:
        """Itself: Litestar deep-copies a router it registers, and the guard shares the live authenticator."""
        return self

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        """Authenticate the bearer key and check the route's action; the principal goes on the connection.

        A coroutine on purpose: Litestar runs a plain function guard in a worker thread, a thread hop for
        every request (/v1 included, where it has nothing to check) although the key lookup is in memory.
        """
        action: Action | None = handler.opt.get("action")
        request_id_of(connection)
        if action is None:
            return
        secret = bearer_secret(connection.headers.get("authorization"))
        principal = self.authenticator.authenticate(secret, bool(handler.opt.get(ALLOWED_WHILE_SUSPENDED)))
        authorize(principal.role, principal.scopes, action)
        connection.scope["state"]["principal"] = principal


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller (set by the guard)."""
    return connection.scope["state"]["principal"]  # type: ignore[no-any-return]
