"""The lifecycle read model: deletion requests, terminations and exports, in memory in every process.

It answers what the sweeper needs (what is due at ``now``) and what erasure must find across
aggregates (``domain.commands.lifecycle.LifecycleIndex``): a user's live keys, a tenant's members
and agents (from the directory), and the exports about a subject. It holds ids and times only.

:class:`ErasureFollower` is the other half of "erasure is an event every process reacts to": on
``Deletion.SubjectErased`` (and ``BillingRetention.Ended``, whose billing-contact keys went) it drops
the subject's key from this process's key cache, so nothing here unseals that subject again (the
directory and the billing view redact their copies on the same events).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.data_export import DataExport
from domain.deletion import Deletion
from domain.retention import BillingRetention
from domain.sealing import KeyStore
from domain.tenant import Tenant
from policies.lifecycle import export_expires_at, is_due
from projections.directory import Directory
from projections.log import topics_of


@dataclass(slots=True)
class DeletionView:
    """A deletion request as listed."""

    id: UUID
    tenant_id: UUID
    subject_id: UUID
    subject_kind: str
    cause: str
    requested_at: datetime
    due_at: datetime
    status: str = "pending"
    erased_at: datetime | None = None


@dataclass(slots=True)
class ExportView:
    """A data export as listed (never its content)."""

    id: UUID
    tenant_id: UUID
    scope: str
    subject_id: UUID | None
    requested_by: UUID | None
    requested_at: datetime
    status: str = "requested"
    files: int = 0
    size: int = 0
    sha256: str = ""
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    downloads: int = 0


class LifecycleView:
    """Deletions by id and pending by subject, exports by id, terminated tenants; see the module docstring."""

    topics: ClassVar[tuple[str, ...]]

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.deletions: dict[UUID, DeletionView] = {}
        self.pending: dict[UUID, UUID] = {}  # subject id -> its pending deletion's id
        self.exports: dict[UUID, ExportView] = {}
        self.terminated: dict[UUID, datetime] = {}  # tenant id -> erase-by
        self._due: list[tuple[datetime, UUID]] = []  # (due, deletion id) heap: a pass costs the due items, not all
        self._due_lock = threading.Lock()  # the runner pushes while the sweeper reads

    def process(self, event: Any) -> None:
        """Apply one domain event."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    # -- the sweeper's questions ---------------------------------------------------------------

    def due_deletions(self, now: datetime) -> list[DeletionView]:
        """Pending deletions whose window has ended at ``now``, the earliest first (members before their tenant).

        Reads the heap's due end only: cancelled and erased entries are dropped as they surface, the due
        pending ones stay until their erasure is recorded (an erasure refused now is found again next pass).
        """
        due: list[DeletionView] = []
        with self._due_lock:
            while self._due and is_due(self._due[0][0], now):
                _, deletion_id = heapq.heappop(self._due)
                view = self.deletions.get(deletion_id)
                if view is not None and view.status == "pending":
                    due.append(view)
            for view in due:
                heapq.heappush(self._due, (view.due_at, view.id))
        return sorted(due, key=lambda d: (d.due_at, d.subject_kind != "user"))

    def _push_due(self, view: DeletionView) -> None:
        with self._due_lock:
            heapq.heappush(self._due, (view.due_at, view.id))

    def expired_exports(self, now: datetime) -> list[ExportView]:
        """Completed exports whose link has expired at ``now``."""
        return [
            e for e in list(self.exports.values())
            if e.status == "completed" and e.expires_at is not None and is_due(e.expires_at, now)
        ]  # fmt: skip

    def requested_exports(self) -> list[ExportView]:
        """Exports waiting to be built, oldest first."""
        return sorted((e for e in list(self.exports.values()) if e.status == "requested"), key=lambda e: e.requested_at)

    def deletion_of(self, subject_id: UUID) -> DeletionView | None:
        """The subject's pending deletion, if any."""
        deletion_id = self.pending.get(subject_id)
        return None if deletion_id is None else self.deletions.get(deletion_id)

    # -- the domain's LifecycleIndex ----------------------------------------------------------

    def active_keys(self, tenant_id: UUID, user_id: UUID) -> list[UUID]:
        """The user's keys that are not revoked."""
        return [k.id for k in self.directory.tenant_keys(tenant_id, user_id) if k.revoked_at is None]

    def members(self, tenant_id: UUID) -> list[UUID]:
        """The tenant's users and invitees (an invite's e-mail is sealed with its invitee's id)."""
        ids = [u.id for u in self.directory.tenant_users(tenant_id)]
        ids += [i.user_id for i in self.directory.tenant_invites(tenant_id)]
        return list(dict.fromkeys(ids))

    def active_agents(self, tenant_id: UUID) -> list[UUID]:
        """The tenant's agents that are not revoked."""
        return [a.id for a in self.directory.tenant_agents(tenant_id) if a.revoked_at is None]

    def live_exports(self, tenant_id: UUID, subject_id: UUID) -> list[UUID]:
        """Exports about the subject (for the tenant itself: all of its) that have not expired."""
        return [e.id for e in self._of(tenant_id) if e.status != "expired" and subject_id in (e.subject_id, tenant_id)]

    def tenant_exports(self, tenant_id: UUID) -> list[ExportView]:
        """A tenant's exports, oldest first."""
        return sorted(self._of(tenant_id), key=lambda e: e.requested_at)

    def _of(self, tenant_id: UUID) -> Iterator[ExportView]:
        return (e for e in list(self.exports.values()) if e.tenant_id == tenant_id)


