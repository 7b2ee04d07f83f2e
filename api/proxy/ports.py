"""What the proxy needs from the rest of the application: an authenticator and a usage sink."""

from __future__ import annotations

from typing import Any, Protocol

from api.principal import Principal


class Authenticator(Protocol):
    """Resolves an API key to its principal from memory (O(1), no database on the hot path).

    Raises ``api.auth.CredentialsRejected`` (attributes ``status``: 401 or 403, ``code``, ``message``)
    when the key is unknown, revoked or expired, or its user or tenant is removed or suspended.
    """

    def authenticate(self, secret: str) -> Principal:
        """The principal behind ``secret``."""
        ...


class UsageSink(Protocol):
    """``record_usage``: one call per request, from a background thread, keyword arguments only."""

    def __call__(self, **fields: Any) -> Any:
        """Record one usage record (see ``api.proxy.usage.Meter.finish`` for the fields)."""
        ...
