"""The integrity ledger as the product runs it: every stored event a leaf, exactly once, rebuilt equals incremental."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.services import Services, build_services
from api.settings import Settings
from domain.context import SYSTEM, Ctx
from projections.integrity.bundle import tenant_leaf_data, tenant_origin
from projections.integrity.checkpoints import open_checkpoint
from projections.integrity.ledger import Ledger
from projections.integrity.ledger_rows import GLOBAL
from projections.integrity.merkle import MemoryStore, MerkleTree, leaf_hash
from projections.integrity.verify import verify_full_log
from projections.log import NotificationLog
from projections.rebuild import rebuild
from tests.support.clock import ManualClock


@pytest.fixture
def quiet(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Services]:
    """Services whose runner moves only when a test says so; a checkpoint every 5 events."""
    built = build_services(make_settings(checkpoint_every_events=5), start_runner=False, clock=clock)
    yield built
    built.close()


def _ledger(services: Services) -> Ledger:
    assert services.ledger is not None
    return services.ledger


def _stored(services: Services) -> list[tuple[int, bytes, Any]]:
    """Every stored event: (notification id, bytes as stored, event)."""
    log = NotificationLog(services.app.recorder)
    found = log.read(0, log.head(), (), 1_000_000)
    return [(n.id, n.state, services.app.mapper.to_domain_event(n)) for n in found]


def _state(services: Services) -> tuple[list[Any], list[Any], dict[tuple[str, int], str]]:
    """The ledger's rows: every node, every leaf, the checkpoints' roots by (tree, size)."""
    ledger = _ledger(services)
    with ledger.tables.reading() as snapshot:
        trees = [GLOBAL, *{leaf.tenant for leaf in _leaves(services) if leaf.tenant}]
        nodes = sorted(
            (key, level, index, snapshot.tree(key).store.get(level, index))
            for key in trees
            for level in range(snapshot.tree(key).size.bit_length())
            for index in range(snapshot.tree(key).size >> level)
        )
        roots = {(r.tree, r.size): r.note.split("\n")[2] for key in trees for r in snapshot.checkpoints(key)}
    return nodes, _leaves(services), roots


def _leaves(services: Services) -> list[Any]:
    ledger = _ledger(services)
    with ledger.tables.reading() as snapshot:
        tenants = {str(t) for t in services.directory.tenants}
        return sorted(
            (leaf for t in tenants for leaf in snapshot.tenant_leaves(t, 1 << 62, None, None)), key=lambda x: x.leaf
        )


class Story:
    """Two tenants to whom random things happen."""

    def __init__(self, services: Services, clock: ManualClock) -> None:
        self.services, self.clock = services, clock
        self.tenants = []
        for _ in range(2):
            signed = services.app.signup(slug=f"t-{uuid.uuid4().hex[:12]}", name="T", admin_name="A",
                                         admin_email="a@t.example", request_id="r0")  # fmt: skip
            self.tenants.append((signed.tenant_id, signed.admin_user_id, signed.admin_key.id))

    def act(self, kind: str, pick: int) -> None:
        tenant_id, user_id, key_id = self.tenants[pick % 2]
        app, ctx = self.services.app, Ctx(SYSTEM, tenant_id, "r")
        if kind == "key":
            app.issue_api_key(ctx, user_id=user_id, name="k", scopes=["inference"])
        elif kind == "usage":
            app.record_usage(
                tenant_id=tenant_id, user_id=user_id, key_id=key_id, agent_id=None, model="m", endpoint="chat",
                stream=False, status="ok", prompt_tokens=pick, completion_tokens=1, ttft_ms=1, duration_ms=1,
                request_id=str(uuid.uuid4()),
            )  # fmt: skip
        elif kind == "invite":
            app.invite_user(ctx, email=f"{uuid.uuid4().hex[:8]}@t.example", role="member")
        elif kind == "later":
            self.clock.advance(seconds=61)


def test_every_stored_event_is_a_leaf_in_order_and_in_its_tenants_tree(quiet: Services, clock: ManualClock) -> None:
    story = Story(quiet, clock)
    for kind in ("key", "usage", "invite", "usage", "later", "key", "usage"):
        story.act(kind, 1)
        quiet.runner.catch_up()
    stored = _stored(quiet)
    leaves = _leaves(quiet)
    ledger = _ledger(quiet)
    assert ledger.size == len(stored) == len(leaves)
    assert [(x.leaf, x.notification_id) for x in leaves] == [(i, n) for i, (n, _, _) in enumerate(stored)]
    # the global root is the RFC 9162 root of the stored bytes in notification order
    expected = MerkleTree()
    expected.extend(state for _, state, _ in stored)
    with ledger.tables.reading() as snapshot:
        assert snapshot.tree(GLOBAL).root() == expected.root()
        for tenant_id, _, _ in story.tenants:
            own = MerkleTree(MemoryStore())
            for leaf in (x for x in leaves if x.tenant == str(tenant_id)):
                own.append(tenant_leaf_data(leaf.leaf, leaf_hash(stored[leaf.leaf][1])))
            assert snapshot.tree(str(tenant_id)).root() == own.root()
            notes = [r.note for r in snapshot.checkpoints(str(tenant_id))]
            newest, _ = open_checkpoint(
                notes[-1], [ledger.signer.verifier], tenant_origin(ledger.origin, str(tenant_id))
            )  # type: ignore[union-attr]
            assert newest.root == own.root(newest.size)
        checkpoints = [open_checkpoint(r.note, [ledger.signer.verifier], ledger.origin)[0]  # type: ignore[union-attr]
                       for r in snapshot.checkpoints(GLOBAL)]  # fmt: skip
    # every 5 events, and at the batch after a minute passed
    sizes = [c.size for c in checkpoints]
    assert {5, 10} <= set(sizes) and sizes == sorted(sizes) and any(s % 5 for s in sizes)
    read, problems = verify_full_log((state for _, state, _ in stored), checkpoints)
    assert read == len(stored) and problems == []


def test_the_tail_of_a_quiet_log_is_signed_once_the_interval_passed(quiet: Services, clock: ManualClock) -> None:
    Story(quiet, clock)
    quiet.runner.catch_up()  # the first batch is signed (no checkpoint before)
    ledger = _ledger(quiet)
    first = ledger.checkpoint()
    quiet.app.invite_user(Ctx(SYSTEM, next(iter(quiet.directory.tenants)), "r"), email="x@t.example", role="member")
    quiet.runner.catch_up()
    with ledger.tables.reading() as snapshot:
        assert [r.size for r in snapshot.checkpoints(GLOBAL)][-1] == first
    ledger.checkpoint_if_due()
    with ledger.tables.reading() as snapshot:
        assert [r.size for r in snapshot.checkpoints(GLOBAL)][-1] == first  # not yet: no minute passed
    clock.advance(seconds=60)
    ledger.checkpoint_if_due()
    with ledger.tables.reading() as snapshot:
        assert [r.size for r in snapshot.checkpoints(GLOBAL)][-1] == ledger.size > first


def test_a_crash_between_the_rows_and_the_position_loses_and_duplicates_nothing(
    quiet: Services, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = Story(quiet, clock)
    quiet.runner.catch_up()
    before = _state(quiet)
    ledger = _ledger(quiet)
    position = ledger.stored_position()
    for kind in ("key", "usage", "usage", "invite", "later", "usage", "key"):
        story.act(kind, 3)

    def crash(*_: Any) -> None:
        raise OSError("killed before the tracking record")

    monkeypatch.setattr(type(ledger.tables), "_insert_tracking", crash)
    quiet.runner.catch_up()
    assert _state(quiet) == before  # nodes, leaves and checkpoints went with the failed transaction
    assert ledger.stored_position() == position
    monkeypatch.undo()
    quiet.runner.catch_up()
    after = _state(quiet)
    assert ledger.size == len(_stored(quiet)) == len(after[1])

    rebuild(ledger, NotificationLog(quiet.app.recorder), quiet.app.mapper.to_domain_event)
    assert _state(quiet) == after


KINDS = st.sampled_from(["key", "usage", "usage", "invite", "later"])
steps = st.lists(st.tuples(KINDS, st.integers(0, 9), st.booleans()), min_size=1, max_size=20)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_rebuilt_equals_incremental(quiet: Services, clock: ManualClock, steps: list[tuple[str, int, bool]]) -> None:
    story = Story(quiet, clock)
    for kind, pick, catch_up in steps:
        story.act(kind, pick)
        if catch_up:  # random batch boundaries
            quiet.runner.catch_up()
    quiet.runner.catch_up()
    incremental = _state(quiet)
    ledger = _ledger(quiet)
    rebuild(ledger, NotificationLog(quiet.app.recorder), quiet.app.mapper.to_domain_event)
    rebuilt = _state(quiet)
    assert rebuilt[:2] == incremental[:2]
    assert rebuilt[2] == incremental[2]  # the checkpoints stay, and every root they sign is the rebuilt tree's
    with ledger.tables.reading() as snapshot:
        for (tree, size), root in incremental[2].items():
            assert snapshot.tree(tree).root(size) == base64.b64decode(root)
