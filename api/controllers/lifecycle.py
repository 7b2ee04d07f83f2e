"""Deletion with a 30-day restore window, and data exports (GDPR Art. 17 and 20).

A person asks for their own erasure (``/me/deletion``), an admin for a user's; either may cancel
(restore) until it is due. Exports: an admin exports the tenant, anyone their own data; the zip
is built in the background, followed with ``GET``, downloaded within 24 hours. An export is
readable only inside its tenant: a tenant export by the tenant's admins, a user's own by that user.
The operator's equivalents (restore any deletion, terminate a tenant) come with issue 17's
operator principal; until then the CLI acts as the operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Stream

from api.dependencies import CommandService
from api.exports import ExportFiles, read_chunks
from api.guards import ALLOWED_WHILE_SUSPENDED
from api.principal import Principal
from domain.application import OwnLLM
from domain.commands.lifecycle import DeletionState
from domain.context import Ctx
from domain.deletion import Cause
from domain.errors import Expired, InvalidState, NotFound
from domain.permissions import Action
from domain.roles import Role
from projections.lifecycle import ExportView, LifecycleView


class DeletionOut(msgspec.Struct):
    id: UUID
    status: str  # pending, cancelled, erased
    cause: str
    due_at: datetime  # erasure happens at this instant; cancel (DELETE) before it to restore the account


class ExportOut(msgspec.Struct):
    id: UUID
    scope: str  # tenant or user
    subject_id: UUID | None
    status: str  # requested, completed, expired
    requested_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    size: int
    sha256: str
    progress: dict[str, Any] | None  # while being built: step, steps, file, rows
    download: str | None  # the download path while the link is valid


def _deletion_out(state: DeletionState) -> DeletionOut:
    return DeletionOut(state.id, state.status, state.cause, state.due_at)


def _export_out(view: ExportView, files: ExportFiles) -> ExportOut:
    progress = files.progress(view.id) if view.status == "requested" else None
    link = f"/api/v1/exports/{view.id}/download" if view.status == "completed" else None
    return ExportOut(view.id, view.scope, view.subject_id, view.status, view.requested_at, view.completed_at,
                     view.expires_at, view.size, view.sha256, progress, link)  # fmt: skip


def readable(view: ExportView | None, principal: Principal) -> ExportView:
    """The export if the caller may read it; anything else is "not found" (never another tenant's)."""
    if view is None or view.tenant_id != principal.tenant_id:
        raise NotFound("export not found")
    if view.scope == "user" and view.subject_id == principal.user_id:
        return view
    if view.scope == "tenant" and principal.role == Role.ADMIN:
        return view
    raise NotFound("export not found")


class DeletionController(Controller):
    """Account deletion: request, follow, restore."""

    tags = ["lifecycle"]

    @post("/api/v1/me/deletion", operation_id="requestMyDeletion", opt={"action": Action.DATA_OWN},
          status_code=202, sync_to_thread=True)  # fmt: skip
    def request_mine(self, ctx: NamedDependency[Ctx], principal: NamedDependency[Principal],
                     commands: NamedDependency[CommandService]) -> DeletionOut:  # fmt: skip
        """Ask for your account's erasure in 30 days; restore it with DELETE before then."""
        return _deletion_out(commands.run(OwnLLM.request_deletion, ctx, principal.user_id, Cause.USER))

    @get("/api/v1/me/deletion", operation_id="getMyDeletion", opt={"action": Action.DATA_READ_OWN},
         sync_to_thread=False)  # fmt: skip
    def get_mine(self, principal: NamedDependency[Principal], lifecycle: NamedDependency[LifecycleView]) -> DeletionOut:
        """Your pending deletion, if any."""
        return _pending(lifecycle, principal.tenant_id, principal.user_id)

    @delete("/api/v1/me/deletion", operation_id="cancelMyDeletion", opt={"action": Action.DATA_OWN},
            status_code=200, sync_to_thread=True)  # fmt: skip
    def cancel_mine(self, ctx: NamedDependency[Ctx], principal: NamedDependency[Principal],
                    commands: NamedDependency[CommandService]) -> DeletionOut:  # fmt: skip
        """Restore your account: cancel your pending deletion (until it is due)."""
        return _deletion_out(commands.run(OwnLLM.cancel_deletion, ctx, principal.user_id))

    @post("/api/v1/users/{user_id:uuid}/deletion", operation_id="requestUserDeletion",
          opt={"action": Action.USERS_MANAGE}, status_code=202, sync_to_thread=True)  # fmt: skip
    def request_user(self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService],
                     user_id: FromPath[UUID]) -> DeletionOut:  # fmt: skip
        """Ask for a user's erasure in 30 days (restorable until then)."""
        return _deletion_out(commands.run(OwnLLM.request_deletion, ctx, user_id, Cause.ADMIN))

    @get("/api/v1/users/{user_id:uuid}/deletion", operation_id="getUserDeletion",
         opt={"action": Action.USERS_READ}, sync_to_thread=False)  # fmt: skip
    def get_user(self, principal: NamedDependency[Principal], lifecycle: NamedDependency[LifecycleView],
                 user_id: FromPath[UUID]) -> DeletionOut:  # fmt: skip
        """A user's pending deletion, if any."""
        return _pending(lifecycle, principal.tenant_id, user_id)

    @delete("/api/v1/users/{user_id:uuid}/deletion", operation_id="cancelUserDeletion",
            opt={"action": Action.USERS_MANAGE}, status_code=200, sync_to_thread=True)  # fmt: skip
    def cancel_user(self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService],
                    user_id: FromPath[UUID]) -> DeletionOut:  # fmt: skip
        """Restore a user's account: cancel an admin's pending deletion of it (until it is due)."""
        return _deletion_out(commands.run(OwnLLM.cancel_deletion, ctx, user_id))


