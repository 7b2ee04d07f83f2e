"""The reaction runner: each event handled exactly once per handler, whatever point the process dies at."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from api.settings import Settings, load_settings
from api.stores import reaction_runner
from domain.context import SYSTEM, Ctx
from domain.invite import Invite
from domain.pairing_key import PairingKey
from projections.reactions import ReactionRunner
from projections.status import failure_log_for

KILL_POINTS = ("before-command", "inside-command", "after-record", "before-position-save")


class Killed(BaseException):
    """The process dies here: nothing after it runs (not even a later write of the dead runner)."""


class Killer:
    """Fires each chosen (point, notification id) once; after a kill the dead runner can write nothing."""

    def __init__(self, chosen: set[tuple[str, int]]) -> None:
        self.chosen = set(chosen)
        self.dead = False
        self.fired: list[tuple[str, int]] = []

    def __call__(self, point: str, position: int) -> None:
        if self.dead:
            raise Killed(point)
        if (point, position) in self.chosen:
            self.chosen.discard((point, position))
            self.fired.append((point, position))
            self.dead = True
            raise Killed(point)


class PairOnInvite:
    """Each invite makes its tenant a pairing key: a real command, and not idempotent, so a double shows."""

    name = "test-pair-on-invite"
    topics = (get_topic(Invite.Issued),)

    def __init__(self, services: Services, killer: Killer) -> None:
        self.services = services
        self.killer = killer

    def handle(self, event: Any, position: int) -> None:
        self.killer("before-command", position)
        ctx = Ctx(actor=SYSTEM, tenant_id=event.tenant_id, request_id=f"reaction-{position}")
        self.services.app.issue_pairing_key(ctx)
        self.killer("inside-command", position)  # saved aggregates are held back: they must vanish with it


class RememberAll:
    """An outside effect (at least once): remembers every event id it saw."""

    name = "test-remember-all"
    topics: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.seen: list[int] = []

    def handle(self, event: Any, position: int) -> None:
        self.seen.append(position)


def sqlite_settings(var: Path) -> Settings:
    return load_settings({}, var_dir=str(var), inference=False)


@contextmanager
def fresh_services() -> Iterator[Services]:
    with tempfile.TemporaryDirectory() as var:
        services = build_services(sqlite_settings(Path(var)), start_runner=False)
        try:
            yield services
        finally:
            services.close()


def story(services: Services, steps: list[str]) -> tuple[UUID, list[int]]:
    """A tenant, then invites and usage records in the given order; returns it and its invites' positions."""
    signed = services.app.signup(slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
                                 request_id="signup")  # fmt: skip
    ctx = Ctx(actor=f"user:{signed.admin_user_id}", tenant_id=signed.tenant_id, request_id="story")
    for i, step in enumerate(steps):
        if step == "invite":
            services.app.invite_user(ctx, email=f"user{i}@acme.example", role="member")
        else:
            services.app.record_usage(
                tenant_id=signed.tenant_id, user_id=signed.admin_user_id, key_id=signed.admin_key.id, agent_id=None,
                model="m", endpoint="chat", stream=False, status="ok", prompt_tokens=1, completion_tokens=1,
                ttft_ms=None, duration_ms=1, request_id=f"usage-{i}",
            )  # fmt: skip
    notifications = services.app.recorder.select_notifications(1, 10_000, topics=[get_topic(Invite.Issued)])
    return signed.tenant_id, [n.id for n in notifications]


def pairing_keys(services: Services) -> int:
    return len(services.app.recorder.select_notifications(1, 10_000, topics=[get_topic(PairingKey.Issued)]))


def killable_runner(services: Services, killer: Killer, remember: RememberAll) -> ReactionRunner:
    """A runner as ``build_services`` wires it, with kill points at the record and the position save."""
    runner = reaction_runner(services.settings, services.app)
    app, positions = services.app, services.app.recorder
    record, insert_tracking = type(app)._record, type(positions).insert_tracking

    def record_then_maybe_die(unit: Any) -> Any:
        killer("before-record", -1)  # a dead runner records nothing
        recordings = record(app, unit)
        killer("after-record", unit.tracking.notification_id if unit.tracking else 0)
        return recordings

    def save_position(tracking: Tracking) -> None:
        killer("before-position-save", tracking.notification_id)
        insert_tracking(positions, tracking)

    app._record = record_then_maybe_die  # type: ignore[method-assign]
    runner.positions = type("Positions", (), {"max_tracking_id": positions.max_tracking_id,
                                              "insert_tracking": staticmethod(save_position)})()  # fmt: skip
    runner.add(PairOnInvite(services, killer))
    runner.add(remember)
    return runner


