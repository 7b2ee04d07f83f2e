"""A sender process that is killed (SIGKILL, by itself) at a chosen point: before sending, or after
the SMTP server accepted a notice and before the sent marker. Run by test_outbox_kill.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from api.outbox import outbox_store, smtp_config
from api.outbox.sender import OutboxSender
from api.settings import load_settings
from api.stores import handler_locks


def main(point: str) -> None:
    settings = load_settings()
    config = smtp_config(settings)
    assert config is not None
    sender = OutboxSender(outbox_store(settings), config, lambda _: None, handler_locks(settings))

    def die(_: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(sender, point, die)
    asyncio.run(sender.run_once())


if __name__ == "__main__":
    main(sys.argv[1])
