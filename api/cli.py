"""``ownllm``: run the platform and administer it from the machine that holds the event store."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli_audit import audit, replay
from api.cli_enforce import operator, outbox
from api.cli_legal import legal
from api.cli_lifecycle import exports, policies, tenants_terminate, users_restore
from api.cli_projections import projections
from api.cli_support import cli_services as _services
from api.cli_support import err, out, shown, visible
from api.cli_support import run_command as _run
from api.cli_support import tenant_ctx as _ctx
from api.settings import SettingsError, load_settings
from domain.errors import NotFound
from domain.roles import Role, Scope
from domain.sealing import PersonalData

app = typer.Typer(
    help=(
        "OwnLLM: a private, multi-user, auditable AI service on your own GPU machine.\n\n"
        "Start everything locally with `ownllm serve --demo` (what `make run` does). The other commands "
        "administer the platform directly through the event store named by the OWNLLM_* environment "
        "variables (default: SQLite under ./var); they act as the operator ('system') and are recorded."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)
tenants = typer.Typer(help="Create and list tenants (organisations).", no_args_is_help=True)
users = typer.Typer(help="Invite users into a tenant.", no_args_is_help=True)
keys = typer.Typer(help="Issue and revoke personal API keys.", no_args_is_help=True)
events = typer.Typer(help="Read the event stream (the audit trail's source).", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
app.add_typer(users, name="users")
app.add_typer(keys, name="keys")
app.add_typer(events, name="events")
app.add_typer(projections, name="projections")
app.command("replay")(replay)
app.add_typer(audit, name="audit")
app.add_typer(legal, name="legal")
app.add_typer(operator, name="operator")
app.add_typer(outbox, name="outbox")
app.add_typer(policies, name="policies")
app.add_typer(exports, name="exports")
tenants.command("terminate")(tenants_terminate)
users.command("restore")(users_restore)


@app.command()
def serve(
    demo: Annotated[bool, typer.Option(help="Create a demo tenant, print its admin key, start a CPU agent")] = False,
    host: Annotated[str | None, typer.Option(help="Bind address (default OWNLLM_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default OWNLLM_PORT or 8000)")] = None,
) -> None:
    """Serve the management API (/api/v1), the OpenAI-compatible proxy (/v1) and the docs (/schema)."""
    from api.runtime import serve as run_server

    overrides: dict[str, Any] = {"demo": demo}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/] {shown(exc)}")
        raise typer.Exit(2) from None
    run_server(settings, out)


@tenants.command("create")
def tenants_create(
    slug: Annotated[str, typer.Option(help="Unique lowercase id, 3-40 of a-z 0-9 -")],
    name: Annotated[str, typer.Option(help="Organisation name")],
    admin_name: Annotated[str, typer.Option(help="The first admin's name")],
    admin_email: Annotated[str, typer.Option(help="The first admin's email")],
) -> None:
    """Sign up a tenant and print its admin's API key (shown once)."""
    services = _services()
    result = _run(
        services,
        services.app.signup,
        slug=slug,
        name=name,
        admin_name=admin_name,
        admin_email=admin_email,
        request_id=f"cli-{uuid.uuid4()}",
    )
    out.print(f"tenant [bold]{shown(slug)}[/] created ({result.tenant_id})")
    out.print(f"admin API key (shown once): [bold green]{result.admin_key.secret}[/]")


@tenants.command("list")
def tenants_list() -> None:
    """List tenants."""
    services = _services()
    table = Table("slug", "name", "id", "status", "registered")
    for t in sorted(services.directory.tenants.values(), key=lambda t: t.registered_at):
        status = "suspended" if t.suspended else "active"
        table.add_row(shown(t.slug), shown(t.name), str(t.id), status, t.registered_at.isoformat())
    out.print(table)


