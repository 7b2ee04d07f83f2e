"""``ownllm replay``: a tenant's users, roles, keys and agents as they stood at a past moment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from api.cli_support import cli_services as _services
from api.cli_support import err, out, shown
from domain.ids import tenant_id_for
from projections.replay import replay as replay_directory


def replay(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug")],
    as_of: Annotated[str, typer.Option("--as-of", help="RFC 3339 with a timezone, e.g. 2027-01-31T00:00:00Z")],
) -> None:
    """Rebuild the tenant's directory from events only, as it stood at --as-of (erased: <erased>)."""
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        err.print(f"[red]--as-of must be RFC 3339 with a timezone, e.g. 2027-01-31T00:00:00Z; got {shown(as_of)}[/]")
        raise typer.Exit(2)
    services = _services()
    try:
        tenant_id = tenant_id_for(tenant)
        replayed = replay_directory(services.runner.log, services.app.mapper.to_domain_event, tenant_id, moment)
    finally:
        services.close()
    d = replayed.directory
    if tenant_id not in d.tenants:
        err.print(f"[red]tenant '{shown(tenant)}' did not exist at {shown(as_of)}[/] (log head {replayed.head})")
        raise typer.Exit(1)
    out.print(f"{shown(tenant)} as of {moment.isoformat()}: position {replayed.position} (log head {replayed.head})")
    users = Table("user", "name", "role", "status")
    for u in d.tenant_users(tenant_id):
        users.add_row(str(u.id), shown(u.name), u.role, u.status)
    keys = Table("key", "user", "name", "prefix", "scopes", "status")
    for k in d.tenant_keys(tenant_id):
        expired = k.expires_at is not None and k.expires_at <= moment
        status = "revoked" if k.revoked_at else "expired" if expired else "active"
        keys.add_row(str(k.id), str(k.user_id), shown(k.name), shown(k.prefix), ", ".join(sorted(k.scopes)), status)
    agents = Table("agent", "name", "status")
    for a in d.tenant_agents(tenant_id):
        agents.add_row(str(a.id), shown(a.name), "revoked" if a.revoked_at else "active")
    for table in (users, keys, agents):
        out.print(table)
