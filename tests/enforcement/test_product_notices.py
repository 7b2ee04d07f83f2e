"""The notices the terms promise beyond suspensions: a terms change with its date (§18), a suspected shared
key (§3), a deletion scheduled (§11) and the contract ended by a rejection, mailed over real SMTP."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from api.outbox import Mailer, attach_outbox
from api.outbox.store import Notice
from api.services import Services, build_services
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from legal import documents
from tests.support.clock import ManualClock
from tests.support.smtp import Inbox, smtp_server
from tests.support.terms import TERMS


@pytest.fixture
def mailing(
    make_settings: Callable[..., Settings], clock: ManualClock, tmp_path: Path
) -> Iterator[tuple[Services, Mailer, Inbox]]:
    folder = tmp_path / "legal"
    shutil.copytree(Path(documents.__file__).with_name("documents"), folder)
    effective = clock.now + timedelta(days=31)
    (folder / "terms-2.md").write_text(
        f"---\ndocument: terms\nversion: 2\ntitle: T\npublished_at: {clock.now.isoformat()}\n"
        f"effective_at: {effective.isoformat()}\nmaterial: true\n---\n# v2\n"
    )
    with smtp_server() as (inbox, port):
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, legal_dir=str(folder))
        services = build_services(settings, clock=clock)
        mailer = attach_outbox(services, start_sender=False)
        try:
            yield services, mailer, inbox
        finally:
            mailer.stop()
            services.close()


def _queued(mailer: Mailer, count: int) -> list[Notice]:
    deadline = time.monotonic() + 10
    while len(notices := mailer.store.all()) < count:
        assert time.monotonic() < deadline, notices
        time.sleep(0.02)
    return notices


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_terms_sharing_deletion_and_rejection_each_reach_the_admins_once(mailing: tuple[Services, Mailer, Inbox]):
    services, mailer, inbox = mailing
    app = services.app
    acme = services.command(app.signup, slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                            request_id="r1", accept_terms=TERMS)  # fmt: skip
    bob = services.command(app.signup, slug="globex", name="Globex", admin_name="Gil",
                           admin_email="gil@globex.example", request_id="r2", accept_terms=TERMS)  # fmt: skip

    services.command(app.publish_document, Ctx(SYSTEM, acme.tenant_id, "p"), "terms-2")
    services.command(app.report_key_sharing, acme.admin_key.id, 7, 2, 86_400, "s1")
    _queued(mailer, 3)
    assert mailer.sender is not None and asyncio.run(mailer.sender.run_once()) == 3
    by_to = {(tuple(rcpt), m["Subject"]) for rcpt, m in inbox.received}
    assert (("ada@acme.example",), "OwnLLM: an API key looks shared") in by_to
    terms = [m for _, m in inbox.received if m["Subject"].startswith("OwnLLM: new terms")]
    assert sorted(m["To"] for m in terms) == ["ada@acme.example", "gil@globex.example"]  # every tenant's admins
    body = terms[0].get_content()
    assert "terms-2" in body and "/api/v1/terms/terms-2/reject" in body and "takes effect on" in body

    services.command(app.reject_terms, Ctx(f"key:{bob.admin_key.id}", bob.tenant_id, "r3"), "terms-2")
    _queued(mailer, 4)
    asyncio.run(mailer.sender.run_once())
    ended = [m for _, m in inbox.received if m["Subject"] == "OwnLLM: contract ended"]
    assert [m["To"] for m in ended] == ["gil@globex.example"]
    assert asyncio.run(mailer.sender.run_once()) == 0  # nothing twice


@pytest.mark.parametrize("persistence", ["sqlite"])
def test_a_price_change_is_mailed_to_each_affected_tenants_admins_once(
    mailing: tuple[Services, Mailer, Inbox], clock: ManualClock
):
    from api.price_notices import PriceNotices

    services, mailer, inbox = mailing
    app = services.app
    acme = services.command(app.signup, slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                            request_id="r1", accept_terms=TERMS)  # fmt: skip
    services.command(app.set_billing_mode, acme.tenant_id, "credits")
    services.command(app.schedule_price_change, "echo", 50_000_000, 150_000_000, clock.now + timedelta(days=31))
    task = PriceNotices(services)
    deadline = time.monotonic() + 10
    while (handed := task.run(clock.now)) == 0:
        assert time.monotonic() < deadline, "no pending price notice"
        time.sleep(0.05)
    assert handed == 1 and task.run(clock.now) == 0  # marked sent: handed over once
    assert mailer.sender is not None and asyncio.run(mailer.sender.run_once()) == 1
    [(rcpt, message)] = inbox.received
    assert rcpt == ["ada@acme.example"] and message["Subject"].startswith("OwnLLM: echo price change")
    assert "$0.50 per million input tokens and $1.50 per million output tokens" in message.get_content()
