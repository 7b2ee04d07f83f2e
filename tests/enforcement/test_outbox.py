"""The e-mail outbox against a real SMTP server (aiosmtpd): what arrives, retries, and crashes mid-send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from api.outbox import Mailer, attach_outbox, generic_notice
from api.outbox.sender import OutboxSender
from api.outbox.store import Notice, message_id_for
from api.services import Services, build_services
from api.settings import Settings
from api.stores import handler_locks
from domain.context import Ctx
from tests.support.clock import ManualClock
from tests.support.smtp import Inbox, smtp_server
from tests.support.stores import holds, store_bytes
from tests.support.terms import TERMS


class Crash(BaseException):
    """The process dies here (nothing after this point runs, nothing catches it)."""


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def mailing(
    make_settings: Callable[..., Settings], clock: ManualClock, smtp: tuple[Inbox, int]
) -> Iterator[tuple[Services, Mailer, Inbox]]:
    """Services whose outbox sends to the test's SMTP server; the test drives the sender by hand."""
    inbox, port = smtp
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, smtp_from="ops@ownllm.test")
    services = build_services(settings, clock=clock)
    mailer = attach_outbox(services, start_sender=False)
    yield services, mailer, inbox
    mailer.stop()
    services.close()


def queued(mailer: Mailer, count: int) -> list[Notice]:
    """Wait for the notice reaction (its own thread) to have queued ``count`` notices."""
    deadline = time.monotonic() + 10
    while len(notices := mailer.store.all()) < count:
        assert time.monotonic() < deadline, notices
        time.sleep(0.02)
    return notices


def send(sender: OutboxSender) -> int:
    return asyncio.run(sender.run_once())


def suspend_acme(services: Services) -> tuple[UUID, UUID]:
    app = services.app
    acme = app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example", request_id="r1")
    operator = Ctx("operator:test", acme.tenant_id, "r2")
    case = services.command(
        app.suspend, operator, kind="tenant", subject_id=acme.tenant_id, reason_code="unpaid_invoice",
        summary="invoice 2027-001 is 45 days overdue",
    )  # fmt: skip
    return acme.tenant_id, case


def test_a_suspension_mails_its_summary_to_the_admin_and_the_body_is_purged_once_sent(
    mailing: tuple[Services, Mailer, Inbox],
) -> None:
    services, mailer, inbox = mailing
    _, case = suspend_acme(services)
    [notice] = queued(mailer, 1)
    assert notice.status == "queued" and notice.to_address is None  # the address is looked up when sending
    assert mailer.sender is not None and send(mailer.sender) == 1
    [(rcpt, message)] = inbox.received
    assert rcpt == ["ada@acme.example"] and message["To"] == "ada@acme.example"
    assert message["From"] == "ops@ownllm.test" and message["Subject"] == "OwnLLM: access suspended"
    assert message["Message-ID"] == message_id_for(notice.id)
    body = message.get_content()
    assert "unpaid invoices" in body and "45 days overdue" in body and str(case) in body and "appeal" in body
    [sent] = mailer.store.all()
    assert sent.status == "sent" and sent.body == "" and sent.sent_at is not None
    assert send(mailer.sender) == 0 and len(inbox.received) == 1  # nothing twice


def test_a_refusing_server_is_retried_with_exponential_backoff(
    mailing: tuple[Services, Mailer, Inbox], clock: ManualClock
) -> None:
    services, mailer, inbox = mailing
    suspend_acme(services)
    queued(mailer, 1)
    assert mailer.sender is not None
    inbox.refuse_next = 2
    assert send(mailer.sender) == 0
    [first] = mailer.store.all()
    assert first.attempts == 1 and first.next_attempt_at is not None and "451" in str(first.last_error)
    assert (first.next_attempt_at - clock.now).total_seconds() == 2
    assert send(mailer.sender) == 0 and mailer.store.all()[0].attempts == 1  # not due yet: not tried
    clock.advance(seconds=2)
    assert send(mailer.sender) == 0
    [second] = mailer.store.all()
    assert second.attempts == 2 and (second.next_attempt_at - clock.now).total_seconds() == 4  # type: ignore[operator]
    clock.advance(seconds=4)
    assert send(mailer.sender) == 1 and len(inbox.received) == 1


def restarted(mailer: Mailer, services: Services, dead: OutboxSender) -> OutboxSender:
    """A new sender on the same outbox, as a new process would start one; the dead one's lock is gone."""
    dead.lock.release_all()  # what the OS does to a killed process's file lock or connection
    return OutboxSender(mailer.store, dead.config, dead.address_of, handler_locks(services.settings), dead.clock)


@pytest.mark.parametrize("crash_point", ["after_accept", "before_send"])
def test_a_restart_mid_send_neither_loses_nor_doubles_a_notice(
    mailing: tuple[Services, Mailer, Inbox], crash_point: str
) -> None:
    services, mailer, inbox = mailing
    suspend_acme(services)
    [notice] = queued(mailer, 1)
    sender = mailer.sender
    assert sender is not None

    def crash(_: Notice) -> None:
        raise Crash

    setattr(sender, crash_point, crash)
    with pytest.raises(Crash):
        send(sender)
    assert mailer.store.all()[0].status == "queued"  # no sent marker either way
    assert send(restarted(mailer, services, sender)) == 1
    delivered = inbox.messages()
    assert len(delivered) == (2 if crash_point == "after_accept" else 1)  # at least once ...
    assert list(inbox.deduplicated()) == [message_id_for(notice.id)]  # ... and one notice, by its Message-ID
    assert mailer.store.all()[0].status == "sent"


