"""TLS options for ``nats.connect``, shared by the agent and the proxy: a ``tls://`` URL means TLS from the first byte.

nats-py 2.16 upgrades a connection to TLS only when the server's plaintext INFO line says
``tls_required``, even for a ``tls://`` URL and even when given an SSLContext (seen: against a
plaintext server it connects and sends the password in clear). So a man in the middle who answers
with a plaintext INFO strips TLS. ``tls_handshake_first`` makes the client start the TLS handshake
before reading anything; a plaintext peer then fails the handshake and no credential is sent. The
server must accept that: ``tls { handshake_first: true }`` (deploy/nats/nats-server.conf).
``wss://`` (websocket) is TLS by its scheme; it gets the same context so a private CA works there too.
"""

from __future__ import annotations

import ssl
from typing import TypedDict
from urllib.parse import urlsplit

SECURE_SCHEMES = frozenset({"tls", "wss"})


class TlsOptions(TypedDict, total=False):
    """The ``nats.connect`` keyword arguments this module sets."""

    tls: ssl.SSLContext
    tls_handshake_first: bool


class NatsUrlError(ValueError):
    """The NATS URLs would let a connection fall back to plaintext."""


def tls_options(servers: str | list[str], ca_file: str | None = None) -> TlsOptions:
    """``nats.connect`` keyword arguments that require verified TLS for ``tls://``/``wss://`` URLs."""
    urls = [servers] if isinstance(servers, str) else list(servers)
    schemes = {urlsplit(url).scheme.lower() or "nats" for url in urls}
    secure = schemes & SECURE_SCHEMES
    if not secure:
        return TlsOptions()
    if schemes - SECURE_SCHEMES:
        raise NatsUrlError(f"mixing TLS and plaintext NATS URLs lets a connection skip TLS: {', '.join(urls)}")
    options = TlsOptions(tls=ssl.create_default_context(cafile=ca_file or None))
    if "tls" in secure:
        options["tls_handshake_first"] = True
    return options
