"""Appeal windows over arbitrary clocks: filing is accepted up to the deadline and not a second later;
the sweeper records each window's closing once, never a second early."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.appeal_window import AppealWindowSweep
from domain.application import OwnLLM
from domain.context import Caller, Ctx
from domain.errors import Conflict, Expired
from domain.sealing import KeyStore
from domain.suspension import Suspension
from policies.appeals import APPEAL_WINDOW
from tests.support.clock import ManualClock

T0 = datetime(2027, 1, 1, tzinfo=UTC)
WINDOW_S = int(APPEAL_WINDOW.total_seconds())


class MemoryKeys(KeyStore):
    """Subject keys in a dict: these tests are about time, not storage."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[UUID, bytes] = {}

    def _load(self, subject_id: UUID) -> bytes | None:
        return self.stored.get(subject_id)

    def _was_destroyed(self, subject_id: UUID) -> bool:
        return False

    def _insert(self, subject_id: UUID, key: bytes) -> bytes:
        return self.stored.setdefault(subject_id, key)

    def _destroy(self, subject_id: UUID) -> None:
        self.stored.pop(subject_id, None)

    def close(self) -> None:
        pass


def memory_app(clock: ManualClock) -> OwnLLM:
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    return OwnLLM(env, keys=MemoryKeys(), pepper=b"p" * 43, hash_credential=lambda p: p, clock=clock)


@dataclass
class Case:
    id: UUID
    tenant_id: UUID
    appeal_until: datetime
    ctx: Ctx


def suspended(app: OwnLLM, clock: ManualClock, slug: str) -> Case:
    signed = app.signup(slug=slug, name="T", admin_name="A", admin_email="a@t.example", request_id="r")
    operator = Ctx("operator:test", signed.tenant_id, "r")
    case_id = app.suspend(operator, kind="tenant", subject_id=signed.tenant_id, reason_code="abuse", summary="s")
    admin = Ctx(f"key:{signed.admin_key.id}", signed.tenant_id, "r", Caller(signed.admin_user_id, "admin", frozenset()))
    return Case(case_id, signed.tenant_id, clock.now + APPEAL_WINDOW, admin)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset_s=st.integers(min_value=-3, max_value=3), micro=st.booleans())
def test_an_appeal_is_accepted_until_the_deadline_and_refused_from_it_naming_it(offset_s: int, micro: bool) -> None:
    clock = ManualClock(T0)
    app = memory_app(clock)
    case = suspended(app, clock, "late")
    clock.now = case.appeal_until + timedelta(seconds=offset_s, microseconds=-1 if micro else 0)
    if clock.now < case.appeal_until:
        app.file_appeal(case.ctx, suspension_id=case.id, statement="please")
        with pytest.raises(Conflict, match="already filed"):
            app.file_appeal(case.ctx, suspension_id=case.id, statement="again")
    else:
        with pytest.raises(Expired, match=re.escape(case.appeal_until.isoformat())):
            app.file_appeal(case.ctx, suspension_id=case.id, statement="please")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    imposed=st.lists(st.integers(min_value=0, max_value=5 * 86400), min_size=1, max_size=4),
    sweeps=st.lists(st.integers(min_value=0, max_value=WINDOW_S + 6 * 86400), min_size=1, max_size=8),
    jitter=st.integers(min_value=-2, max_value=2),
)
def test_the_sweeper_closes_each_window_once_and_never_a_second_early(
    imposed: list[int], sweeps: list[int], jitter: int
) -> None:
    clock = ManualClock(T0)
    app = memory_app(clock)
    cases: list[Case] = []
    for n, at in enumerate(sorted(imposed)):
        clock.now = T0 + timedelta(seconds=at)
        cases.append(suspended(app, clock, f"tenant-{n}"))
    # sweep right around every deadline as well as at random instants, in time order, each one twice
    times = sorted(
        {T0 + timedelta(seconds=s) for s in sweeps} | {c.appeal_until + timedelta(seconds=jitter) for c in cases}
    )
    sweep = AppealWindowSweep(app.close_appeal_window, lambda: cases)  # a read model that never catches up
    closed_at: dict[UUID, datetime] = {}
    for now in times:
        emitted = sweep.run(now) + sweep.run(now)
        newly = [c for c in cases if c.id not in closed_at and app.repository.get(c.id).window_closed]
        assert emitted == len(newly)
        for case in newly:
            assert now >= case.appeal_until, "closed before its deadline"
            closed_at[case.id] = now
    for case in cases:
        closings = [e for e in app.events.get(case.id) if isinstance(e, Suspension.AppealWindowClosed)]
        due = [t for t in times if t >= case.appeal_until]
        assert len(closings) == (1 if due else 0)
        if due:
            assert closed_at[case.id] == due[0]  # at the first sweep from the deadline on, not later
