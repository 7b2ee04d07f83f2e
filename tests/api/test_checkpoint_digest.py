"""The daily checkpoint digest: a tenant's compliance officer receives, over real SMTP, the day's signed
checkpoints of its history; the mail saved as a file is what ``ownllm audit verify --pinned`` takes, and a
rewritten history is caught by it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from api.checkpoint_digest import CheckpointDigest, digest_day
from api.cli_audit import catch_up_ledger
from api.outbox import Mailer, attach_outbox
from api.services import Services, build_services
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from projections.integrity import bundle as bundles
from projections.integrity.export import build_bundle
from projections.integrity.notes import parse_note
from projections.integrity.pinned import notes_in, read_pinned
from projections.ledger_tables import stored_states
from tests.support.clock import ManualClock
from tests.support.smtp import Inbox, smtp_server
from tests.support.terms import TERMS

MORNING = datetime(2027, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def mailing(make_settings: Callable[..., Settings]) -> Iterator[tuple[Services, Mailer, Inbox, ManualClock]]:
    clock = ManualClock(MORNING)
    with smtp_server() as (inbox, port):
        services = build_services(make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False),
                                  clock=clock)  # fmt: skip
        mailer = attach_outbox(services, start_sender=False)
        try:
            yield services, mailer, inbox, clock
        finally:
            mailer.stop()
            services.close()


def _signup(services: Services, slug: str, admin: str) -> tuple[Ctx, object]:
    signed = services.command(services.app.signup, slug=slug, name=slug.title(), admin_name=admin,
                              admin_email=f"{admin.lower()}@{slug}.example", request_id=f"s-{slug}",
                              accept_terms=TERMS)  # fmt: skip
    return Ctx(SYSTEM, signed.tenant_id, f"r-{slug}"), signed


def _join(services: Services, ctx: Ctx, name: str, role: str) -> None:
    invite = services.command(services.app.invite_user, ctx, email=f"{name.lower()}@x.example", role=role)
    services.command(services.app.accept_invite, token=invite.secret, name=name, request_id=f"j-{name}")


def _checkpoint(services: Services) -> None:
    assert services.ledger is not None
    catch_up_ledger(services)
    services.ledger.checkpoint()


def _sent(mailer: Mailer, inbox: Inbox) -> dict[str, EmailMessage]:
    assert mailer.sender is not None
    asyncio.run(mailer.sender.run_once())
    return {str(m["To"]): m for m in inbox.messages()}


def _bundle(services: Services, tenant: str) -> dict[str, bytes]:
    ledger = services.ledger
    assert ledger is not None and ledger.signer is not None
    with ledger.tables.reading() as snapshot:
        made = build_bundle(snapshot, lambda ids: stored_states(services.app.recorder, ids), ledger.origin, tenant,
                            [ledger.signer.verifier.vkey])  # fmt: skip
    return bundles.render(made)


def test_the_days_checkpoints_reach_the_compliance_officer_once_and_pin_the_history(
    mailing: tuple[Services, Mailer, Inbox, ManualClock], tmp_path: Path
) -> None:
    services, mailer, inbox, clock = mailing
    acme, signed = _signup(services, "acme", "Ada")
    _join(services, acme, "Cora", "compliance_officer")
    _signup(services, "globex", "Gil")  # no compliance officer or auditor: its admin hears of it
    _checkpoint(services)
    task = CheckpointDigest(services)

    assert task.run(MORNING.replace(hour=23, minute=59, second=59)) == 0  # the day is not over
    assert task.run(MORNING + timedelta(days=1)) == 2
    assert task.run(MORNING + timedelta(days=1, hours=1)) == 0
    assert CheckpointDigest(services).run(MORNING + timedelta(days=1)) == 0  # another process: queued once
    mails = _sent(mailer, inbox)
    assert sorted(mails) == ["cora@x.example", "gil@globex.example"]  # Ada (acme's admin) has Cora for this
    assert mails["cora@x.example"]["Subject"] == "OwnLLM audit checkpoints for 2027-03-02"

    saved = tmp_path / "digest.txt"
    saved.write_text(mails["cora@x.example"].get_content())
    notes = read_pinned(saved.read_text())
    origins = sorted(parse_note(n).text.split("\n", 1)[0] for n in notes)
    assert len(notes) == 2 and origins[0] != origins[1] and str(signed.tenant_id) in " ".join(origins)

    clock.advance(days=1)
    _join(services, acme, "Dan", "member")  # history grows; the bundle of tomorrow extends what Cora holds
    _checkpoint(services)
    report = bundles.verify_bundle(_bundle(services, str(signed.tenant_id)), notes)
    assert report.ok and (report.pinned_extended, report.pinned_total) == (2, 2), report.lines()

    forged = [n.replace(n.split("\n")[2], "A" * 43 + "=", 1) for n in notes]  # another root under the same size
    assert not bundles.verify_bundle(_bundle(services, str(signed.tenant_id)), forged).ok


def test_a_quiet_tenant_gets_no_mail_and_a_digest_covers_the_last_whole_utc_day(
    mailing: tuple[Services, Mailer, Inbox, ManualClock],
) -> None:
    services, mailer, inbox, clock = mailing
    _signup(services, "acme", "Ada")
    _checkpoint(services)
    clock.advance(days=1)
    _signup(services, "globex", "Gil")
    _checkpoint(services)
    assert CheckpointDigest(services).run(MORNING + timedelta(days=2)) == 1  # only globex's history grew that day
    assert list(_sent(mailer, inbox)) == ["gil@globex.example"]
    assert digest_day(datetime(2027, 3, 4, 0, 0, tzinfo=UTC)) == datetime(2027, 3, 3).date()
    assert digest_day(datetime(2027, 3, 4, 1, 0, tzinfo=timezone(timedelta(hours=5)))) == datetime(2027, 3, 2).date()


def test_notes_are_found_in_any_saved_text_and_only_whole_ones() -> None:
    note = "example.com/log\n12\n" + "Q" * 43 + "=\n\n\u2014 example.com/log AAAAbbbb\n"
    other = "example.com/log/t\n3\n" + "R" * 43 + "=\n\n\u2014 example.com/log AAAAcccc\n\u2014 old BBBB\n"
    mail = f"Hello,\r\n\r\n{note}\r\n{other}\r\nBye\r\n".replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    assert notes_in(mail) == [note, other]
    assert notes_in(note.split("\n\n")[0]) == []  # no signature: not a signed note
    assert read_pinned("not a note") == ["not a note"]  # the verifier then says why it fails
