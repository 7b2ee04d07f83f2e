"""Pairing: trade a one-time pairing key for the agent's identity and NATS credentials."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import msgspec

from agent.credentials import Credentials
from agent.protocol import is_loopback_host

PAIR_PATH = "/api/v1/agents/pair"


class PairingError(RuntimeError):
    """Pairing failed; the message says why in words a newcomer understands."""


def check_base_url(base_url: str) -> None:
    """Refuse a URL over which the pairing key (a bearer credential) would travel in clear."""
    parts = urlsplit(base_url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return
    if parts.scheme == "http":
        raise PairingError(
            f"refusing to send the pairing key over plain http to {parts.hostname}: anyone on the way could read "
            "it and pair in your place; use the platform's https:// URL (http:// is allowed only for "
            "localhost, 127.0.0.1 and [::1])"
        )
    raise PairingError(f"the platform URL must start with https:// (got {base_url!r})")


def pair_url(base_url: str) -> str:
    """The pairing endpoint under the platform's base URL."""
    return base_url.rstrip("/") + PAIR_PATH


def pair(base_url: str, pairing_key: str, name: str, client: httpx.Client | None = None) -> Credentials:
    """POST the pairing key; return the credentials from a 201 answer or raise :class:`PairingError`."""
    check_base_url(base_url)
    url = pair_url(base_url)
    owned = client is None
    http = client or httpx.Client(timeout=15.0)
    try:
        response = http.post(url, json={"pairing_key": pairing_key, "name": name})
    except httpx.HTTPError as exc:
        raise PairingError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
    finally:
        if owned:
            http.close()
    if response.status_code != 201:
        raise PairingError(describe_failure(response))
    try:
        return msgspec.json.decode(response.content, type=Credentials)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PairingError(f"the server answered 201 with an unexpected body: {exc}") from exc


def describe_failure(response: httpx.Response) -> str:
    """A clear sentence from an error answer (problem+json ``title``/``detail`` when present)."""
    title = detail = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        title, detail = body.get("title"), body.get("detail")
    status = f"{response.status_code} {response.reason_phrase}".strip()
    text = f"pairing refused ({status})"
    if title:
        text += f": {title}"
    if detail:
        text += f" — {detail}"
    if not title and not detail and response.text:
        text += f": {response.text[:200]}"
    return text
