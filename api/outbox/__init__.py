"""The e-mail outbox: notices queued durably, sent over SMTP when configured, listed by ``ownllm outbox list``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

from api.outbox.notices import generic_notice
from api.outbox.product_notices import ProductNotices
from api.outbox.reaction import NoticeReaction
from api.outbox.sender import OutboxSender, SmtpConfig, Undeliverable
from api.outbox.store import Notice, SqlOutbox, postgres_outbox, sqlite_outbox
from api.secret_files import private_file
from api.services import Services
from api.settings import Settings
from api.stores import handler_locks
from domain.sealing import ERASED, UNREADABLE
from projections.directory import Directory

__all__ = ["Mailer", "Notice", "attach_outbox", "generic_notice", "outbox_store", "smtp_config"]


def outbox_store(settings: Settings) -> SqlOutbox:
    """The outbox table of this deployment's store."""
    if settings.persistence == "sqlite":
        return sqlite_outbox(str(private_file(Path(settings.sqlite_file).parent / "outbox.sqlite")))
    return postgres_outbox(settings.postgres_dsn, settings.postgres_schema)


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The SMTP settings, or None when no host is set (notices then stay in the local outbox)."""
    if not settings.smtp_host:
        return None
    password = settings.smtp_password
    if settings.smtp_password_file:
        password = Path(settings.smtp_password_file).read_text().rstrip("\r\n")
    return SmtpConfig(settings.smtp_host, settings.smtp_port, settings.smtp_from, settings.smtp_user, password,
                      settings.smtp_starttls)  # fmt: skip


def address_finder(directory: Directory) -> Callable[[UUID], str | None]:
    """A user's address at send time: None while the directory does not know them yet;
    :class:`Undeliverable` once they are removed or erased."""

    def address_of(user_id: UUID) -> str | None:
        user = directory.users.get(user_id)
        if user is None:
            return None
        if user.removed or user.email in (ERASED, UNREADABLE):
            raise Undeliverable("the recipient was removed or erased")
        return user.email

    return address_of


@dataclass
class Mailer:
    """What the rest of the API sees: queue a notice; whether mail goes out at all."""

    store: SqlOutbox
    sender: OutboxSender | None
    clock: Callable[[], datetime]
    base_url: str

    @property
    def sends_mail(self) -> bool:
        """True when SMTP is configured (invitations then go by mail)."""
        return self.sender is not None

    def queue(self, notice: Notice) -> bool:
        """Queue once per notice id, and wake the sender."""
        new = self.store.enqueue(notice, self.clock())
        if self.sender is not None:
            self.sender.wake()
        return new

    def stop(self) -> None:
        """Stop the sender (what is queued stays queued)."""
        if self.sender is not None:
            self.sender.stop()


def attach_outbox(services: Services, start_sender: bool = True) -> Mailer:
    """Queue notices from events in this process's reactions; send them when SMTP is configured."""
    settings, clock = services.settings, services.app.clock
    store = outbox_store(settings)
    config = smtp_config(settings)
    sender = None
    if config is not None:
        sender = OutboxSender(store, config, address_finder(services.directory), handler_locks(settings), clock)
    mailer = Mailer(store, sender, clock, settings.base_url)
    services.reactions.add(
        NoticeReaction(store, services.directory, services.runner.catch_up, clock, settings.base_url,
                       sender.wake if sender is not None else lambda: None)
    )  # fmt: skip
    services.reactions.add(
        ProductNotices(store, services.directory, services.lifecycle, services.runner.catch_up, clock,
                       settings.base_url, sender.wake if sender is not None else lambda: None)
    )  # fmt: skip
    services.outbox = mailer
    if sender is not None and start_sender:
        sender.start()
    return mailer