def run_until_done(services: Services, killer: Killer, remember: RememberAll, batch: int) -> int:
    """Run, and after each kill start a new runner (a restarted process); returns the kills."""
    kills = 0
    for _ in range(20):
        killer.dead = False
        runner = killable_runner(services, killer, remember)
        runner.batch = batch
        try:
            while runner.run_once():
                pass
            return kills
        except Killed:
            kills += 1
            runner.locks.release_all()  # the dead process's locks go with it
    raise AssertionError("the runner never finished")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.sampled_from(["invite", "usage"]), min_size=1, max_size=10),
    kills=st.lists(st.tuples(st.sampled_from(KILL_POINTS), st.integers(1, 16)), max_size=4),
    batch=st.integers(1, 4),
)
def test_each_event_is_handled_exactly_once_per_handler_whatever_the_kill_point(
    steps: list[str], kills: list[tuple[str, int]], batch: int
) -> None:
    with fresh_services() as services:
        _, invites = story(services, steps)
        killer, remember = Killer(set(kills)), RememberAll()
        run_until_done(services, killer, remember, batch)
        assert pairing_keys(services) == len(invites)  # exactly one per invite: none lost, none doubled
        head = services.app.recorder.max_notification_id() or 0
        assert set(remember.seen) == set(range(1, head + 1))  # the outside effect: at least once each
        positions = services.app.recorder
        assert (positions.max_tracking_id("test-pair-on-invite") or 0) >= max(invites, default=0)


class Flaky:
    """Fails its first ``failures`` calls, then works."""

    def __init__(self, name: str, failures: int) -> None:
        self.name, self.failures, self.calls, self.handled = name, failures, 0, 0
        self.topics: tuple[str, ...] = ()

    def handle(self, event: Any, position: int) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"outage {self.calls}")
        self.handled += 1


def test_a_failing_handler_holds_back_only_itself_and_is_retried_with_backoff(tmp_path: Path) -> None:
    services = build_services(sqlite_settings(tmp_path / "var"), start_runner=False)
    story(services, ["invite", "usage", "invite"])
    head = services.app.recorder.max_notification_id() or 0
    now = [100.0]
    runner = reaction_runner(services.settings, services.app)
    runner.monotonic = lambda: now[0]
    flaky, steady = Flaky("test-flaky", failures=2), Flaky("test-steady", failures=0)
    runner.add(flaky)
    runner.add(steady)
    another_process = failure_log_for(services.app.recorder)

    runner.run_once()
    assert runner.position("test-steady") == head and steady.handled == head
    assert runner.position("test-flaky") == 0 and flaky.calls == 1
    assert another_process.load()["test-flaky"].failures == 1
    assert another_process.load()["test-flaky"].last_error == "RuntimeError"  # the type: a message may quote data

    runner.run_once()
    assert flaky.calls == 1  # not before its backoff (0.5 s) has passed
    now[0] += 0.5
    runner.run_once()
    assert flaky.calls == 2 and another_process.load()["test-flaky"].failures == 2
    now[0] += 0.9
    runner.run_once()
    assert flaky.calls == 2  # the second wait is twice the first
    now[0] += 0.1
    runner.run_once()
    assert flaky.handled == head and runner.position("test-flaky") == head
    assert another_process.load()["test-flaky"].failures == 0
    services.close()


def test_positions_survive_a_restart_and_new_events_only_are_handled(tmp_path: Path) -> None:
    services = build_services(sqlite_settings(tmp_path / "var"), start_runner=False)
    tenant_id, _ = story(services, ["invite"])
    first = Flaky("test-counter", failures=0)
    runner = reaction_runner(services.settings, services.app)
    runner.add(first)
    runner.run_once()
    runner.stop()
    ctx = Ctx(actor=SYSTEM, tenant_id=tenant_id, request_id="later")
    services.app.issue_pairing_key(ctx)
    again = Flaky("test-counter", failures=0)
    restarted = reaction_runner(services.settings, services.app)
    restarted.add(again)
    restarted.run_once()
    assert again.handled == 1 and first.handled + again.handled == services.app.recorder.max_notification_id()
    services.close()


