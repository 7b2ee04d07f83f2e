"""``ownllm replay`` (a tenant as it stood at a past moment) and ``ownllm audit`` (export, verify, checkpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.cli_support import cli_services as _services
from api.cli_support import err, out, shown, tenant_of
from api.ledger_keys import public_keys
from api.services import Services
from domain.ids import tenant_id_for
from projections.integrity.bundle import BundleError, read_pinned, verify_bundle, write
from projections.integrity.checkpoints import open_checkpoint
from projections.integrity.export import ExportError, build_bundle
from projections.integrity.ledger_rows import GLOBAL
from projections.integrity.note_keys import NoteError, Verifier
from projections.integrity.verify import verify_full_log
from projections.ledger_tables import stored_states
from projections.log import recorded
from projections.replay import replay as replay_directory
from projections.runner import BATCH


def replay(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug")],
    as_of: Annotated[str, typer.Option("--as-of", help="RFC 3339 with a timezone, e.g. 2027-01-31T00:00:00Z")],
) -> None:
    """Rebuild the tenant's directory from events only, as it stood at --as-of (erased: <erased>)."""
    moment = _moment("--as-of", as_of)
    assert moment is not None
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


audit = typer.Typer(
    help="The integrity ledger: export a tenant's verifiable bundle, verify one offline, sign a checkpoint.",
    no_args_is_help=True,
)


def _moment(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        err.print(f"[red]{option} must be RFC 3339 with a timezone, e.g. 2027-01-31T00:00:00Z; got {shown(value)}[/]")
        raise typer.Exit(2)
    return moment


def catch_up_ledger(services: Services) -> int:
    """Bring the ledger to the head of the log from this process (the server may be doing it too: exactly once)."""
    ledger = services.ledger
    assert ledger is not None
    log, decode = services.runner.log, services.app.mapper.to_domain_event
    head = log.head()
    while ledger.position < head:
        after = ledger.position
        batch = log.read(after, head, (), BATCH)
        ledger.process_records([recorded(n, decode) for n in batch], head if len(batch) < BATCH else batch[-1].id)
        if ledger.position == after:
            break
    return ledger.position


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Append what the ledger has not yet, then sign checkpoints of the global and each grown tenant tree."""
    services = _services()
    try:
        catch_up_ledger(services)
        assert services.ledger is not None
        size = services.ledger.checkpoint()
    finally:
        services.close()
    out.print(f"checkpoint of {services.ledger.origin} at size {size}", markup=False)


@audit.command("export")
def audit_export(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug")],
    out_dir: Annotated[Path, typer.Argument(help="The bundle directory to write (new or empty)")],
    since: Annotated[str | None, typer.Option("--from", help="Events at or after (RFC 3339)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Events before (RFC 3339)")] = None,
) -> None:
    """Write the tenant's bundle: events as stored, proofs in both trees, checkpoints, public keys, a manifest."""
    start, end = _moment("--from", since), _moment("--to", until)
    services = _services()
    try:
        tenant_id = tenant_of(services, tenant)
        catch_up_ledger(services)
        ledger = services.ledger
        assert ledger is not None and ledger.signer is not None
        ledger.checkpoint()
        keys = public_keys(ledger.signer, services.settings)
        recorder = services.app.recorder
        with ledger.tables.reading() as snapshot:
            bundle = build_bundle(
                snapshot, lambda ids: stored_states(recorder, ids), ledger.origin, str(tenant_id), keys, start, end
            )
        write(bundle, out_dir)
    except (ExportError, BundleError) as exc:
        err.print(f"[red]{shown(exc)}[/]")
        raise typer.Exit(1) from None
    finally:
        services.close()
    out.print(f"{len(bundle.events)} events of {shown(tenant)} written to {shown(out_dir)}")


@audit.command("verify")
def audit_verify(
    bundle: Annotated[Path | None, typer.Argument(help="A bundle directory (not with --live)")] = None,
    pinned: Annotated[list[Path] | None, typer.Option("--pinned", help="A checkpoint saved earlier (repeat)")] = None,
    key: Annotated[list[str] | None, typer.Option("--key", help="Trust this vkey, not the bundle's (repeat)")] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Verify the database's whole log against its checkpoints")
    ] = False,
) -> None:
    """Verify a bundle offline (no database, no network), or with --live the database's whole log."""
    if live == (bundle is not None):
        err.print("[red]give a bundle directory, or --live[/]")
        raise typer.Exit(2)
    if live:
        lines, ok = _verify_live(key)
    else:
        assert bundle is not None
        notes = [note for path in pinned or [] for note in read_pinned(path.read_text())]
        report = verify_bundle(bundle, notes, key)
        lines, ok = report.lines(), report.ok
        if key is None:
            lines.append("(public keys taken from the bundle: pass --key with the keys you trust)")
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if ok else 1)


def _verify_live(keys: list[str] | None) -> tuple[list[str], bool]:
    """Every stored event from position 0 against the signed global checkpoints, in one pass."""
    services = _services()
    try:
        ledger = services.ledger
        assert ledger is not None and ledger.signer is not None
        trusted = keys if keys is not None else public_keys(ledger.signer, services.settings)
        return verify_database(services, trusted, ledger.origin)
    finally:
        services.close()


def verify_database(services: Services, keys: list[str], origin: str) -> tuple[list[str], bool]:
    """The --live check: the event store's bytes, in notification order, against every signed global checkpoint."""
    ledger = services.ledger
    assert ledger is not None
    with ledger.tables.reading() as snapshot:
        notes = [row.note for row in snapshot.checkpoints(GLOBAL)]
    verifiers = [Verifier.parse(k) for k in keys]
    checkpoints, problems = [], []
    for note in notes:
        try:
            checkpoints.append(open_checkpoint(note, verifiers, origin)[0])
        except NoteError as exc:
            problems.append(f"checkpoint: {exc}")
    log = services.runner.log

    def stored() -> Iterator[bytes]:
        after, head = 0, log.head()
        while after < head:
            batch = log.read(after, head, (), BATCH)
            if not batch:
                return
            yield from (n.state for n in batch)
            after = batch[-1].id

    read, found = verify_full_log(stored(), checkpoints)
    newest = max((c.size for c in checkpoints), default=0)
    unsigned = f" ({read - newest} after the newest checkpoint, not yet signed)" if read > newest else ""
    lines = [
        f"{len(checkpoints) - len(found)}/{len(notes)} checkpoints valid",
        f"{min(newest, read) if not found else 0}/{read} events verified{unsigned}",
    ]
    lines += problems + [f"position {p.position}: {p.what}" for p in found]
    first = min((p.position for p in found if p.position is not None), default=None)
    if first is not None:
        lines.append(f"FAILED: first bad position {first}")
    snapshots, differ = services.app.mismatched_snapshots(list(services.directory.tenants))
    lines.append(f"{snapshots - len(differ)}/{snapshots} credit-ledger snapshots match their events")
    lines += differ
    return lines, not problems and not found and not differ and bool(checkpoints)
