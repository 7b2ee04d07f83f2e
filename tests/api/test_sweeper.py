"""The policy sweeper over clocks and sequences: every due event once, nothing a second early."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.cli import app as cli
from api.services import Services, build_services
from api.settings import load_settings
from api.sweep_tasks import build_sweeper
from api.sweeper import Sweeper, SweeperBusy
from domain.context import SYSTEM, Ctx
from domain.data_export import DataExport
from domain.deletion import Deletion
from policies.lifecycle import DELETION_WINDOW, EXPORT_LINK_LIFETIME
from tests.support.clock import ManualClock

T0 = datetime(2027, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
TICK = timedelta(microseconds=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Sweeper, ManualClock]]:
    clock = ManualClock(T0)
    var = tmp_path_factory.mktemp("sweeper") / "var"
    services = build_services(load_settings({}, var_dir=str(var), inference=False, nats_public_url="tls://n:4222"),
                              start_runner=False, clock=clock)  # fmt: skip
    sweeper = build_sweeper(services)
    services.sweeper = sweeper
    yield services, sweeper, clock
    services.close()


def _events(services: Services, cls: type, originator: UUID) -> int:
    """How many ``cls`` events the log holds for ``originator``."""
    log = services.runner.log
    found = log.read(0, log.head(), (get_topic(cls),), 100_000)
    return sum(1 for n in found if n.originator_id == originator)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.integers(0, 40 * 24 * 3600), min_size=1, max_size=3),
    around=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([-SECOND, -TICK, timedelta(0), TICK, SECOND])),
        min_size=1,
        max_size=6,
    ),
    extra=st.lists(st.integers(0, 90 * 24 * 3600), max_size=3),
)
def test_every_due_deletion_and_expiry_fires_once_and_never_early(
    world: tuple[Services, Sweeper, ManualClock], requests: list[int], around: list[tuple[int, timedelta]],
    extra: list[int],
) -> None:  # fmt: skip
    services, sweeper, clock = world
    start = clock.now = clock.now + timedelta(days=400)  # a fresh stretch of time for each example
    signed = services.command(services.app.signup, slug=f"t{uuid.uuid4().hex[:10]}", name="T", admin_name="A",
                              admin_email="a@t.example", request_id="r")  # fmt: skip
    ctx = Ctx(SYSTEM, signed.tenant_id, "r")
    export_id = services.command(services.app.request_export, ctx, scope="tenant", subject_id=None)
    sweeper.run_once(start)  # builds the export: its link lives 24 h from ``start``
    due: dict[UUID, datetime] = {}
    for offset in sorted(requests):
        clock.now = start + timedelta(seconds=offset)
        invite = services.command(services.app.invite_user, Ctx(SYSTEM, signed.tenant_id, f"i{offset}"),
                                  email=f"u{offset}-{uuid.uuid4().hex[:6]}@t.example", role="member")  # fmt: skip
        joined = services.command(services.app.accept_invite, token=invite.secret, name="U", request_id="j")
        due[joined.user_id] = services.command(services.app.request_deletion, ctx, joined.user_id, "admin").due_at
        assert due[joined.user_id] == clock.now + DELETION_WINDOW
    dues = list(due.values())
    instants = [dues[i % len(dues)] + delta for i, delta in around]
    instants += [start + EXPORT_LINK_LIFETIME - TICK, start + EXPORT_LINK_LIFETIME]
    instants += [start + timedelta(seconds=s) for s in extra]
    for now in sorted(instants):
        clock.now = max(clock.now, now)
        sweeper.run_once(now)
        assert sum(sweeper.run_once(now).values()) == 0  # twice at the same instant: nothing the second time
        for user_id, due_at in due.items():
            erased = services.lifecycle.deletions[Deletion.create_id(user_id, 0)].status == "erased"
            assert erased == (now >= due_at), now - due_at
            assert _events(services, Deletion.SubjectErased, Deletion.create_id(user_id, 0)) == int(erased)
        expired = services.lifecycle.exports[export_id].status == "expired"
        assert expired == (now >= start + EXPORT_LINK_LIFETIME)
        assert _events(services, DataExport.Expired, export_id) == int(expired)
        assert Path(services.settings.exports_path, f"{export_id}.zip").exists() != expired


def test_one_process_sweeps_at_a_time(world: tuple[Services, Sweeper, ManualClock]) -> None:
    services, sweeper, _ = world
    sweeper.run_once()  # this process holds the lock now
    other = build_sweeper(services)
    with pytest.raises(SweeperBusy):
        other.run_once()
    other.lock.release_all()


def test_a_failing_task_holds_back_only_itself(world: tuple[Services, Sweeper, ManualClock]) -> None:
    services, _, _ = world

    class Broken:
        name = "broken"

        def run(self, now: datetime) -> int:
            raise RuntimeError("boom")

    class Counting:
        name = "counting"
        runs = 0

        def run(self, now: datetime) -> int:
            self.runs += 1
            return 0

    counting = Counting()
    sweeper = Sweeper([Broken(), counting], build_sweeper(services).lock, services.app.clock)
    services.sweeper.lock.release_all()  # hand the lock to this sweeper
    try:
        assert sweeper.run_once() == {"broken": 0, "counting": 0}
        assert counting.runs == 1 and sweeper.failures == {"broken": "RuntimeError"}
        with pytest.raises(ValueError):
            sweeper.add(Counting())
    finally:
        sweeper.lock.release_all()


def test_policies_run_at_a_given_instant_from_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNLLM_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OWNLLM_INFERENCE", "false")
    monkeypatch.setenv("OWNLLM_NATS_PUBLIC_URL", "tls://n:4222")
    services = build_services(load_settings(), start_runner=False)
    signed = services.app.signup(slug="cli-sweep", name="C", admin_name="A", admin_email="a@c.example", request_id="r")
    ctx = Ctx(SYSTEM, signed.tenant_id, "r")
    invite = services.app.invite_user(ctx, email="b@c.example", role="member")
    joined = services.app.accept_invite(token=invite.secret, name="B", request_id="j")
    services.runner.catch_up()
    due = services.app.request_deletion(ctx, joined.user_id, "admin").due_at
    services.close()
    runner = CliRunner()
    early = runner.invoke(cli, ["policies", "run", "--now", (due - SECOND).isoformat()])
    assert early.exit_code == 0, early.output
    assert "\n0 events emitted" in early.output
    on_time = runner.invoke(cli, ["policies", "run", "--now", due.isoformat()])
    assert on_time.exit_code == 0, on_time.output
    assert "\n0 events emitted" not in on_time.output
    again = runner.invoke(cli, ["policies", "run", "--now", due.isoformat()])
    reopened = build_services(load_settings(), start_runner=False)
    try:
        assert reopened.directory.users[joined.user_id].erased
        assert reopened.lifecycle.deletions[Deletion.create_id(joined.user_id, 0)].status == "erased"
    finally:
        reopened.close()
    assert again.exit_code == 0 and "\n0 events emitted" in again.output
    assert runner.invoke(cli, ["policies", "run", "--now", "yesterday"]).exit_code == 2
    assert runner.invoke(cli, ["policies", "run", "--now", "2027-01-01T00:00:00"]).exit_code == 2  # no timezone


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    members=st.integers(0, 2),
    sweeps_at=st.lists(
        st.sampled_from([-timedelta(days=1), -SECOND, -TICK, timedelta(0), TICK, timedelta(days=9)]),
        min_size=1,
        max_size=4,
    ),
)
def test_a_terminated_tenant_is_erased_exactly_at_its_erase_by_instant(
    world: tuple[Services, Sweeper, ManualClock], members: int, sweeps_at: list[timedelta]
) -> None:
    services, sweeper, clock = world
    clock.now = clock.now + timedelta(days=400)
    signed = services.command(services.app.signup, slug=f"x{uuid.uuid4().hex[:10]}", name="X", admin_name="A",
                              admin_email="a@x.example", request_id="r")  # fmt: skip
    ctx = Ctx(SYSTEM, signed.tenant_id, "r")
    subjects = [signed.admin_user_id, signed.tenant_id]
    for n in range(members):
        invite = services.command(services.app.invite_user, ctx, email=f"m{n}@x.example", role="member")
        subjects.append(services.command(services.app.accept_invite, token=invite.secret, name="M",
                                         request_id=f"m{n}").user_id)  # fmt: skip
    erase_by = services.command(services.app.terminate_tenant, ctx, "ended")
    assert erase_by == clock.now + timedelta(days=30)
    for delta in sorted(sweeps_at):
        now = erase_by + delta
        sweeper.run_once(now)
        assert sum(sweeper.run_once(now).values()) == 0
        for subject in subjects:
            erased = services.lifecycle.deletions[Deletion.create_id(subject, 0)].status == "erased"
            assert erased == (now >= erase_by)
            assert services.keys.key_for(subject, create=False) is None if erased else True
