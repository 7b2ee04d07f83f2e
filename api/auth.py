"""API-key authentication on the hot path: one HMAC and a few dictionary look-ups, no I/O."""

from __future__ import annotations

import time
from collections.abc import Callable

from litestar.exceptions import ServiceUnavailableException

from api.principal import Principal
from domain.roles import SCOPES_BY_ROLE, Role
from domain.secrets import API_KEY_PREFIX, keyed_hash
from policies.limits import DEFAULT_PLAN
from projections.directory import Directory, TenantView


class CredentialsRejected(Exception):
    """The bearer credential was refused; ``status`` is 401 (who are you?) or 403 (not now)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class DirectoryBehind(ServiceUnavailableException):
    """503: the directory has not caught up with the events for too long (the store is unreachable?).

    Failing closed: a stale directory would still accept keys revoked since. Both /api/v1 and /v1
    render Litestar's HTTP exceptions with their status (and this ``Retry-After``).
    """

    def __init__(self, behind_s: float) -> None:
        super().__init__(
            detail=f"the key directory is {behind_s:.0f} s behind the event store; try again shortly",
            headers={"Retry-After": "5"},
        )


DIRECTORY_MAX_BEHIND_S = 30.0  # the runner polls every 0.1 s: 30 s means it has been failing for 300 polls


def bearer_secret(authorization: str | None) -> str:
    """The secret in an ``Authorization: Bearer ...`` header, or a 401."""
    if not authorization:
        raise CredentialsRejected(401, "missing_api_key", "send your API key as 'Authorization: Bearer <key>'")
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise CredentialsRejected(401, "invalid_api_key", "the Authorization header must be 'Bearer <key>'")
    return secret.strip()


class KeyAuthenticator:
    """Turns a secret into a :class:`Principal` using the directory projection (in memory)."""

    def __init__(
        self,
        directory: Directory,
        pepper: bytes,
        clock: Callable[[], float] = time.time,
        default_plan: str = DEFAULT_PLAN,
        directory_behind_s: Callable[[], float] | None = None,
        max_behind_s: float = DIRECTORY_MAX_BEHIND_S,
    ) -> None:
        self.directory = directory
        self.directory_behind_s = directory_behind_s  # the runner's seconds since its last catch-up
        self.max_behind_s = max_behind_s
        self.pepper = pepper
        self.clock = clock
        self.default_plan = default_plan
        self.on_use: Callable[[TenantView, str], object] | None = None  # e.g. acceptance of terms by use

    def authenticate(self, secret: str, allow_suspended_tenant: bool = False) -> Principal:
        """The caller behind ``secret``; raises :class:`CredentialsRejected` with the reason.

        ``allow_suspended_tenant``: the few routes a suspended tenant keeps (its export, its appeals).

        Raises :class:`DirectoryBehind` (503) for every key while the directory is too far behind.
        """
        if self.directory_behind_s is not None and (behind := self.directory_behind_s()) > self.max_behind_s:
            raise DirectoryBehind(behind)
        if not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
            raise CredentialsRejected(401, "invalid_api_key", "invalid API key")
        key = self.directory.keys_by_hash.get(keyed_hash(self.pepper, secret))
        if key is None:
            raise CredentialsRejected(401, "invalid_api_key", "invalid API key")
        if key.revoked_at is not None:
            raise CredentialsRejected(401, "key_revoked", "this API key was revoked")
        if key.expires_at is not None and key.expires_at.timestamp() <= self.clock():
            raise CredentialsRejected(401, "key_expired", "this API key has expired")
        if key.suspended:
            raise CredentialsRejected(
                403, "key_suspended", "this API key is suspended; an admin of your organisation can tell you why"
            )
        user = self.directory.users[key.user_id]
        if user.removed:
            raise CredentialsRejected(401, "user_removed", "the owner of this API key was removed")
        if user.suspended:
            raise CredentialsRejected(403, "user_suspended", "your account is suspended")
        tenant = self.directory.tenants[key.tenant_id]
        if tenant.terminated:
            raise CredentialsRejected(403, "tenant_terminated", "your organisation's contract was terminated")
        if tenant.suspended and not allow_suspended_tenant:
            raise CredentialsRejected(403, "tenant_suspended", "your organisation is suspended")
        if self.on_use is not None:
            self.on_use(tenant, f"key:{key.id}")
        return Principal(
            tenant_id=key.tenant_id,
            user_id=key.user_id,
            key_id=key.id,
            role=user.role,
            scopes=key.scopes & SCOPES_BY_ROLE[Role(user.role)],  # a role change narrows old keys at once
            plan=tenant.plan or self.default_plan,
        )
