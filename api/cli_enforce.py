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