def test_without_smtp_notices_stay_in_the_local_outbox(services: Services) -> None:
    mailer = attach_outbox(services, start_sender=False)
    assert mailer.sender is None and not mailer.sends_mail
    suspend_acme(services)
    [notice] = queued(mailer, 1)
    assert notice.status == "queued" and "45 days overdue" in notice.body


def test_invitations_go_by_mail_when_smtp_is_configured(mailing: tuple[Services, Mailer, Inbox]) -> None:
    services, mailer, inbox = mailing
    from litestar.testing import TestClient

    from api.app import create_app

    with TestClient(create_app(services.settings, services)) as client:
        body = {
            "slug": "acme",
            "name": "Acme",
            "admin_name": "Ada",
            "admin_email": "ada@acme.example",
            "accept_terms": TERMS,
        }
        key = client.post("/api/v1/tenants", json=body).json()["api_key"]["secret"]
        answer = client.post("/api/v1/invites", headers={"Authorization": f"Bearer {key}"},
                             json={"email": "Bo@Acme.example", "role": "member"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]  # the admin still gets it
    assert mailer.sender is not None and send(mailer.sender) == 1
    [(rcpt, message)] = inbox.received
    assert rcpt == ["bo@acme.example"] and message["Subject"] == "OwnLLM: you are invited"
    assert token in message.get_content()
    [sent] = mailer.store.all()
    assert sent.kind == "invitation" and sent.body == "" and sent.to_address is None  # purged


def test_one_sender_sends_while_another_process_holds_the_lock(mailing: tuple[Services, Mailer, Inbox]) -> None:
    services, mailer, inbox = mailing
    suspend_acme(services)
    queued(mailer, 1)
    active = mailer.sender
    assert active is not None
    other = OutboxSender(mailer.store, active.config, active.address_of, handler_locks(services.settings), active.clock)
    assert active.lock.acquire("outbox-sender")
    try:
        assert send(other) == 0 and inbox.received == []  # the lock is held elsewhere: this one waits
    finally:
        active.lock.release_all()
    assert send(other) == 1 and len(inbox.received) == 1


def test_the_summary_is_sealed_in_the_events_and_gone_from_the_outbox_once_sent(
    mailing: tuple[Services, Mailer, Inbox],
) -> None:
    services, mailer, _ = mailing
    suspend_acme(services)
    queued(mailer, 1)
    outbox_file = Path(services.settings.sqlite_file).parent / "outbox.sqlite"

    def stored() -> bytes:
        raw = store_bytes(services.settings)
        return raw + outbox_file.read_bytes() if services.settings.persistence == "sqlite" else raw

    assert holds(stored(), "45 days overdue")  # in the queued body, in clear (to be mailed)
    assert mailer.sender is not None and send(mailer.sender) == 1
    assert not holds(stored(), "45 days overdue")  # the event holds it sealed; the outbox purged it
    assert not holds(stored(), "ada@acme.example")  # the address was never in the outbox


def test_a_generic_notice_from_another_part_is_queued_once_and_sent_to_the_user(
    mailing: tuple[Services, Mailer, Inbox],
) -> None:
    services, mailer, inbox = mailing
    acme = services.command(services.app.signup, slug="acme", name="Acme", admin_name="A",
                            admin_email="a@acme.example", request_id="r")  # fmt: skip
    key, subject = f"terms:2027-02:{acme.admin_user_id}", "OwnLLM: new terms on 1 March"
    notice = generic_notice(
        key, subject, "Terms change on 2027-03-01.", tenant_id=acme.tenant_id, to_user=acme.admin_user_id
    )
    assert mailer.queue(notice) and not mailer.queue(notice)
    assert mailer.sender is not None and send(mailer.sender) == 1
    [(rcpt, message)] = inbox.received
    assert rcpt == ["a@acme.example"] and message["Subject"] == "OwnLLM: new terms on 1 March"


def test_a_notice_to_a_removed_user_is_dropped_and_one_to_a_user_not_known_yet_waits(
    mailing: tuple[Services, Mailer, Inbox], clock: ManualClock
) -> None:
    services, mailer, inbox = mailing
    app = services.app
    acme = services.command(app.signup, slug="acme", name="Acme", admin_name="A", admin_email="a@acme.example",
                            request_id="r")  # fmt: skip
    admin = Ctx(f"user:{acme.admin_user_id}", acme.tenant_id, "r")
    invite = services.command(app.invite_user, admin, email="bo@acme.example", role="member")
    joined = services.command(app.accept_invite, token=invite.secret, name="Bo", request_id="r")
    services.command(app.remove_user, admin, joined.user_id, "left")
    gone = generic_notice("gone", "s", "b", to_user=joined.user_id)
    unknown = generic_notice("unknown", "s", "b", to_user=uuid4())
    mailer.queue(gone), mailer.queue(unknown)
    assert mailer.sender is not None and send(mailer.sender) == 0 and inbox.received == []
    status = {n.id: n for n in mailer.store.all()}
    assert status[gone.id].status == "dropped" and status[gone.id].body == ""
    assert status[unknown.id].status == "queued" and status[unknown.id].attempts == 1  # tried again later
