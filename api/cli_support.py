"""What every ``ownllm`` command shares: its consoles and the services on the operator's event store."""

from __future__ import annotations

import typer
from rich.console import Console

from api.services import Services, build_services
from api.settings import SettingsError, load_settings

out = Console()
err = Console(stderr=True)


def cli_services() -> Services:
    """The services on the store named by OWNLLM_*; the server, not the CLI, writes the tracked views."""
    try:
        settings = load_settings(inference=False, run_projections=False)
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None
    return build_services(settings, start_runner=False)