def _pending(lifecycle: LifecycleView, tenant_id: UUID, user_id: UUID) -> DeletionOut:
    view = lifecycle.deletion_of(user_id)
    if view is None or view.tenant_id != tenant_id:
        raise NotFound("no pending deletion")
    return DeletionOut(view.id, view.status, view.cause, view.due_at)


class ExportController(Controller):
    """Data exports: request, follow, download."""

    tags = ["lifecycle"]

    @post("/api/v1/exports", operation_id="exportTenant", status_code=202, sync_to_thread=True,
          opt={"action": Action.DATA_EXPORT, ALLOWED_WHILE_SUSPENDED: True})  # fmt: skip
    def export_tenant(self, ctx: NamedDependency[Ctx], commands: NamedDependency[CommandService],
                      lifecycle: NamedDependency[LifecycleView], export_files: NamedDependency[ExportFiles],
                      wake_sweeper: NamedDependency[Any]) -> ExportOut:  # fmt: skip
        """Export the whole tenant (admins): a zip of JSON and CSV files, built in the background."""
        export_id = commands.run(OwnLLM.request_export, ctx, scope="tenant", subject_id=None)
        wake_sweeper()
        return _export_out(lifecycle.exports[export_id], export_files)

    @post("/api/v1/me/export", operation_id="exportMyData", opt={"action": Action.DATA_OWN}, status_code=202,
          sync_to_thread=True)  # fmt: skip
    def export_mine(self, ctx: NamedDependency[Ctx], principal: NamedDependency[Principal],
                    commands: NamedDependency[CommandService], lifecycle: NamedDependency[LifecycleView],
                    export_files: NamedDependency[ExportFiles],
                    wake_sweeper: NamedDependency[Any]) -> ExportOut:  # fmt: skip
        """Export your own data: your account, keys, usage and audit events."""
        export_id = commands.run(OwnLLM.request_export, ctx, scope="user", subject_id=principal.user_id)
        wake_sweeper()
        return _export_out(lifecycle.exports[export_id], export_files)

    @get("/api/v1/exports", operation_id="listExports", sync_to_thread=False,
         opt={"action": Action.DATA_READ_OWN, ALLOWED_WHILE_SUSPENDED: True})  # fmt: skip
    def list_exports(self, principal: NamedDependency[Principal], lifecycle: NamedDependency[LifecycleView],
                     export_files: NamedDependency[ExportFiles]) -> list[ExportOut]:  # fmt: skip
        """The exports you may read (admins: the tenant's; everyone: their own), oldest first."""
        views = []
        for view in lifecycle.tenant_exports(principal.tenant_id):
            try:
                views.append(_export_out(readable(view, principal), export_files))
            except NotFound:
                continue
        return views

    @get("/api/v1/exports/{export_id:uuid}", operation_id="getExport",
         opt={"action": Action.DATA_READ_OWN, ALLOWED_WHILE_SUSPENDED: True},
         sync_to_thread=False)  # fmt: skip
    def get_export(self, principal: NamedDependency[Principal], lifecycle: NamedDependency[LifecycleView],
                   export_files: NamedDependency[ExportFiles], export_id: FromPath[UUID]) -> ExportOut:  # fmt: skip
        """An export's status and progress, and its download path once built."""
        return _export_out(readable(lifecycle.exports.get(export_id), principal), export_files)

    @get("/api/v1/exports/{export_id:uuid}/download", operation_id="downloadExport",
         opt={"action": Action.DATA_READ_OWN, ALLOWED_WHILE_SUSPENDED: True}, sync_to_thread=True)  # fmt: skip
    def download(self, ctx: NamedDependency[Ctx], principal: NamedDependency[Principal],
                 lifecycle: NamedDependency[LifecycleView], export_files: NamedDependency[ExportFiles],
                 commands: NamedDependency[CommandService], now: NamedDependency[datetime],
                 export_id: FromPath[UUID]) -> Response[Any]:  # fmt: skip
        """The export's zip (within 24 hours of being built); the download is recorded."""
        view = readable(lifecycle.exports.get(export_id), principal)
        if view.status == "requested":
            raise InvalidState("the export is still being built")
        try:
            handle = export_files.path(view.id).open("rb")  # open now: a sweep deleting it later cannot cut us off
        except FileNotFoundError:
            raise Expired("the export's file is gone; request a new export") from None
        try:
            commands.run(OwnLLM.record_download, ctx, view.id, now)  # refuses an expired link
        except Exception:
            handle.close()
            raise
        chunks: Iterator[bytes] = read_chunks(handle)
        disposition = f'attachment; filename="ownllm-export-{view.id}.zip"'
        return Stream(chunks, media_type="application/zip", headers={"Content-Disposition": disposition})