@users.command("invite")
def users_invite(
    tenant: Annotated[str, typer.Option(help="Tenant slug")],
    email: Annotated[str, typer.Option(help="Who to invite")],
    role: Annotated[Role, typer.Option(help="Their role")] = Role.MEMBER,
) -> None:
    """Invite an email into a tenant; prints the invite token (shown once, valid 7 days)."""
    services = _services()
    issued = _run(services, services.app.invite_user, _ctx(services, tenant), email=email, role=role.value)
    out.print(f"invite token (shown once, expires {issued.expires_at:%Y-%m-%d %H:%M} UTC):")
    out.print(f"[bold green]{issued.secret}[/]")


@keys.command("issue")
def keys_issue(
    tenant: Annotated[str, typer.Option(help="Tenant slug")],
    email: Annotated[str, typer.Option(help="Email of the user who will own the key")],
    name: Annotated[str, typer.Option(help="A label, e.g. 'laptop'")] = "cli",
    scope: Annotated[list[Scope] | None, typer.Option(help="Repeat for several; default: inference")] = None,
    expires_in_days: Annotated[int | None, typer.Option(help="Expiry in days (default: never)")] = None,
) -> None:
    """Issue a personal API key for a user; prints the secret (shown once)."""
    services = _services()
    ctx = _ctx(services, tenant)
    wanted = email.strip().lower()
    users = services.directory.tenant_users(ctx.tenant_id)
    user = next((u for u in users if u.email == wanted and not u.removed), None)  # a re-invited email: the current one
    if user is None:
        err.print(f"[red]no user with email {shown(email)} in {shown(tenant)}[/]")
        raise typer.Exit(1)
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    scopes = [s.value for s in scope] if scope else [Scope.INFERENCE.value]
    issued = _run(
        services,
        services.app.issue_api_key,
        ctx,
        user_id=user.id,
        name=name,
        scopes=scopes,
        expires_at=expires_at,
    )
    out.print(f"key {issued.id} ({shown(issued.prefix)}...) for {shown(email)}, scopes {shown(', '.join(scopes))}")
    out.print(f"secret (shown once): [bold green]{issued.secret}[/]")


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[uuid.UUID, typer.Argument(help="The key's id (see `GET /api/v1/keys`)")],
    tenant: Annotated[str, typer.Option(help="Tenant slug")],
    reason: Annotated[str, typer.Option(help="Recorded with the event")] = "revoked by operator",
) -> None:
    """Revoke an API key; it is refused from the next request on."""
    services = _services()
    _run(services, services.app.revoke_api_key, _ctx(services, tenant), key_id, reason)
    out.print(f"key {key_id} revoked")


@events.command("tail")
def events_tail(
    limit: Annotated[int, typer.Option(help="How many of the latest events to print")] = 20,
    follow: Annotated[bool, typer.Option(help="Keep printing new events")] = False,
    reveal: Annotated[
        bool, typer.Option(help="Unseal personal data with the subject keys (needs the key store)")
    ] = False,
) -> None:
    """Print the event stream; personal data stays sealed unless --reveal and the subject's key exists."""
    services = _services()
    recorder = services.app.recorder
    last = recorder.max_notification_id() or 0
    position = max(0, last - limit)
    try:
        while True:
            for notification in recorder.select_notifications(position + 1, 500):
                event = services.app.mapper.to_domain_event(notification)
                out.print(_render(notification.id, event, reveal), highlight=False, soft_wrap=True, markup=False)
                position = notification.id
            if not follow:
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


def _render(position: int, event: Any, reveal: bool) -> str:
    """One line per event: position, time, type, aggregate, then its fields."""
    fields = []
    for name, value in vars(event).items():
        if name in {"originator_id", "originator_version", "timestamp", "originator_topic"}:
            continue
        if isinstance(value, PersonalData):
            value = value.value if reveal else ("<erased>" if value.erased else "<sealed>")
        fields.append(f"{name}={visible(value)}")  # the line is printed without markup
    kind = type(event).__qualname__
    return f"{position:>6} {event.timestamp:%Y-%m-%d %H:%M:%S} {kind:<22} {event.originator_id} " + " ".join(fields)


def main() -> None:
    """Entry point of the ``ownllm`` script."""
    try:
        app()
    except NotFound as exc:  # pragma: no cover - commands report their own errors
        err.print(f"[red]{shown(exc)}[/]")
        sys.exit(1)
