"""A real SMTP server for tests (aiosmtpd) that keeps what it receives, and can refuse for a while."""

from __future__ import annotations

import contextlib
import email
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Inbox:
    """Every accepted message with its envelope recipients; ``refuse_next`` answers 451 that many times."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    refuse_next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return "451 4.3.0 try again later"
            message = email.message_from_bytes(envelope.content, policy=default)
            self.received.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [m for _, m in self.received]

    def deduplicated(self) -> dict[str, EmailMessage]:
        """What a receiver keeps after dropping repeats by Message-ID."""
        return {str(m["Message-ID"]): m for m in self.messages()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """An aiosmtpd server on a free loopback port, without TLS; yields its inbox and port."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