def _requested(v: LifecycleView, e: Deletion.Requested) -> None:
    view = DeletionView(e.originator_id, e.tenant_id, e.subject_id, e.subject_kind, e.cause, e.requested_at, e.due_at)
    v.deletions[view.id] = view
    v.pending[view.subject_id] = view.id
    v._push_due(view)


def _closed(status: str) -> Callable[[LifecycleView, Any], None]:
    def close(v: LifecycleView, e: Any) -> None:
        view = v.deletions[e.originator_id]
        view.status = status
        view.erased_at = getattr(e, "erased_at", None)
        if v.pending.get(view.subject_id) == view.id:
            del v.pending[view.subject_id]

    return close


def _terminated(v: LifecycleView, e: Tenant.Terminated) -> None:
    v.terminated[e.originator_id] = e.erase_by


def _export_requested(v: LifecycleView, e: DataExport.Requested) -> None:
    v.exports[e.originator_id] = ExportView(
        e.originator_id, e.tenant_id, e.scope, e.subject_id, e.requested_by, e.requested_at
    )


def _export_completed(v: LifecycleView, e: DataExport.Completed) -> None:
    view = v.exports[e.originator_id]
    view.status, view.files, view.size, view.sha256 = "completed", e.files, e.size, e.sha256
    view.completed_at, view.expires_at = e.completed_at, export_expires_at(e.completed_at)


def _export_downloaded(v: LifecycleView, e: DataExport.Downloaded) -> None:
    v.exports[e.originator_id].downloads += 1


def _export_expired(v: LifecycleView, e: DataExport.Expired) -> None:
    v.exports[e.originator_id].status = "expired"


_HANDLERS: dict[type, Callable[[LifecycleView, Any], None]] = {
    Deletion.Requested: _requested,
    Deletion.Cancelled: _closed("cancelled"),
    Deletion.SubjectErased: _closed("erased"),
    Tenant.Terminated: _terminated,
    DataExport.Requested: _export_requested,
    DataExport.Completed: _export_completed,
    DataExport.Downloaded: _export_downloaded,
    DataExport.Expired: _export_expired,
}
LifecycleView.topics = topics_of(_HANDLERS)


class ErasureFollower:
    """Drops an erased subject's key from this process's cache (every process runs one)."""

    topics: ClassVar[tuple[str, ...]] = topics_of([Deletion.SubjectErased, BillingRetention.Ended])

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def process(self, event: Any) -> None:
        """Forget the key of an erased subject."""
        if isinstance(event, Deletion.SubjectErased):
            self.keys.forget(event.subject_id)
        elif isinstance(event, BillingRetention.Ended):
            for subject_id in event.subject_ids:
                self.keys.forget(subject_id)


def _describe_lifecycle_events() -> None:
    """How the audit log names the lifecycle's events (ids, causes, times and counts only: no personal data).

    Registered into the audit log's table from here because ``projections/audit_*`` belonged to another
    change while this one was written; these lines move into ``projections/audit_entries.py`` on merge.
    """
    from projections.audit_entries import DESCRIBE

    DESCRIBE.update({
        Deletion.Requested: lambda e: ("deletion.requested", e.subject_kind, e.subject_id,
                                       f"deletion requested ({e.cause}), due {e.due_at.isoformat()}"),
        Deletion.Cancelled: lambda e: ("deletion.cancelled", "user", e.subject_id, "deletion cancelled: restored"),
        Deletion.SubjectErased: lambda e: ("deletion.subject_erased", e.subject_kind, e.subject_id,
                                           "personal data erased (subject key destroyed)"),
        Tenant.Terminated: lambda e: ("tenant.terminated", "tenant", e.originator_id,
                                      f"tenant terminated; its data erased by {e.erase_by.isoformat()}"),
        DataExport.Requested: lambda e: ("data_export.requested", "data_export", e.originator_id,
                                         f"{e.scope} export requested" + (f" for user {e.subject_id}"
                                                                          if e.subject_id else "")),
        DataExport.Completed: lambda e: ("data_export.completed", "data_export", e.originator_id,
                                         f"export built: {e.files} files, {e.size} bytes, sha256 {e.sha256}"),
        DataExport.Downloaded: lambda e: ("data_export.downloaded", "data_export", e.originator_id,
                                          "export downloaded"),
        DataExport.Expired: lambda e: ("data_export.expired", "data_export", e.originator_id,
                                       f"export link expired ({e.reason}); file deleted"),
    })  # fmt: skip


_describe_lifecycle_events()
