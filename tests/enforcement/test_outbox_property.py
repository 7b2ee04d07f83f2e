"""At least once, one notice per id: whatever mix of refusals and crashes (before sending, after the
server accepted), every notice arrives, and a repeat only ever follows a crash after acceptance."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.outbox.sender import OutboxSender, SmtpConfig
from api.outbox.store import Notice, message_id_for, sqlite_outbox
from tests.support.clock import ManualClock
from tests.support.smtp import smtp_server


class Crash(BaseException):
    """The sender's process dies here."""


class AlwaysMine:
    def acquire(self, name: str) -> bool:
        return True

    def release_all(self) -> None:
        pass


STEPS = st.sampled_from(["ok", "refuse", "crash_before", "crash_after"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(min_value=1, max_value=4), plan=st.lists(STEPS, max_size=12))
def test_every_notice_arrives_and_repeats_only_follow_a_crash_after_acceptance(count: int, plan: list[str]) -> None:
    with smtp_server() as (inbox, port), tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(datetime(2027, 1, 1, tzinfo=UTC))
        store = sqlite_outbox(str(Path(tmp) / "outbox.sqlite"))
        notices = [Notice(uuid4(), "generic", f"n{i}", "body", to_address=f"u{i}@example.com") for i in range(count)]
        for notice in notices:
            store.enqueue(notice, clock.now)
        steps = list(plan)
        crashed_after: Counter[UUID] = Counter()

        def before(notice: Notice) -> None:
            step = steps.pop(0) if steps else "ok"
            if step == "refuse":
                inbox.refuse_next += 1
            elif step == "crash_before":
                raise Crash
            elif step == "crash_after":
                steps.insert(0, "crash_after_now")

        def after(notice: Notice) -> None:
            if steps and steps[0] == "crash_after_now":
                steps.pop(0)
                crashed_after[notice.id] += 1
                raise Crash

        for _ in range(3 * len(plan) + count + 2):  # every pass makes progress or uses up a step
            sender = OutboxSender(store, SmtpConfig("127.0.0.1", port, "ops@example.com", starttls=False),
                                  lambda _: None, AlwaysMine(), clock)  # fmt: skip  # a fresh process each pass
            sender.before_send, sender.after_accept = before, after
            with contextlib.suppress(Crash):
                asyncio.run(sender.run_once())
            clock.advance(hours=2)  # past any backoff
            if all(n.status == "sent" for n in store.all()):
                break
        assert all(n.status == "sent" for n in store.all())
        received = Counter(str(m["Message-ID"]) for m in inbox.messages())
        assert set(received) == {message_id_for(n.id) for n in notices}  # none missing
        for notice in notices:
            assert received[message_id_for(notice.id)] == 1 + crashed_after[notice.id]  # repeats: crashes only
