"""A sender process killed with SIGKILL mid-send: the next sender neither loses nor doubles the notice
beyond at-least-once (a repeat carries the same Message-ID, so the receiver keeps one)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from api.outbox import outbox_store, smtp_config
from api.outbox.sender import LOCK_NAME, OutboxSender
from api.outbox.store import Notice, message_id_for
from api.settings import Settings
from api.stores import handler_locks
from tests.support.smtp import smtp_server

REPO = Path(__file__).resolve().parents[2]


def env_of(settings: Settings) -> dict[str, str]:
    names = ("var_dir", "persistence", "postgres_dsn", "postgres_schema", "smtp_host", "smtp_port", "smtp_starttls")
    return {f"OWNLLM_{n.upper()}": str(getattr(settings, n)).lower() if isinstance(getattr(settings, n), bool)
            else str(getattr(settings, n)) for n in names}  # fmt: skip


@pytest.mark.parametrize("point", ["after_accept", "before_send"])
def test_a_killed_sender_process_neither_loses_nor_doubles_a_notice(
    make_settings: Callable[..., Settings], point: str
) -> None:
    with smtp_server() as (inbox, port):
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        store = outbox_store(settings)
        notices = [Notice(uuid4(), "generic", f"notice {n}", f"body {n}", to_address=f"u{n}@example.com")
                   for n in range(3)]  # fmt: skip
        for notice in notices:
            store.enqueue(notice, datetime.now(UTC))
        child = subprocess.run(
            [sys.executable, str(REPO / "tests/enforcement/outbox_child.py"), point],
            env={**os.environ, "PYTHONPATH": str(REPO), **env_of(settings)}, capture_output=True, timeout=60,
        )  # fmt: skip
        assert child.returncode == -signal.SIGKILL, child.stderr.decode(errors="replace")
        assert all(n.status == "queued" for n in store.all())  # killed before any sent marker
        assert len(inbox.messages()) == (1 if point == "after_accept" else 0)

        config = smtp_config(settings)
        assert config is not None
        restarted = OutboxSender(store, config, lambda _: None, handler_locks(settings))
        try:
            assert restarted.lock.acquire(LOCK_NAME)  # the killed process's lock died with it
            assert asyncio.run(restarted.run_once()) == 3
        finally:
            restarted.lock.release_all()
        assert sorted(inbox.deduplicated()) == sorted(message_id_for(n.id) for n in notices)  # none missing
        assert len(inbox.messages()) == (4 if point == "after_accept" else 3)  # the one repeat, at most
        assert all(n.status == "sent" for n in store.all())
