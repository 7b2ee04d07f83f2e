"""The data lifecycle: deletion requests with their restore window, termination, exports; erasure itself is
:mod:`domain.commands.erasure` (names re-exported here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.commands.base import check_reason
from domain.commands.erasure import ERASED_REASON, Erasure, ErasureCommands, LifecycleIndex, fold
from domain.context import SYSTEM, Ctx
from domain.data_export import SCOPES, DataExport
from domain.deletion import Cause, Deletion, SubjectKind
from domain.errors import InvalidState, InvalidValue, NotFound, PermissionDenied
from domain.roles import Role
from domain.tenant import tenant_subject_id
from domain.user import User
from policies.lifecycle import deletion_due_at, termination_due_at

__all__ = ["ERASED_REASON", "DeletionState", "Erasure", "LifecycleCommands", "LifecycleIndex"]


@dataclass(frozen=True, slots=True)
class DeletionState:
    """A subject's current deletion request."""

    id: UUID
    status: str
    due_at: datetime
    cause: str


class LifecycleCommands(ErasureCommands):
    """Deletion with restore, erasure (:mod:`domain.commands.erasure`), tenant termination, and data exports."""

    # -- deletion ----------------------------------------------------------------------------

    def request_deletion(self, ctx: Ctx, user_id: UUID, cause: str = Cause.USER) -> DeletionState:
        """Ask for a user's erasure 30 days from now; restorable until then."""
        cause = _cause(cause)
        tenant, user = self._load_with_tenant(User, user_id, ctx.tenant_id)
        if tenant.terminated:
            raise InvalidState("tenant is terminated: its data is already being erased")
        if user.active and user.role == Role.ADMIN:
            tenant.check_not_last_admin(user_id)  # appoint another admin first (or terminate the tenant)
        deletion = self._new_deletion(ctx, tenant.id, user_id, SubjectKind.USER, cause, deletion_due_at(self.clock()))
        self._save(deletion)
        return _state(deletion)

    def cancel_deletion(self, ctx: Ctx, user_id: UUID) -> DeletionState:
        """Restore the account before the deletion is due; only the requester's side or the operator may."""
        self._load(User, user_id, ctx.tenant_id)
        deletion = self._current_deletion(user_id)
        if deletion is None or deletion.status != "pending":
            raise NotFound("no pending deletion for this user")
        _check_may_cancel(ctx, deletion)
        deletion.cancel(ctx, self.clock())
        self._save(deletion)
        return _state(deletion)

    def deletion_of(self, ctx: Ctx, user_id: UUID) -> DeletionState | None:
        """The user's latest deletion request, if any."""
        self._load(User, user_id, ctx.tenant_id)
        deletion = self._current_deletion(user_id)
        return None if deletion is None else _state(deletion)

    def terminate_tenant(self, ctx: Ctx, reason: str) -> datetime:
        """End a tenant's contract: access stops now; every member and its own data are erased within 30 days."""
        tenant = self._tenant(ctx.tenant_id)
        now = self.clock()
        erase_by = termination_due_at(now)
        tenant.terminate(ctx, check_reason(reason), now, erase_by)
        pending: list[Aggregate] = [tenant]
        for subject_id, kind in [*((m, SubjectKind.USER) for m in self._members(tenant.id)),
                                 (tenant_subject_id(tenant.id), SubjectKind.TENANT)]:  # fmt: skip
            current = self._current_deletion(subject_id)
            if current is not None and current.status in {"erased"}:
                continue
            if current is not None and current.status == "pending":
                if current.due_at <= erase_by:
                    continue  # already due within the window
                current.cancel(ctx, now)  # replaced by one due within the termination window
                pending.append(current)
            pending.append(self._new_deletion(ctx, tenant.id, subject_id, kind, Cause.TERMINATION, erase_by,
                                              after=current))  # fmt: skip
        self._save(*pending)
        return erase_by

    def _new_deletion(
        self, ctx: Ctx, tenant_id: UUID, subject_id: UUID, kind: str, cause: str, due_at: datetime,
        after: Deletion | None = None,
    ) -> Deletion:  # fmt: skip
        current = after if after is not None else self._current_deletion(subject_id)
        if current is not None and current.status == "pending":
            raise InvalidState(f"a deletion is already pending, due {current.due_at:%Y-%m-%d %H:%M} UTC")
        if current is not None and current.status == "erased":
            raise InvalidState("the subject is already erased")
        sequence = 0 if current is None else self._sequence_of(subject_id)
        return Deletion(subject_id=subject_id, sequence=sequence, tenant_id=tenant_id, subject_kind=kind, cause=cause,
                        requested_at=self.clock(), due_at=due_at, actor=ctx.actor,
                        request_id=ctx.request_id)  # fmt: skip

    def _sequence_of(self, subject_id: UUID) -> int:
        """How many requests the subject had: the next one's sequence number."""
        sequence = 0
        while self._get(Deletion.create_id(subject_id, sequence)) is not None:
            sequence += 1
        return sequence

    def _current_deletion(self, subject_id: UUID) -> Deletion | None:
        """The subject's latest request (requests are numbered 0, 1, ...)."""
        latest = None
        sequence = 0
        while isinstance(found := self._get(Deletion.create_id(subject_id, sequence)), Deletion):
            latest, sequence = found, sequence + 1
        return latest

    def _members(self, tenant_id: UUID) -> Sequence[UUID]:
        return self._index().members(tenant_id)

    # -- exports -----------------------------------------------------------------------------

    def request_export(self, ctx: Ctx, *, scope: str, subject_id: UUID | None) -> UUID:
        """Ask for a zip of the tenant's data (scope "tenant") or of one user's own ("user"); once per request."""
        if scope not in SCOPES:
            raise InvalidValue(f"scope must be one of {', '.join(sorted(SCOPES))}", "scope")
        tenant = self._tenant(ctx.tenant_id)
        if tenant.terminated:
            raise InvalidState("tenant is terminated")
        if scope == "user":
            if subject_id is None:
                raise InvalidValue("a user export names its user", "subject_id")
            self._load(User, subject_id, ctx.tenant_id)
        export_id = DataExport.create_id(ctx.tenant_id, ctx.request_id)
        if self._get(export_id) is None:
            subject = subject_id if scope == "user" else None
            export = DataExport(tenant_id=ctx.tenant_id, scope=scope, subject_id=subject,
                                requested_by=ctx.caller.user_id if ctx.caller else None, requested_at=self.clock(),
                                actor=ctx.actor, request_id=ctx.request_id)  # fmt: skip
            self._save(export)
        return export_id

    def complete_export(self, export_id: UUID, *, files: int, size: int, sha256: str, now: datetime) -> bool:
        """The export's file is written; False when it was already completed or expired (idempotent)."""
        export = self._get(export_id)
        if not isinstance(export, DataExport) or export.status != "requested":
            return False
        export.complete(_system(export, "complete"), files, size, sha256, now)
        self._save(export)
        return True

    def record_download(self, ctx: Ctx, export_id: UUID, now: datetime) -> None:
        """Someone fetched an export of their tenant; refused once its link has expired."""
        export = self._load(DataExport, export_id, ctx.tenant_id)
        export.download(ctx, now)
        self._save(export)

    def expire_export(self, export_id: UUID, reason: str = "expired") -> bool:
        """The link stops working (the caller deletes the file); False when already expired."""
        return self.expire_exports([export_id], reason) == 1

    def expire_exports(self, export_ids: Sequence[UUID], reason: str = "expired") -> int:
        """Expire several links in one transaction (the sweeper's batch); how many were not expired yet."""
        changed: list[Aggregate] = []
        for stream in self._streams(list(export_ids)).values():
            export = fold(stream)
            if isinstance(export, DataExport) and export.status != "expired":
                export.expire(_system(export, "expire"), reason)
                changed.append(export)
        self._save(*changed)
        return len(changed)


def _system(export: DataExport, step: str) -> Ctx:
    """The sweeper's context for an export's step (its request id names the export and the step)."""
    return Ctx(actor=SYSTEM, tenant_id=export.tenant_id, request_id=f"sweep-export-{step}-{export.id}")


def _cause(cause: str) -> str:
    try:
        return Cause(cause).value
    except ValueError:
        raise InvalidValue(f"cause must be one of {', '.join(Cause)}", "cause") from None


def _check_may_cancel(ctx: Ctx, deletion: Deletion) -> None:
    """The operator (no caller) always; the person their own request; an admin an admin's request."""
    caller = ctx.caller
    if caller is None:
        return
    if deletion.cause == Cause.USER and caller.user_id == deletion.subject_id:
        return
    if deletion.cause == Cause.ADMIN and caller.role == Role.ADMIN:
        return
    raise PermissionDenied("only the requester's side or the operator may cancel this deletion")


def _state(deletion: Deletion) -> DeletionState:
    return DeletionState(deletion.id, deletion.status, deletion.due_at, deletion.cause)
