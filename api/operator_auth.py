"""The operator principal: its own bearer tokens (``ollmop_...``), its own guard, never a tenant key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from api.auth import DIRECTORY_MAX_BEHIND_S, CredentialsRejected, DirectoryBehind, bearer_secret
from api.guards import request_id_of
from domain.operator import operator_actor
from domain.secrets import OPERATOR_TOKEN_PREFIX, keyed_hash
from projections.enforcement import Enforcement


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    """An authenticated operator token and the operator behind it."""

    operator_id: UUID
    token_id: UUID

    @property
    def actor(self) -> str:
        """The actor recorded on events the operator causes."""
        return operator_actor(self.operator_id)


class OperatorAuthenticator:
    """Turns an operator token into an :class:`OperatorPrincipal` (one HMAC, one dict look-up)."""

    def __init__(
        self, enforcement: Enforcement, pepper: bytes, directory_behind_s: Callable[[], float] | None = None
    ) -> None:
        self.enforcement = enforcement
        self.pepper = pepper
        self.directory_behind_s = directory_behind_s

    def authenticate(self, secret: str) -> OperatorPrincipal:
        """The operator behind ``secret``, or :class:`CredentialsRejected` (401: a tenant key is no operator)."""
        if self.directory_behind_s is not None and (behind := self.directory_behind_s()) > DIRECTORY_MAX_BEHIND_S:
            raise DirectoryBehind(behind)
        if not secret.startswith(OPERATOR_TOKEN_PREFIX) or len(secret) > 200:
            raise CredentialsRejected(401, "invalid_operator_token", "this route needs an operator token")
        token = self.enforcement.tokens_by_hash.get(keyed_hash(self.pepper, secret))
        if token is None:
            raise CredentialsRejected(401, "invalid_operator_token", "invalid operator token")
        if token.revoked_at is not None:
            raise CredentialsRejected(401, "operator_token_revoked", "this operator token was revoked")
        return OperatorPrincipal(token.operator_id, token.id)


OPERATOR_AUTH = "operator_auth"  # the app state's key of the authenticator


def operator_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Every ``/api/v1/operator`` route: an operator token, or 401."""
    request_id_of(connection)
    authenticator: OperatorAuthenticator = connection.app.state[OPERATOR_AUTH]
    secret = bearer_secret(connection.headers.get("authorization"))
    connection.scope["state"]["operator"] = authenticator.authenticate(secret)


def operator_of(connection: ASGIConnection[Any, Any, Any, Any]) -> OperatorPrincipal:
    """The operator the guard authenticated."""
    return connection.scope["state"]["operator"]  # type: ignore[no-any-return]
