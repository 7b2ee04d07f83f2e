"""Sends queued notices over SMTP (aiosmtplib): at least once, deduplicated by notice id.

Order per notice: send, then record it sent. A crash between the two sends it again on the next
run with the same ``Message-ID`` (derived from the notice id), which is how the receiving side
recognises the repeat; a crash before the server accepted it leaves it queued. Failures wait
with exponential backoff. One sender runs across API processes (the handler lock ``outbox-sender``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from uuid import UUID

import aiosmtplib

from api.outbox.store import Notice, Outbox, message_id_for
from projections.reactions import HandlerLock

log = logging.getLogger(__name__)
LOCK_NAME = "outbox-sender"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and as whom to send."""

    host: str
    port: int
    sender: str
    user: str = ""
    password: str = ""
    starttls: bool = True
    timeout_s: float = 30.0


class Undeliverable(Exception):
    """The notice has no address any more (its recipient was erased or removed): it is dropped."""


def backoff(attempts: int, first_s: float = 2.0, longest_s: float = 3600.0) -> timedelta:
    """The wait after ``attempts`` failed attempts: doubling from ``first_s``, at most ``longest_s``."""
    return timedelta(seconds=min(longest_s, first_s * 2 ** max(0, attempts - 1)))


def compose(notice: Notice, address: str, sender: str, now: datetime) -> EmailMessage:
    """The e-mail of a notice; its Message-ID is the notice's."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    message["Subject"] = notice.subject
    message["Message-ID"] = message_id_for(notice.id)
    message["Date"] = format_datetime(now)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(notice.body)
    return message


class OutboxSender:
    """Sends due notices; ``run_once`` is one pass, ``start`` runs passes in a thread of its own."""

    def __init__(
        self,
        outbox: Outbox,
        config: SmtpConfig,
        address_of: Callable[[UUID], str | None],
        lock: HandlerLock,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.config = config
        self.address_of = address_of
        self.lock = lock
        self.clock = clock
        self.interval_s = interval_s
        self.before_send: Callable[[Notice], None] = lambda notice: None  # crash points for tests
        self.after_accept: Callable[[Notice], None] = lambda notice: None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def run_once(self) -> int:
        """Send what is due now (if this process holds the sender's lock); returns how many were accepted."""
        if not self.lock.acquire(LOCK_NAME):
            return 0
        accepted = 0
        for notice in self.outbox.due(self.clock()):
            if await self._send(notice):
                accepted += 1
        return accepted

    async def _send(self, notice: Notice) -> bool:
        now = self.clock()
        try:
            address = notice.to_address or (self.address_of(notice.to_user) if notice.to_user else None)
        except Undeliverable as exc:
            self.outbox.dropped(notice.id, now, str(exc))
            return False
        if not address:  # a user this process does not know yet (its directory lags): later
            self.outbox.failed(notice.id, "recipient not known yet", now + backoff(notice.attempts + 1))
            return False
        self.before_send(notice)
        try:
            await aiosmtplib.send(
                compose(notice, address, self.config.sender, now),
                hostname=self.config.host,
                port=self.config.port,
                username=self.config.user or None,
                password=self.config.password or None,
                start_tls=self.config.starttls,
                timeout=self.config.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            wait = backoff(notice.attempts + 1)
            log.warning("notice %s not sent (%s); next try in %s", notice.id, type(exc).__name__, wait)
            self.outbox.failed(notice.id, f"{type(exc).__name__}: {getattr(exc, 'code', '')}", now + wait)
            return False
        self.after_accept(notice)
        self.outbox.sent(notice.id, self.clock())
        return True

    def wake(self) -> None:
        """Send soon (a notice was queued)."""
        self._wake.set()

    def start(self) -> None:
        """Send in a background thread until :meth:`stop`."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._loop()), name="outbox-sender", daemon=True)
        self._thread.start()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:  # the store unreachable, ...: try again on the next pass
                log.exception("the outbox sender failed a pass; retrying")
            await asyncio.to_thread(self._wake.wait, self.interval_s)
            self._wake.clear()

    def stop(self) -> None:
        """Stop after the current pass and give the lock back."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout_s + 5)
        self.lock.release_all()
