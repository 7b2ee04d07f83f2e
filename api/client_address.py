"""Who is calling, by network address: the socket's peer, or what a trusted proxy forwarded."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_GROUP = 64  # one IPv6 customer gets a /64 (or more): counting single addresses would count nothing


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks (``10.0.0.1, 192.168.0.0/16, ::1``); ValueError names a bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"'{item}' is not an IP address or network") from None
    return tuple(networks)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The caller's address as a rate-limit key: IPv4 as is, IPv6 as its /64.

    ``X-Forwarded-For`` is believed only as far as the hops that wrote it are trusted: walking from
    the socket's peer leftwards, the first address that is not a trusted proxy is the client. A
    malformed entry stops the walk at the trusted hop that passed it on (limiting that proxy's
    traffic together, never letting a forged value pick someone else's bucket).
    """
    current = peer or "unknown"
    if not _in(current, trusted):
        return _key(current)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _is_ip(hop):
            return _key(current)
        current = hop
        if not _in(current, trusted):
            break
    return _key(current)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _in(address: str, trusted: tuple[Network, ...]) -> bool:
    """Whether ``address`` is one of the trusted proxies (never for a peer that is not an IP address)."""
    if not trusted or not _is_ip(address):
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in trusted)


@functools.lru_cache(maxsize=4096)  # per request on the proxy: callers' addresses repeat
def _key(address: str) -> str:
    """IPv4 as is; IPv6 as its /64; anything else (a Unix socket, a test client) as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_GROUP), strict=False))
    return str(ip)
