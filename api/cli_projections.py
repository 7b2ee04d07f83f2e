"""``ownllm projections``: rebuild a tracked read model, and show where every reader of the log stands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli_support import cli_services as _services
from api.cli_support import err, out, shown
from api.services import Services

projections = typer.Typer(
    help="Rebuild read models from the event stream and show where they stand.", no_args_is_help=True
)


@projections.command("rebuild")
def projections_rebuild(
    name: Annotated[str, typer.Argument(help="The tracked projection to rebuild (see `projections status`)")],
) -> None:
    """Drop a tracked projection and replay the events it reads into it, with a progress bar."""
    from rich.progress import Progress

    from projections.rebuild import rebuild
    from projections.registry import UnknownReadModel

    services = _services()
    try:
        model = services.read_models.tracked_named(name)
    except UnknownReadModel as exc:
        err.print(shown(exc), style="red")
        raise typer.Exit(2) from None
    with Progress(console=out) as progress:
        task = progress.add_task(f"rebuilding {shown(name)}", total=services.runner.log.head())

        def advance(position: int, head: int) -> None:
            progress.update(task, completed=position, total=head)

        replayed, head = rebuild(model, services.runner.log, services.app.mapper.to_domain_event, advance)
    out.print(f"{shown(name)}: replayed {replayed} events (log head {head})")


@projections.command("run")
def projections_run(
    parent_pid: Annotated[int | None, typer.Option(help="Stop when this process is gone (ownllm serve's pid)")] = None,
) -> None:
    """Keep the tracked read models (usage, audit log, integrity ledger) current until stopped.

    `ownllm serve` starts this itself (OWNLLM_PROJECTOR=process); run it by hand when the API
    processes run with OWNLLM_RUN_PROJECTIONS=false (exactly one should run per event store).
    """
    from api.projector import run_until_stopped

    run_until_stopped(parent_pid)


@projections.command("status")
def projections_status() -> None:
    """Each read model's and reaction's position, the head of the event log, the lag and the last failure.

    Tracked projections and reactions show their stored position and the failures recorded by the
    process that runs them; in-memory read models (rebuilt by every process at start) show this
    command's own process. A reaction is listed once it has a position or a failure on record.
    Records a read model set aside as uncountable (quarantined) are counted below the table.
    """
    from projections.status import collect_status

    services = _services()
    head = services.runner.log.head()
    sources = services.read_models.sources(lambda: services.runner.position)
    failures = services.runner.failure_log.load() if services.runner.failure_log else {}
    rows = collect_status([*sources, *_reaction_sources(services, failures)], head, failures)
    table = Table("read model", "kind", "position", "head", "lag", "failures", "last error")
    for row in rows:
        error = "" if row.last_error is None else row.last_error
        if row.last_error_at is not None:
            error += f" at {row.last_error_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        table.add_row(
            shown(row.name),
            shown(row.kind),
            str(row.position),
            str(row.head),
            str(row.lag),
            str(row.failures),
            shown(error),
        )
    out.print(table)
    for line in quarantine_lines(services.read_models.tracked):
        out.print(shown(line), style="yellow")


def quarantine_lines(tracked: Mapping[str, Any], shown: int = 10) -> list[str]:
    """One line per tracked read model that set records aside (not counted), with their notification ids."""
    lines = []
    for name, model in sorted(tracked.items()):
        quarantined = model.quarantined() if hasattr(model, "quarantined") else []
        if quarantined:
            ids = ", ".join(str(n) for n, _ in quarantined[:shown]) + (", ..." if len(quarantined) > shown else "")
            lines.append(f"{name}: {len(quarantined)} records quarantined, not counted (notification ids {ids})")
    return lines


def _reaction_sources(services: Services, failures: Mapping[str, Any]) -> list[Any]:
    """Status sources of the reactions: those this process runs, and those known to the composition root
    or with a failure on record that have run somewhere (a stored position)."""
    from api.reactions import NatsAuthorizationResync
    from projections.status import Source

    reactions = services.reactions
    running = {r.name for r in reactions.reactions}
    known = running | {NatsAuthorizationResync.name} | (set(failures) - set(services.read_models.names()))

    def position_of(name: str) -> Callable[[], int]:
        return lambda: reactions.position(name)

    return [
        Source(name, "reaction", position_of(name))
        for name in sorted(known)
        if name in running or name in failures or reactions.position(name)
    ]
