"""Deterministic ids for natural keys, so the event store itself enforces uniqueness."""

from __future__ import annotations

from uuid import UUID, uuid5

NAMESPACE = UUID("6f2d4c1e-4a0b-5d8e-9a51-0c8d1f3b2a77")


def tenant_id_for(slug: str) -> UUID:
    """A tenant's id is its slug's: a second signup with the slug conflicts on version 1."""
    return uuid5(NAMESPACE, f"tenant:{slug}")


def secret_id_for(kind: str, secret_hash: str) -> UUID:
    """The id of a one-time or bearer secret (invite, pairing key, API key) from its keyed hash."""
    return uuid5(NAMESPACE, f"{kind}:{secret_hash}")
