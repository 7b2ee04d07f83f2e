"""``ownllm-agent``: pair this GPU box with an OwnLLM platform, serve models over NATS, check the machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent import credentials as creds
from agent.pairing import PairingError, pair
from agent.settings import BackendChoice, SettingsError, load_settings

app = typer.Typer(
    help=(
        "ownllm-agent runs models on this machine for an OwnLLM platform.\n\n"
        "1. `ownllm-agent pair --url https://ownllm.example --pairing-key KEY` (once; the key comes "
        "from your tenant admin) stores this agent's NATS credentials.\n\n"
        "2. `ownllm-agent serve --model-dir /models` connects out to NATS (no inbound port) and serves "
        "every model folder there, plus the small built-in SmolLM2 model.\n\n"
        "`ownllm-agent doctor` shows the GPU, driver and which inference engines work here."
    ),
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.command("pair")
def pair_command(
    url: Annotated[str, typer.Option(help="Base URL of the OwnLLM platform, e.g. https://ownllm.example")],
    pairing_key: Annotated[str, typer.Option(help="One-time pairing key from your tenant admin")],
    name: Annotated[str | None, typer.Option(help="A name for this agent (default: the host name)")] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(help="Where to store credentials (default $OWNLLM_AGENT_CREDENTIALS or ~/.config/...)"),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing credentials file")] = False,
) -> None:
    """Pair this machine with the platform and store its NATS credentials (mode 0600)."""
    path = credentials or creds.default_path()
    if path.expanduser().exists() and not force:
        err.print(f"[red]error:[/] {path} already exists; pass --force to replace it")
        raise typer.Exit(1)
    try:
        result = pair(url, pairing_key, name or socket.gethostname())
        saved = creds.save(result, path, force=force)
    except (PairingError, creds.CredentialsError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"paired as agent [bold]{result.agent_id}[/] of tenant [bold]{result.tenant_id}[/]")
    console.print(f"credentials stored in {saved} (mode 0600); next: ownllm-agent serve")


@app.command("serve")
def serve_command(
    backend: Annotated[
        str | None,
        typer.Option(
            help="auto | exllamav3 | exllamav2 | transformers | openai | echo (openai relays to --upstream-url; "
            "echo is a test backend)"
        ),
    ] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Folder of model folders to serve")] = None,
    credentials: Annotated[Path | None, typer.Option(help="Credentials file written by `pair`")] = None,
    nats_url: Annotated[str | None, typer.Option(help="Override the NATS URL from pairing")] = None,
    capacity: Annotated[int | None, typer.Option(help="Jobs run at once (default: the backend's)")] = None,
    queue_limit: Annotated[int | None, typer.Option(help="Jobs that may wait beyond capacity")] = None,
    heartbeat_interval: Annotated[float | None, typer.Option(help="Seconds between heartbeats")] = None,
    no_builtin: Annotated[bool, typer.Option(help="Do not serve the built-in SmolLM2 model")] = False,
    parent_pid: Annotated[
        int | None, typer.Option(help="Stop when process PID is no longer this agent's parent (for a supervisor)")
    ] = None,
    upstream_url: Annotated[
        str | None, typer.Option(help="--backend openai: the local server's base URL, e.g. http://127.0.0.1:8001/v1")
    ] = None,
    upstream_key_file: Annotated[
        Path | None,
        typer.Option(help="A 0600 file holding the upstream's API key (or set OWNLLM_AGENT_UPSTREAM_KEY)"),
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="--backend openai: `discover` (default) or a,b or public=upstream-id,...")
    ] = None,
    upstream_allow_remote: Annotated[
        bool, typer.Option(help="Allow an upstream outside loopback and private networks")
    ] = False,
) -> None:
    """Connect to NATS and serve the models until interrupted (Ctrl-C)."""
    from agent.backends.upstream_config import UpstreamConfigError, from_settings
    from agent.models import ModelError, discover
    from agent.selection import SelectionError, build_backend, choose
    from agent.worker import Worker, WorkerConfig

    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stored = creds.load(credentials or Path(settings.credentials or creds.default_path()))
        requested: BackendChoice = backend or settings.backend  # type: ignore[assignment]
        upstream = None
        if requested == "openai":
            sources = []
            upstream = from_settings(settings, upstream_url, upstream_key_file, models, upstream_allow_remote, capacity)
        else:
            folder = model_dir or (Path(settings.model_dir) if settings.model_dir else None)
            sources = discover(folder, include_builtin=settings.builtin_model and not no_builtin)
        choice = choose(requested, sources)
        for line in choice.passed_over:
            console.print(f"[yellow]passed over[/] {line}")
        shown = upstream.url if upstream else ", ".join(s.id for s in sources) or "-"
        console.print(f"backend: [bold]{choice.engine}[/]; models: {escape(shown)}")
        engine = build_backend(
            choice.engine,
            sources,
            capacity or settings.capacity,
            echo_token_delay_s=settings.echo_token_delay_s,
            upstream=upstream,
        )
        engine.load()
    except (SettingsError, creds.CredentialsError, ModelError, SelectionError, UpstreamConfigError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    config = WorkerConfig(
        agent_id=stored.agent_id,
        tenant_id=stored.tenant_id,
        nats_url=nats_url or settings.nats_url or stored.nats_url,
        nats_user=stored.nats_user or None,
        nats_password=stored.nats_password or None,
        nats_ca_file=settings.nats_ca_file,
        capacity=capacity or settings.capacity,
        queue_limit=queue_limit if queue_limit is not None else settings.queue_limit,
        heartbeat_interval_s=heartbeat_interval or settings.heartbeat_interval_s,
    )
    run_loop(_serve(Worker(engine, config), parent_pid))


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the agent's event loop on uvloop where it is installed (10-25% less of the relay agent's CPU per
    streamed request in bench/upstream.py at 1 client), else on asyncio's own."""
    try:
        import uvloop
    except ImportError:  # Windows, or a box without it: the same agent, a slower loop
        asyncio.run(main)
        return
    uvloop.run(main)


