"""The rule every one-time secret (invite, pairing key) shares: usable once, until revoked or expired."""

from __future__ import annotations

from datetime import datetime

from domain.errors import AlreadyUsed, Expired, InvalidState


def check_usable_once(
    *, used: str | None, revoked: bool, expires_at: datetime, now: datetime, what: str, renew_hint: str
) -> None:
    """Refuse a used (``used`` says how: accepted, redeemed), revoked or expired secret, naming it and
    how to get a new one."""
    if used:
        raise AlreadyUsed(f"{what} was already {used}")
    if revoked:
        raise InvalidState(f"{what} was revoked")
    if now >= expires_at:
        raise Expired(f"{what} expired at {expires_at.isoformat()}; {renew_hint}")
