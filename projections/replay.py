"""Auditor replay: a tenant's directory (users, roles, keys, agents) as it stood at a past moment.

Rebuilt from events only, never from today's read models: the tenancy events (read by topic, so
usage records are never decoded) are folded into a fresh :class:`Directory` up to the last event
recorded at or before the moment. Erased subjects read ``<erased>``, as everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.tenant import Tenant
from projections.directory import Directory
from projections.log import NotificationLog

BATCH = 1000


@dataclass(frozen=True, slots=True)
class Replayed:
    """The tenant's directory as of ``as_of``, and the notification position it stands on."""

    as_of: datetime
    position: int  # the last event of the tenant at or before ``as_of`` (0: none)
    head: int  # the log's head when the replay read it
    directory: Directory


def replay(log: NotificationLog, decode: Callable[[Notification], Any], tenant_id: UUID, as_of: datetime) -> Replayed:
    """Fold the tenant's directory events recorded at or before ``as_of``."""
    directory = Directory()
    head, after, position = log.head(), 0, 0
    while after < head:
        batch = log.read(after, head, Directory.topics, BATCH)
        for notification in batch:
            event = decode(notification)
            if _tenant_of(event) == tenant_id and event.timestamp <= as_of:
                directory.process(event)
                position = notification.id
        if len(batch) < BATCH:
            break
        after = batch[-1].id
    return Replayed(as_of, position, head, directory)


def _tenant_of(event: Any) -> UUID | None:
    return event.originator_id if isinstance(event, Tenant.Registered) else getattr(event, "tenant_id", None)
