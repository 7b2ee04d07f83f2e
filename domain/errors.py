"""Named domain errors; the API maps each family to one HTTP status in one place."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused; ``str(error)`` is safe to show to the caller (no personal data)."""

    title = "Request refused"


class NotFound(DomainError):
    """No such object in the caller's tenant (also what another tenant's object looks like)."""

    title = "Not found"


class Conflict(DomainError):
    """The command contradicts the current state (already exists, already used, last admin)."""

    title = "Conflict"


class InvalidValue(DomainError):
    """A value breaks a domain rule; ``field`` names it."""

    title = "Invalid value"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Expired(DomainError):
    """A time-limited token (invite, pairing key) is past its expiry."""

    title = "Expired"


class PermissionDenied(DomainError):
    """The caller's role or key scopes do not allow this action."""

    title = "Forbidden"


class SlugTaken(Conflict):
    """Another tenant already has this slug."""


class AlreadyMember(Conflict):
    """The email already belongs to a user of this tenant."""


class AlreadyUsed(Conflict):
    """A one-time token was already redeemed."""


class LastAdmin(Conflict):
    """The command would leave the tenant without an active admin."""


class InvalidState(Conflict):
    """The object's lifecycle does not allow this command (e.g. revoking a revoked key)."""


class AgentLimitReached(Conflict):
    """The tenant already holds as many active agents as its plan allows."""

    title = "Agent limit reached"


class NotRefundable(Conflict):
    """A credit lot cannot be refunded: used (even partly), past its 30-day window, or closed."""

    title = "Not refundable"


class NoticeTooShort(InvalidValue):
    """A price change takes effect sooner than the notice period allows."""

    title = "Notice too short"


class LedgerClosed(InvalidState):
    """The tenant's credits were forfeited on termination: nothing more can be bought or refunded."""
