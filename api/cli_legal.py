"""``ownllm legal``: the operator lists the legal documents and publishes a new version with its notice."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from rich.table import Table

from api.cli_support import cli_services, err, out, shown
from domain.context import SYSTEM, Ctx
from domain.errors import DomainError

legal = typer.Typer(help="Publish versions of the terms, privacy policy and DPA.", no_args_is_help=True)
OPERATOR_TENANT = uuid.UUID(int=0)  # publications belong to no tenant


@legal.command("list")
def legal_list() -> None:
    """Every version shipped in legal/documents, with its dates and whether it is published."""
    services = cli_services()
    table = Table("ref", "title", "effective", "material", "published", "sha256")
    for d in services.app.documents():
        published = services.directory.publications.get(d.ref)
        table.add_row(
            d.ref, shown(d.title), f"{d.effective_at:%Y-%m-%d %H:%M}", "yes" if d.material else "no",
            f"{published:%Y-%m-%d %H:%M}" if published else "-", d.sha256[:12],
        )  # fmt: skip
    out.print(table)


@legal.command("publish")
def legal_publish(ref: Annotated[str, typer.Argument(help="The version to publish, e.g. terms-2")]) -> None:
    """Announce a version now: a material change must take effect at least 30 days later (terms §18)."""
    services = cli_services()
    ctx = Ctx(actor=SYSTEM, tenant_id=OPERATOR_TENANT, request_id=f"cli-{uuid.uuid4()}")
    try:
        document = services.command(services.app.publish_document, ctx, ref)
    except DomainError as refused:
        err.print(f"[red]{shown(refused)}[/]")
        raise typer.Exit(1) from None
    out.print(f"{document.ref} published; it takes effect on {document.effective_at:%Y-%m-%d %H:%M %Z}")
