"""What every ``ownllm`` command shares: its consoles and the services on the operator's event store."""

from __future__ import annotations

import re
import uuid
from typing import Any
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape

from api.services import Services, build_services
from api.settings import SettingsError, load_settings
from domain.context import SYSTEM, Ctx
from domain.errors import DomainError
from domain.ids import tenant_id_for

out = Console()
err = Console(stderr=True)

# C0/C1 controls (newlines, carriage returns, terminal escapes), Unicode line and paragraph
# separators, and the bidirectional overrides that can make a line read as another.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: object) -> str:
    """Text on one line with its control characters made visible (a newline prints as ``\\n``)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def shown(value: object) -> str:
    """Text from users or agents, safe to print with markup: :func:`visible`, rich markup escaped.

    A name ``[/]`` would otherwise raise rich's ``MarkupError`` (or restyle the output), and a
    newline in a name or reason would forge a line of its own in a listing or the event tail.
    """
    return escape(visible(value))


def cli_services() -> Services:
    """The services on the store named by OWNLLM_*; the server, not the CLI, writes the tracked views."""
    try:
        settings = load_settings(inference=False, run_projections=False)
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/] {shown(exc)}")
        raise typer.Exit(2) from None
    return build_services(settings, start_runner=False)


def tenant_of(services: Services, slug: str) -> UUID:
    """The id of the tenant with this slug; prints the refusal and exits 1 when there is none."""
    tenant_id = tenant_id_for(slug)
    if tenant_id not in services.directory.tenants:
        err.print(f"[red]no tenant with slug '{shown(slug)}'[/]")
        raise typer.Exit(1)
    return tenant_id


def tenant_ctx(services: Services, slug: str) -> Ctx:
    """The operator's command context in the tenant with this slug (exit 1 when there is none)."""
    return Ctx(actor=SYSTEM, tenant_id=tenant_of(services, slug), request_id=f"cli-{uuid.uuid4()}")


def run_command(services: Services, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a command; a refusal is printed with its title and exits 1."""
    try:
        return services.command(fn, *args, **kwargs)
    except DomainError as exc:
        err.print(f"[red]{shown(exc.title)}:[/] {shown(exc)}")
        raise typer.Exit(1) from None
