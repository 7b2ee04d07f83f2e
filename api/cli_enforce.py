"""``ownllm operator``: operator tokens for the operator API (``/api/v1/operator``)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from api.cli_support import cli_services as _services
from api.cli_support import err, out, shown
from domain.errors import DomainError

operator = typer.Typer(help="Operator tokens: the credential of the operator API (not a tenant key).",
                       no_args_is_help=True)  # fmt: skip


@operator.command("create-token")
def create_token(
    name: Annotated[str, typer.Argument(help="The operator's name (registered on its first token)")],
) -> None:
    """Issue an operator token; it is printed once and stored only as a keyed hash."""
    services = _services()
    try:
        issued = services.command(services.app.issue_operator_token, name=name, request_id=f"cli-{uuid.uuid4()}")
    except DomainError as exc:
        err.print(f"[red]{shown(exc.title)}:[/] {shown(exc)}")
        raise typer.Exit(1) from None
    finally:
        services.close()
    out.print(f"operator {shown(name)} ({issued.operator_id}), token {issued.token_id}")
    out.print(issued.secret, markup=False, highlight=False)


@operator.command("revoke-token")
def revoke_token(
    name: Annotated[str, typer.Argument(help="The operator's name")],
    token_id: Annotated[str, typer.Argument(help="The token's id (printed when it was created)")],
) -> None:
    """Stop an operator token working (at once, in every API process)."""
    services = _services()
    try:
        services.command(
            services.app.revoke_operator_token,
            name=name,
            token_id=uuid.UUID(token_id),
            request_id=f"cli-{uuid.uuid4()}",
        )
    except (DomainError, ValueError) as exc:
        err.print(f"[red]refused:[/] {shown(exc)}")
        raise typer.Exit(1) from None
    finally:
        services.close()
    out.print("revoked")


outbox = typer.Typer(help="The e-mail outbox: notices waiting for SMTP, and those sent.", no_args_is_help=True)


@outbox.command("list")
def outbox_list(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 100,
    bodies: Annotated[bool, typer.Option(help="Print the bodies of queued notices (they may hold tokens)")] = False,
) -> None:
    """The notices in the outbox: queued ones (with their bodies on request), sent and dropped ones."""
    from rich.table import Table

    from api.outbox import outbox_store
    from api.settings import SettingsError, load_settings

    try:
        store = outbox_store(load_settings(inference=False, run_projections=False))
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/] {shown(exc)}")
        raise typer.Exit(2) from None
    notices = store.all(limit)
    table = Table("id", "kind", "to", "subject", "status", "attempts", "queued", "sent", "last error")
    for n in notices:
        to = f"user {n.to_user}" if n.to_user else (n.to_address or "")
        created = n.created_at.isoformat(timespec="seconds") if n.created_at else ""
        sent = n.sent_at.isoformat(timespec="seconds") if n.sent_at else ""
        table.add_row(str(n.id), n.kind, shown(to), shown(n.subject), n.status, str(n.attempts), created, sent,
                      shown(n.last_error or ""))  # fmt: skip
    out.print(table)
    if bodies:
        for n in notices:
            if n.status == "queued":
                out.rule(str(n.id))
                out.print(n.body, markup=False, highlight=False)
    if not notices:
        out.print("the outbox is empty")
