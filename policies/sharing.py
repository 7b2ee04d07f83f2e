"""Key sharing: a key used from more networks or programs than one person plausibly uses is suspected shared.

Source: OwnLLM terms §3 ("shared accounts are not permitted ... one key must not be used by several
people") and the LibrePartner terms (account or API-key sharing may lead to immediate suspension).

The heuristic counts distinct NETWORKS, not addresses: an IPv4 /24 or an IPv6 /48 (one site or one
provider's pool), so one person's changing addresses within a network count once. Within 24 hours one
person uses a key from home, office, a phone on a mobile carrier (which may hop between pools) and a
CI runner: 5 networks is generous for that; a sixth is suspicious. Programs are counted by their
User-Agent: one person's tools (an IDE plug-in, a script, the SDK in a notebook, curl) rarely exceed 8.
Suspicion alone only notifies the tenant's admins; suspending the key is the tenant's choice.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta

WINDOW = timedelta(hours=24)
IPV4_PREFIX = 24
IPV6_PREFIX = 48


@dataclass(frozen=True, slots=True)
class SharingLimits:
    """How many distinct networks and user agents one key may be seen from within the window."""

    max_networks: int = 5
    max_user_agents: int = 8
    window: timedelta = WINDOW


DEFAULT_LIMITS = SharingLimits()


def network_of(address: str) -> str:
    """The network an address belongs to for counting: its /24 (IPv4) or /48 (IPv6); "" when not an address."""
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0/{IPV4_PREFIX}"  # the common case, 10x faster
    try:
        ip = ipaddress.ip_address(address.split("/", 1)[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def suspicious(networks: int, user_agents: int, limits: SharingLimits = DEFAULT_LIMITS) -> bool:
    """More networks or user agents within the window than one person uses."""
    return networks > limits.max_networks or user_agents > limits.max_user_agents