async def _serve(worker: object, parent_pid: int | None = None) -> None:
    """Run the worker until SIGINT/SIGTERM (or its parent ``parent_pid`` is gone), then stop it cleanly."""
    from agent.worker import Worker

    assert isinstance(worker, Worker)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
    watch = asyncio.ensure_future(_stop_when_orphaned(worker, parent_pid)) if parent_pid else None
    await worker.serve_forever()
    if watch is not None:
        watch.cancel()
    worker.backend.unload()


async def _stop_when_orphaned(worker: object, parent_pid: int, poll_s: float = 0.5) -> None:
    """Stop the worker once the process that started us has died (we are re-parented then)."""
    from agent.worker import Worker

    assert isinstance(worker, Worker)
    while os.getppid() == parent_pid:
        await asyncio.sleep(poll_s)
    err.print(f"parent process {parent_pid} is gone: stopping")
    await worker.stop()


@app.command("doctor")
def doctor_command(
    upstream_url: Annotated[
        str | None, typer.Option(help="Also check this OpenAI-compatible server (default OWNLLM_AGENT_UPSTREAM_URL)")
    ] = None,
    upstream_key_file: Annotated[Path | None, typer.Option(help="A 0600 file holding the upstream's key")] = None,
    models: Annotated[str | None, typer.Option(help="As for serve: discover, or a,b or public=upstream-id")] = None,
    upstream_allow_remote: Annotated[bool, typer.Option(help="Allow an upstream outside private networks")] = False,
) -> None:
    """Show the GPU, VRAM, driver, torch version, which inference engines import here, and the upstream server."""
    from agent.doctor import report, upstream_report

    table = Table(title="ownllm-agent doctor", show_header=False)
    rows = report()
    try:
        settings = load_settings()
    except SettingsError as exc:
        rows.append(("settings", str(exc)))
    else:
        if upstream_url or settings.upstream_url or settings.backend == "openai":
            rows += upstream_report(settings, upstream_url, upstream_key_file, models, upstream_allow_remote)
    for key, value in rows:
        table.add_row(escape(key), escape(value))
    console.print(table)


def main() -> None:
    """Entry point of the ``ownllm-agent`` script."""
    app()


if __name__ == "__main__":
    main()
