"""An export of a tenant's data, or of one user's own (GDPR Art. 20): requested, built, downloaded, expired.

The aggregate records who asked and what came out (file count, size, SHA-256), never the data.
The file itself lives outside the event store and is deleted when the link expires (24 h,
``policies.lifecycle``) or when the subject is erased.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.context import Ctx
from domain.errors import Expired, InvalidState
from domain.ids import NAMESPACE
from policies.lifecycle import export_expired, export_expires_at

SCOPES = frozenset({"tenant", "user"})


class DataExport(Aggregate):
    """One export: ``scope`` "tenant" (a tenant admin's) or "user" (``subject_id``'s own data)."""

    class Requested(Aggregate.Created):
        tenant_id: UUID
        scope: str
        subject_id: UUID | None
        requested_by: UUID | None  # the user who asked (None: the operator)
        requested_at: datetime
        actor: str
        request_id: str

    class Completed(Aggregate.Event):
        tenant_id: UUID
        files: int
        size: int
        sha256: str
        completed_at: datetime
        expires_at: datetime
        actor: str
        request_id: str

    class Downloaded(Aggregate.Event):
        tenant_id: UUID
        actor: str
        request_id: str

    class Expired(Aggregate.Event):
        tenant_id: UUID
        reason: str  # "expired" (24 h passed) or "erased" (its subject was erased)
        actor: str
        request_id: str

    @staticmethod
    def create_id(tenant_id: UUID, request_id: str, **_: Any) -> UUID:
        """One export per request: a retried request asks once."""
        return uuid5(NAMESPACE, f"data-export:{tenant_id}:{request_id}")

    @event(Requested)
    def __init__(
        self,
        tenant_id: UUID,
        scope: str,
        subject_id: UUID | None,
        requested_by: UUID | None,
        requested_at: datetime,
        actor: str,
        request_id: str,
    ) -> None:
        self.tenant_id = tenant_id
        self.scope = scope
        self.subject_id = subject_id
        self.requested_by = requested_by
        self.status = "requested"
        self.completed_at: datetime | None = None

    def complete(self, ctx: Ctx, files: int, size: int, sha256: str, now: datetime) -> None:
        """The file is written; its link lives 24 hours from now."""
        if self.status != "requested":
            raise InvalidState(f"the export is already {self.status}")
        self._completed(tenant_id=self.tenant_id, files=files, size=size, sha256=sha256, completed_at=now,
                        expires_at=export_expires_at(now), actor=ctx.actor, request_id=ctx.request_id)  # fmt: skip

    def check_downloadable(self, now: datetime) -> None:
        """A completed export whose link has not expired."""
        if self.status == "requested":
            raise InvalidState("the export is still being built")
        if self.status == "expired" or (self.completed_at and export_expired(self.completed_at, now)):
            raise Expired("the export's download link has expired; request a new export")

    def download(self, ctx: Ctx, now: datetime) -> None:
        """Someone of the tenant fetched the file."""
        self.check_downloadable(now)
        self._downloaded(tenant_id=self.tenant_id, actor=ctx.actor, request_id=ctx.request_id)

    def expire(self, ctx: Ctx, reason: str) -> None:
        """The link stops working and the file goes (no event when already expired)."""
        if self.status != "expired":
            self._expired(tenant_id=self.tenant_id, reason=reason, actor=ctx.actor, request_id=ctx.request_id)

    @event(Completed)
    def _completed(
        self, tenant_id: UUID, files: int, size: int, sha256: str, completed_at: datetime, expires_at: datetime,
        actor: str, request_id: str,
    ) -> None:  # fmt: skip
        self.status = "completed"
        self.completed_at = completed_at

    @event(Downloaded)
    def _downloaded(self, tenant_id: UUID, actor: str, request_id: str) -> None:
        pass

    @event(Expired)
    def _expired(self, tenant_id: UUID, reason: str, actor: str, request_id: str) -> None:
        self.status = "expired"