def test_a_second_runner_waits_for_the_handlers_lock(tmp_path: Path) -> None:
    services = build_services(sqlite_settings(tmp_path / "var"), start_runner=False)
    tenant_id, _ = story(services, ["invite"])
    holder, waiter = Flaky("test-locked", 0), Flaky("test-locked", 0)
    first, second = reaction_runner(services.settings, services.app), reaction_runner(services.settings, services.app)
    first.add(holder)
    second.add(waiter)
    assert first.run_once() > 0
    assert second.run_once() == 0 and waiter.calls == 0  # flock is per open file: a second holder is refused
    first.stop()
    ctx = Ctx(actor=SYSTEM, tenant_id=tenant_id, request_id="later")
    services.app.issue_pairing_key(ctx)
    assert second.run_once() == 1 and waiter.handled == 1
    second.stop()
    services.close()


def test_two_processes_on_one_postgresql_never_run_the_same_handler_at_once(postgres_dsn: str, tmp_path: Path) -> None:
    from tests.projections.reaction_worker import NAME
    from tests.support.postgres import create_schema

    schema = create_schema(postgres_dsn)
    settings = load_settings({}, persistence="postgres", postgres_dsn=postgres_dsn, postgres_schema=schema,
                             var_dir=str(tmp_path / "var"), inference=False)  # fmt: skip
    services = build_services(settings, start_runner=False)
    _, invites = story(services, ["invite"] * 30)
    log = tmp_path / "handled.log"
    log.touch()

    def worker() -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tests.projections.reaction_worker", postgres_dsn, schema,
                str(tmp_path / "var"), str(log), str(invites[-1])]  # fmt: skip
        return subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[2])

    def lines() -> list[tuple[str, int, int, int]]:
        return [(w, int(p), int(n), int(t)) for w, p, n, t in (line.split() for line in log.read_text().splitlines())]

    first = worker()
    wait_for(lambda: sum(1 for line in lines() if line[0] == "end") >= 2)
    second = worker()
    time.sleep(1.0)  # long enough for the second to start and poll many times
    assert {pid for _, pid, _, _ in lines()} == {first.pid}  # it waits: the first holds the handler's lock
    first.kill()  # SIGKILL: the server releases its advisory lock with its connection
    first.wait()
    killed_at = time.monotonic_ns()
    assert second.wait(timeout=60) == 0
    handled = lines()
    by_second = [n for what, pid, n, _ in handled if pid == second.pid and what == "start"]
    assert by_second and all(t > killed_at for _, pid, _, t in handled if pid == second.pid)
    assert pairing_keys(services) == len(invites)  # exactly once: the killed one's half-done reaction left nothing
    assert services.app.recorder.max_tracking_id(NAME) >= invites[-1]  # type: ignore[attr-defined]
    services.close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Stuck:
    """Hangs on its first event until released (a mail server that never answers)."""

    name = "test-stuck"
    topics: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, event: Any, position: int) -> None:
        self.release.wait(30)


def test_a_hanging_handler_delays_no_other(tmp_path: Path) -> None:
    services = build_services(sqlite_settings(tmp_path / "var"))
    stuck, steady = Stuck(), Flaky("test-steady", failures=0)
    services.reactions.add(stuck)
    services.reactions.add(steady)
    tenant_id, _ = story(services, ["invite"])
    wait_for(lambda: steady.handled == services.app.recorder.max_notification_id())
    services.command(services.app.issue_pairing_key, Ctx(actor=SYSTEM, tenant_id=tenant_id, request_id="later"))
    wait_for(lambda: steady.handled == services.app.recorder.max_notification_id(), timeout_s=5)
    assert services.reactions.position("test-stuck") == 0  # still on its first event
    stuck.release.set()
    wait_for(lambda: services.reactions.position("test-stuck") == services.app.recorder.max_notification_id())
    services.close()
