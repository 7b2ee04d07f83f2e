"""The reaction that queues notices for suspensions and appeal decisions (a tracked handler).

At least once like every reaction with an outside effect; the notice id follows from the event and
the recipient, so queuing again after a crash adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from api.outbox.notices import decision_notice, notice_id, suspension_notice
from api.outbox.store import Notice, Outbox
from domain.appeal import Appeal
from domain.suspension import Suspension
from projections.directory import Directory
from projections.log import topics_of


def recipients(directory: Directory, tenant_id: UUID, also: UUID | None = None) -> list[UUID]:
    """The tenant's admins who are not removed (a suspended admin still hears of it), and ``also``."""
    users = [u.id for u in directory.tenant_users(tenant_id) if u.role == "admin" and not u.removed]
    if also is not None and also not in users and also in directory.users:
        users.append(also)
    return users


class NoticeReaction:
    """Queues a notice to each recipient of a suspension or an appeal's decision."""

    name = "outbox-notices"
    topics = topics_of([Suspension.Imposed, Appeal.Decided])

    def __init__(
        self,
        outbox: Outbox,
        directory: Directory,
        catch_up: Callable[[], object],
        clock: Callable[[], datetime],
        base_url: str,
        queued: Callable[[], object] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.directory = directory
        self.catch_up = catch_up
        self.clock = clock
        self.base_url = base_url
        self.queued = queued

    def handle(self, event: Any, position: int) -> None:
        """Queue the event's notices (the directory first brought up to it, for the recipients)."""
        self.catch_up()
        if isinstance(event, Suspension.Imposed):
            kind, (subject, body) = "suspension", suspension_notice(event, self.base_url)
            also = self._person(event)
        else:
            kind, (subject, body) = "appeal_decision", decision_notice(event)
            also = None
        for user_id in recipients(self.directory, event.tenant_id, also):
            notice = Notice(notice_id(event, user_id), kind, subject, body,
                            tenant_id=event.tenant_id, to_user=user_id)  # fmt: skip
            self.outbox.enqueue(notice, self.clock())
        self.queued()

    def _person(self, event: Suspension.Imposed) -> UUID | None:
        """The user a user's or a key's suspension concerns."""
        if event.subject_kind == "user":
            return event.subject_id
        if event.subject_kind == "api_key" and (key := self.directory.keys.get(event.subject_id)) is not None:
            return key.user_id
        return None
