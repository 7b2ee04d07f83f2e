"""What the reaction runner (:mod:`projections.reactions`) works with: handlers, the log it reads, where
positions are kept, the application it records through, and the per-handler lock."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from eventsourcing.persistence import Notification, Tracking

from projections.log import Recorded


class Reaction(Protocol):
    """A named handler of some event topics; its name keys its stored position, so never rename one."""

    name: str
    topics: tuple[str, ...]  # eventsourcing topics it handles; () means every event

    def handle(self, event: Any, position: int) -> None:
        """React to one event (the notification id is ``position``); raise to be retried later."""
        ...


@runtime_checkable
class BatchReaction(Reaction, Protocol):
    """A reaction that handles a whole batch at once: its commands and position in ONE transaction.

    For handlers whose throughput matters (credit debits from usage): one save per batch, not per event.
    """

    def handle_batch(self, items: Sequence[Recorded]) -> None:
        """React to the stored events in order (``.notification_id``; ``.event`` decodes on first use);
        raise to have the whole batch retried."""
        ...


class Log(Protocol):
    """The notification log, read by topic."""

    def head(self) -> int:
        """The last notification id (0 when empty)."""
        ...

    def read(self, after: int, stop: int, topics: Sequence[str], limit: int) -> Sequence[Notification]:
        """Up to ``limit`` notifications in ``(after, stop]`` with one of ``topics`` (all when empty)."""
        ...


class Positions(Protocol):
    """Where each handler's position is kept: eventsourcing's tracking records."""

    def max_tracking_id(self, application_name: str) -> int | None:
        """The handler's position."""
        ...

    def insert_tracking(self, tracking: Tracking) -> None:
        """Move the handler's position on (never back: a lower id raises IntegrityError)."""
        ...


class ReactingApp(Protocol):
    """The application: decodes events and records a reaction's commands with its position."""

    @property
    def mapper(self) -> Any:
        """Its mapper (``to_domain_event``)."""
        ...

    def reacting(self, tracking: Tracking) -> AbstractContextManager[Any]:
        """Commands run inside are recorded with ``tracking`` in one transaction."""
        ...


class HandlerLock(Protocol):
    """Held by at most one process per handler name."""

    def acquire(self, name: str) -> bool:
        """True when this process holds the handler's lock now (taken if free; never blocks)."""
        ...

    def release_all(self) -> None:
        """Give every held lock back."""
        ...
