"""Due erasures in batches: the same outcome as one at a time, and a refused item holds back only itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from api.settings import load_settings
from api.sweep_tasks import DeletionsDue, ExportsExpired, export_files
from domain.context import SYSTEM, Ctx
from domain.data_export import DataExport
from domain.deletion import Deletion
from domain.sealing import ERASED
from policies.lifecycle import EXPORT_LINK_LIFETIME
from tests.support.clock import ManualClock

T0 = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, ManualClock]]:
    clock = ManualClock(T0)
    var = tmp_path_factory.mktemp("batches") / "var"
    services = build_services(load_settings({}, var_dir=str(var), inference=False, nats_public_url="tls://n:4222"),
                              start_runner=False, clock=clock)  # fmt: skip
    yield services, clock
    services.close()


def _erased_events(services: Services, deletion_id: UUID) -> int:
    log = services.runner.log
    return sum(1 for n in log.read(0, log.head(), (get_topic(Deletion.SubjectErased),), 100_000)
               if n.originator_id == deletion_id)  # fmt: skip


def _join(services: Services, ctx: Ctx, role: str) -> UUID:
    invite = services.command(services.app.invite_user, ctx, email=f"{uuid.uuid4().hex[:8]}@b.example", role=role)
    return services.command(services.app.accept_invite, token=invite.secret, name="Canary Batchperson",
                            request_id=str(uuid.uuid4())).user_id  # fmt: skip


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.integers(0, 5), batch=st.integers(1, 4), spread=st.lists(st.integers(0, 3), max_size=8))
def test_a_pass_erases_every_due_subject_once_and_holds_back_only_the_last_admin(
    world: tuple[Services, ManualClock], members: int, batch: int, spread: list[int]
) -> None:
    """Two admins and some members ask for deletion (each due at its own second); at the end, the admin
    erased second would leave the tenant without one: refused, alone, pass after pass."""
    services, clock = world
    clock.now = start = clock.now + timedelta(days=400)
    signed = services.command(services.app.signup, slug=f"b{uuid.uuid4().hex[:10]}", name="B", admin_name="A",
                              admin_email="a@b.example", request_id="r")  # fmt: skip
    ctx = Ctx(SYSTEM, signed.tenant_id, "r")
    subjects = [signed.admin_user_id, _join(services, ctx, "admin")]
    subjects += [_join(services, ctx, "member") for _ in range(members)]
    deletions = []
    for n, subject in enumerate(subjects):
        clock.now = start + timedelta(seconds=spread[n] if n < len(spread) else 0)
        deletions.append(services.command(services.app.request_deletion, ctx, subject, "admin").id)
    task = DeletionsDue(services, export_files(services), batch=batch)
    due = max(services.lifecycle.deletions[d].due_at for d in deletions)
    emitted = task.run(due)
    assert emitted >= 3 * (len(subjects) - 1)  # per erased subject: its key revoked, removed, SubjectErased
    assert task.run(due) == 0  # the refused admin stays refused; nothing else happens twice
    statuses = [services.lifecycle.deletions[d].status for d in deletions]
    assert statuses.count("pending") == 1 and statuses[:2].count("pending") == 1  # one of the two admins
    for subject, deletion_id, status in zip(subjects, deletions, statuses, strict=True):
        erased = status == "erased"
        assert _erased_events(services, deletion_id) == int(erased)
        assert (services.keys.key_for(subject, create=False) is None) == erased
        assert (services.directory.users[subject].name == ERASED) == erased


def test_a_batch_is_one_transaction_and_a_refusal_destroys_no_key_of_the_others(
    world: tuple[Services, ManualClock],
) -> None:
    services, clock = world
    clock.now = clock.now + timedelta(days=400)
    signed = services.command(services.app.signup, slug=f"r{uuid.uuid4().hex[:10]}", name="R", admin_name="A",
                              admin_email="a@r.example", request_id="r")  # fmt: skip
    ctx = Ctx(SYSTEM, signed.tenant_id, "r")
    other_admin = _join(services, ctx, "admin")
    member = _join(services, ctx, "member")
    ids = [services.command(services.app.request_deletion, ctx, s, "admin").id
           for s in (signed.admin_user_id, other_admin, member)]  # fmt: skip
    due = services.lifecycle.deletions[ids[0]].due_at + timedelta(seconds=1)
    head = services.runner.log.head()
    with pytest.raises(Exception, match="admin"):
        services.app.erase_subjects(ids, now=due, request_id=lambda d: f"t-{d}")
    assert services.runner.log.head() == head  # nothing saved ...
    assert all(services.keys.key_for(s, create=False) is not None for s in (signed.admin_user_id, member))  # ...
    assert services.app.erase_subjects([ids[2], ids[0]], now=due, request_id=lambda d: f"t-{d}").events >= 5
    assert services.runner.log.head() > head
    assert services.app.erase_subjects([ids[2], ids[0]], now=due, request_id=lambda d: f"t-{d}").events == 0


def test_export_links_expire_in_batches_once_each_and_never_early(world: tuple[Services, ManualClock]) -> None:
    services, clock = world
    clock.now = start = clock.now + timedelta(days=400)
    signed = services.command(services.app.signup, slug=f"e{uuid.uuid4().hex[:10]}", name="E", admin_name="A",
                              admin_email="a@e.example", request_id="r")  # fmt: skip
    ids = [services.command(services.app.request_export, Ctx(SYSTEM, signed.tenant_id, f"x{n}"), scope="tenant",
                            subject_id=None) for n in range(5)]  # fmt: skip
    files = export_files(services)
    for export_id in ids:
        files.path(export_id).parent.mkdir(parents=True, exist_ok=True)
        files.path(export_id).write_bytes(b"zip")
        services.command(services.app.complete_export, export_id, files=1, size=3, sha256="0" * 64, now=start)
    task = ExportsExpired(services, files, batch=2)
    assert task.run(start + EXPORT_LINK_LIFETIME - timedelta(microseconds=1)) == 0
    assert all(files.path(e).exists() for e in ids)
    assert task.run(start + EXPORT_LINK_LIFETIME) == 5
    assert task.run(start + EXPORT_LINK_LIFETIME) == 0
    assert not any(files.path(e).exists() for e in ids)
    assert [services.lifecycle.exports[e].status for e in ids] == ["expired"] * 5
    log = services.runner.log
    expired = [n.originator_id for n in log.read(0, log.head(), (get_topic(DataExport.Expired),), 100_000)]
    assert sorted(expired.count(e) for e in ids) == [1] * 5
