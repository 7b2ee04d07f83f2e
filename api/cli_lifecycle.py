"""``ownllm policies run`` (one sweep at a given time) and ``ownllm exports create`` (with a progress bar)."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli_support import cli_services as _services
from api.cli_support import err, out, shown, tenant_of
from api.cli_support import run_command as _run
from api.cli_support import tenant_ctx as _ctx
from api.sweeper import SweeperBusy
from domain.context import SYSTEM, Ctx
from domain.errors import DomainError

policies = typer.Typer(
    help="Apply the terms' time rules: erase due accounts, expire export links.", no_args_is_help=True
)
exports = typer.Typer(help="Data exports (GDPR Art. 20): a zip of a tenant's or a user's data.", no_args_is_help=True)


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"[red]--now must be an ISO 8601 instant, e.g. 2026-12-31T00:00:00+00:00[/] (got {shown(value)})")
        raise typer.Exit(2) from None
    if parsed.tzinfo is None:
        err.print("[red]--now needs a timezone (e.g. +00:00 or Z)[/]")
        raise typer.Exit(2)
    return parsed.astimezone(UTC)


@policies.command("run")
def policies_run(
    now: Annotated[str | None, typer.Option(help="Sweep as of this ISO 8601 instant (default: the clock)")] = None,
) -> None:
    """Run the policy sweeper once: every event due at NOW is emitted, none twice (safe to repeat)."""
    from api.sweep_tasks import build_sweeper

    at = _instant(now)
    services = _services()
    sweeper = build_sweeper(services)
    services.sweeper = sweeper
    try:
        emitted = sweeper.run_once(at)
    except SweeperBusy as exc:
        err.print(f"[yellow]{shown(exc)}[/]: it applies the same rules; nothing to do here")
        raise typer.Exit(3) from None
    finally:
        services.close()
    table = Table("task", "events emitted", "error")
    for name, count in emitted.items():
        table.add_row(name, str(count), shown(sweeper.failures.get(name, "")))
    out.print(table)
    out.print(f"{sum(emitted.values())} events emitted at {(at or services.app.clock()).isoformat()}", markup=False)
    if sweeper.failures:
        raise typer.Exit(1)


@exports.command("create")
def exports_create(
    tenant: Annotated[str, typer.Option(help="Tenant slug")],
    email: Annotated[str | None, typer.Option(help="Only this user's own data (default: the whole tenant)")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Copy the zip here (default: print its path)")] = None,
) -> None:
    """Build a data export now, with a progress bar; the file expires 24 h after it is built."""
    from rich.progress import Progress

    from api.sweep_tasks import export_builder

    services = _services()
    try:
        tenant_id = tenant_of(services, tenant)
        subject = None
        if email is not None:
            wanted = email.strip().lower()
            found = [u for u in services.directory.tenant_users(tenant_id) if u.email == wanted]
            if not found:
                err.print(f"[red]no user with email {shown(email)} in {shown(tenant)}[/]")
                raise typer.Exit(1)
            subject = found[-1].id
        ctx = Ctx(actor=SYSTEM, tenant_id=tenant_id, request_id=f"cli-{uuid.uuid4()}")
        try:
            export_id = services.command(
                services.app.request_export, ctx, scope="user" if subject else "tenant", subject_id=subject
            )
        except DomainError as exc:
            err.print(f"[red]{shown(exc.title)}:[/] {shown(exc)}")
            raise typer.Exit(1) from None
        builder = export_builder(services)
        view = services.lifecycle.exports[export_id]
        result: dict[str, Any] = {}

        def build() -> None:
            try:
                result["built"] = builder.build(view, services.app.clock())
            except Exception as exc:  # shown below
                result["error"] = exc

        worker = threading.Thread(target=build, daemon=True)
        worker.start()
        with Progress(console=out) as progress:
            task = progress.add_task(f"export of {shown(tenant)}", total=5)
            while worker.is_alive():
                report = builder.files.progress(export_id) or {}
                progress.update(task, completed=report.get("step", 0), description=f"export: {report.get('file', '')}")
                time.sleep(0.1)
            progress.update(task, completed=5)
        if "error" in result:
            err.print(f"[red]the export failed:[/] {type(result['error']).__name__}")
            raise typer.Exit(1)
        built = result["built"]
        services.command(services.app.complete_export, export_id, files=built.files, size=built.size,
                         sha256=built.sha256, now=services.app.clock())  # fmt: skip
        path = builder.files.path(export_id)
        if output is not None:
            shutil.copyfile(path, output)
            path = output
        out.print(f"export {export_id}: {built.size} bytes, sha256 {built.sha256}")
        out.print(f"file: {shown(path)}")
    finally:
        services.close()


def tenants_terminate(
    tenant: Annotated[str, typer.Option(help="Tenant slug")],
    reason: Annotated[str, typer.Option(help="Recorded (sealed) with the event")] = "contract terminated",
) -> None:
    """Terminate a tenant's contract: access stops now; its members and data are erased within 30 days."""
    services = _services()
    try:
        erase_by = _run(services, services.app.terminate_tenant, _ctx(services, tenant), reason)
        out.print(f"tenant {shown(tenant)} terminated; its data is erased by {erase_by:%Y-%m-%d %H:%M} UTC")
    finally:
        services.close()


def users_restore(
    tenant: Annotated[str, typer.Option(help="Tenant slug")],
    email: Annotated[str, typer.Option(help="The user whose pending deletion to cancel")],
) -> None:
    """As the operator: cancel a user's pending deletion (restore the account) before it is due."""
    services = _services()
    try:
        ctx = _ctx(services, tenant)
        wanted = email.strip().lower()
        found = [u for u in services.directory.tenant_users(ctx.tenant_id) if u.email == wanted]
        if not found:
            err.print(f"[red]no user with email {shown(email)} in {shown(tenant)}[/]")
            raise typer.Exit(1)
        _run(services, services.app.cancel_deletion, ctx, found[-1].id)
        out.print(f"the account of {shown(email)} is restored")
    finally:
        services.close()
