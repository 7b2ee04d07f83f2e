"""How the ``openai`` backend reaches its upstream: URL (checked), key (from a 0600 file or the environment), models.

The key never comes from argv (other users of the machine can read a process's arguments) and is
never kept where a repr or a log could show it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from agent.protocol import is_loopback_host
from agent.settings import PREFIX, AgentSettings

KEY_ENV = PREFIX + "UPSTREAM_KEY"
MAX_KEY_BYTES = 4096


class UpstreamConfigError(ValueError):
    """The upstream settings cannot be used; the message says what to change."""


class UpstreamAddressError(OSError):
    """The upstream's host resolves to a public address and remote upstreams are not allowed."""


class UpstreamConfig(msgspec.Struct, frozen=True):
    """Where the upstream OpenAI-compatible server is and what to serve from it."""

    url: str  # the base URL ending in /v1 (trailing slash removed)
    api_key: str | None = msgspec.field(default=None)
    routes: tuple[tuple[str, str], ...] = ()  # (announced id, upstream id); empty: discover
    context_length: int = 4096
    licences: tuple[tuple[str, str], ...] = ()
    capacity: int | None = None  # None: what the upstream reports (upstream_capacity), else DEFAULT_CAPACITY
    poll_interval_s: float = 5.0
    timeout_s: float = 120.0
    connect_timeout_s: float = 2.0
    allow_remote: bool = False  # else every connection checks the host's addresses again (upstream_http)

    def __repr__(self) -> str:
        """Never show the key."""
        key = "***" if self.api_key else None
        return f"UpstreamConfig(url={self.url!r}, api_key={key}, routes={self.routes!r})"

    def headers(self) -> dict[str, str]:
        """The request headers (Authorization when a key is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def _private(address: str) -> bool:
    """A loopback or private-network address."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def public_addresses(addresses: Iterable[str]) -> list[str]:
    """Those of ``addresses`` on neither loopback nor a private network."""
    return sorted({a for a in addresses if not _private(a)})


def check_url(url: str, allow_remote: bool = False) -> str:
    """The normalised base URL; raises unless it is http(s) on a loopback or private address (or allowed)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamConfigError(f"upstream URL {url!r} must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UpstreamConfigError("put the upstream key in a key file or OWNLLM_AGENT_UPSTREAM_KEY, not in the URL")
    host = parts.hostname
    if not allow_remote and not is_loopback_host(host):
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)}
        except OSError as exc:
            raise UpstreamConfigError(f"upstream host {host!r} does not resolve: {exc}") from exc
        public = public_addresses(str(a) for a in addresses)
        if public:
            raise UpstreamConfigError(
                f"upstream {host!r} is not on loopback or a private network ({', '.join(map(str, public))}); "
                "pass --upstream-allow-remote (OWNLLM_AGENT_UPSTREAM_ALLOW_REMOTE=1) if that is intended"
            )
    return url.strip().rstrip("/")


def read_key_file(path: Path) -> str:
    """The key in a file only its owner can read (like the credentials file)."""
    path = path.expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise UpstreamConfigError(f"upstream key file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise UpstreamConfigError(f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    raw = path.read_bytes()[: MAX_KEY_BYTES + 1]
    key = raw.decode("utf-8", "replace").strip()
    if not key or len(raw) > MAX_KEY_BYTES or any(c.isspace() for c in key):
        raise UpstreamConfigError(f"{path} must hold one key on one line")
    return key


def parse_routes(spec: str) -> tuple[tuple[str, str], ...]:
    """``discover`` (empty) or ``a,b`` / ``public=upstream-id``: what to announce and where it goes."""
    if spec.strip().lower() in ("", "discover"):
        return ()
    routes: list[tuple[str, str]] = []
    for item in spec.split(","):
        public, _, upstream = item.strip().partition("=")
        public, upstream = public.strip(), (upstream.strip() or public.strip())
        if not public:
            raise UpstreamConfigError(f"empty model name in {spec!r}")
        routes.append((public, upstream))
    return tuple(routes)


def parse_licences(spec: str | None) -> tuple[tuple[str, str], ...]:
    """``model=SPDX-id,...`` as pairs."""
    pairs: list[tuple[str, str]] = []
    for item in (spec or "").split(","):
        if item.strip():
            model, sep, licence = item.partition("=")
            if not sep or not model.strip() or not licence.strip():
                raise UpstreamConfigError(f"licence {item.strip()!r} must read model=licence")
            pairs.append((model.strip(), licence.strip()))
    return tuple(pairs)


def from_settings(
    settings: AgentSettings,
    url: str | None = None,
    key_file: Path | None = None,
    models: str | None = None,
    allow_remote: bool = False,
    capacity: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> UpstreamConfig:
    """The upstream configuration from CLI options over ``OWNLLM_AGENT_*`` settings."""
    env = os.environ if environ is None else environ
    raw_url = url or settings.upstream_url
    if not raw_url:
        raise UpstreamConfigError("--backend openai needs --upstream-url (or OWNLLM_AGENT_UPSTREAM_URL)")
    file = key_file or (Path(settings.upstream_key_file) if settings.upstream_key_file else None)
    key = read_key_file(file) if file is not None else (env.get(KEY_ENV) or "").strip() or None
    if settings.upstream_context_length <= 0 or settings.upstream_poll_interval_s <= 0:
        raise UpstreamConfigError("upstream context length and poll interval must be positive")
    remote = allow_remote or settings.upstream_allow_remote
    return UpstreamConfig(
        url=check_url(raw_url, remote),
        allow_remote=remote,
        api_key=key,
        routes=parse_routes(models if models is not None else settings.upstream_models),
        context_length=settings.upstream_context_length,
        licences=parse_licences(settings.upstream_licences),
        capacity=capacity or settings.capacity,
        poll_interval_s=settings.upstream_poll_interval_s,
        timeout_s=settings.upstream_timeout_s,
    )
