"""What stands before public signup: the signup mode, rate limits per address, and the tenant cap.

Every refusal here happens before a command runs, so a refused signup writes no event; refusals
are counted in memory by reason (``SignupGate.refusals``).
"""

from __future__ import annotations

import hmac
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from litestar import Request, Response

from api.client_address import client_address, parse_networks
from api.problems import problem
from api.rate_limit import TokenBuckets, retry_after
from api.settings import Settings, signup_tokens
from projections.directory import Directory

EVERYONE = "*"


class SignupRefused(Exception):
    """A signup turned away before it reached the domain; rendered in the one problem shape."""

    def __init__(self, status: int, title: str, detail: str, kind: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.retry_after_s = retry_after_s


def signup_refused(_: Request[Any, Any, Any], exc: SignupRefused) -> Response[dict[str, Any]]:
    """The problem answer, with ``Retry-After`` on a 429."""
    response = problem(exc.status, exc.title, exc.detail, exc.kind)
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def closed() -> SignupRefused:
    """Signup mode ``closed``."""
    return SignupRefused(
        403,
        "Signup is closed",
        "This server does not take public signups; its operator creates organisations.",
        "signup-closed",
    )


def token_refused() -> SignupRefused:
    """Signup mode ``invite`` without a valid token."""
    return SignupRefused(
        403,
        "Signup needs an invitation",
        "Signing up here needs the signup token the operator gave you, in the X-Signup-Token header.",
        "signup-token-required",
    )


# 503, not 507: the caller's request is fine and the server is the one at its limit; 503 is what
# every client and proxy understands as "not now, from this server" (507 is WebDAV's, about storing
# the request's own representation). No Retry-After: it lasts until the operator acts.
def full() -> SignupRefused:
    """The process holds ``max_tenants`` tenants."""
    return SignupRefused(
        503,
        "Not accepting new organisations",
        "This server has reached the number of organisations it is configured to hold; contact its operator.",
        "tenant-capacity-reached",
    )


class SignupGate:
    """One per app: every public signup passes :meth:`admit`, then runs inside :meth:`capacity`."""

    def __init__(self, settings: Settings, directory: Directory, now: Callable[[], float]) -> None:
        self.mode = settings.signup
        self.tokens = tuple(token.encode() for token in signup_tokens(settings))
        self.trusted = parse_networks(settings.trusted_proxies)
        self.per_address = TokenBuckets(
            settings.signup_per_hour, settings.signup_per_hour / 3600, settings.signup_addresses, now
        )
        self.everyone = TokenBuckets(settings.signup_global_per_hour, settings.signup_global_per_hour / 3600, 1, now)
        self.max_tenants = settings.max_tenants
        self.directory = directory
        self.refusals: Counter[str] = Counter()
        self._rate_lock = threading.Lock()
        self._signup_lock = threading.Lock()

    def admit(self, peer: str | None, forwarded_for: Iterable[str], token: str | None) -> None:
        """Refuse (:class:`SignupRefused`) a signup the mode, the rate limits or the token do not allow.

        The rate limits come before the token check, so guessing tokens is as slow as signing up.
        """
        if self.mode == "closed":
            self._refuse(closed())
        self._spend(client_address(peer, forwarded_for, self.trusted))
        if self.mode == "invite" and not self._token_ok(token):
            self._refuse(token_refused())

    @contextmanager
    def capacity(self) -> Iterator[None]:
        """Run one signup while this process holds fewer tenants than its cap (signups one at a time)."""
        with self._signup_lock:
            if len(self.directory.tenants) >= self.max_tenants:
                self._refuse(full())
            yield

    def _spend(self, address: str) -> None:
        """Take a token from the address's bucket and everyone's, or refuse with the longer wait."""
        with self._rate_lock:
            wait = max(self.per_address.wait(address), self.everyone.wait(EVERYONE))
            if wait == 0:
                self.per_address.take(address)
                self.everyone.take(EVERYONE)
                return
        self._refuse(
            SignupRefused(
                429,
                "Too many signups",
                "Too many signups from your network or in total; try again later.",
                "signup-rate-limited",
                retry_after(wait),
            )
        )

    def _token_ok(self, token: str | None) -> bool:
        """Whether ``token`` is one of the operator's, compared in constant time against each."""
        given = (token or "").strip().encode()
        return any(hmac.compare_digest(given, known) for known in self.tokens) if given else False

    def _refuse(self, refusal: SignupRefused) -> None:
        self.refusals[refusal.kind] += 1
        raise refusal
