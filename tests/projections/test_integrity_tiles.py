"""Tiles: a tile-backed tree answers exactly as the one in memory, tiles grow as C2SP tlog-tiles says, a crash keeps
the last committed tiles, and a store from before tiles replays into them with its checkpoints still valid."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL

from api.cli_audit import verify_database
from api.ledger_keys import public_keys
from api.services import Services, build_services
from api.settings import Settings
from projections.integrity import tiles as tiles_module
from projections.integrity.bundle import tenant_leaf_data
from projections.integrity.ledger import Ledger
from projections.integrity.ledger_rows import GLOBAL
from projections.integrity.merkle import MerkleTree, leaf_hash
from projections.integrity.tiles import (
    INNER_BYTES,
    TILE_BYTES,
    TileCache,
    TileKey,
    TileStore,
    edge_tiles,
    inner_rows,
    width_of,
)
from tests.support.clock import ManualClock


class Tiles:
    """A tile table in a dict: what a batch's ``take_dirty`` writes, what a reader's ``fetch`` reads (counted)."""

    def __init__(self) -> None:
        self.rows: dict[TileKey, bytes] = {}
        self.fetches: list[list[TileKey]] = []

    def commit(self, store: TileStore) -> None:
        for level, index, hashes in store.take_dirty():
            self.rows[(level, index)] = hashes

    def writer(self, size: int) -> tuple[MerkleTree, TileStore]:
        store = TileStore(size, {key: self.rows[key] for key in edge_tiles(size)})
        tree = MerkleTree(store)
        store.trim()
        return tree, store

    def reader(self, size: int, cache: TileCache | None = None) -> MerkleTree:
        def fetch(keys: Any) -> dict[TileKey, bytes]:
            self.fetches.append(list(keys))
            return {key: self.rows[key] for key in keys if key in self.rows}

        return MerkleTree(TileStore(size, {key: self.rows[key] for key in edge_tiles(size)}, fetch, cache))


def _leaves(count: int) -> list[bytes]:
    return [b"leaf %d" % i for i in range(count)]


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.tuples(st.integers(1, 700), st.booleans()), min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
)
def test_a_tiled_tree_equals_the_one_in_memory_across_batches_and_reopens(
    batches: list[tuple[int, bool]], seed: int
) -> None:
    data = _leaves(sum(count for count, _ in batches))
    memory = MerkleTree()
    memory.extend(data)
    tiles = Tiles()
    tree, store = tiles.writer(0)
    for count, reopen in batches:
        tree.extend(data[tree.size : tree.size + count])
        tiles.commit(store)
        if reopen:
            tree, store = tiles.writer(tree.size)
        assert tree.root() == memory.root(tree.size)
    n, rng = tree.size, random.Random(seed)
    reader = tiles.reader(n, TileCache(4))
    assert reader.size == n and reader.root() == memory.root()
    for _ in range(20):
        size = rng.randrange(1, n + 1)
        index, old = rng.randrange(size), rng.randrange(1, size + 1)
        assert reader.inclusion_proof(index, size) == memory.inclusion_proof(index, size)
        assert reader.consistency_proof(old, size) == memory.consistency_proof(old, size)
        assert reader.root(size) == memory.root(size)
        assert reader.leaf_hash_at(index) == memory.leaf_hash_at(index)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, {(0, 0): 1}),
        (255, {(0, 0): 255}),
        (256, {(0, 0): 256, (1, 0): 1}),  # the spec's example: a full level-0 tile and a level-1 tile of width 1
        (257, {(0, 0): 256, (0, 1): 1, (1, 0): 1}),
        (70_000, {**{(0, k): 256 for k in range(273)}, (0, 273): 112, (1, 0): 256, (1, 1): 17, (2, 0): 1}),
    ],
)
def test_tiles_grow_in_place_as_c2sp_tlog_tiles_lays_them_out(size: int, expected: dict[TileKey, int]) -> None:
    tiles = Tiles()
    tree, store = tiles.writer(0)
    rng = random.Random(size)
    for leaf in _leaves(size):  # in random batches: a partial tile is rewritten as it grows
        tree.append(leaf)
        if rng.random() < 0.01:
            tiles.commit(store)
    tiles.commit(store)
    assert {key: width_of(hashes) for key, hashes in tiles.rows.items()} == expected


def test_a_proof_reads_its_tiles_in_one_fetch_and_full_tiles_come_from_the_cache() -> None:
    tiles, n = Tiles(), 70_000
    tree, store = tiles.writer(0)
    tree.extend(_leaves(n))
    tiles.commit(store)
    reader = tiles.reader(n, TileCache())
    for index in (0, 12_345, 65_535, 69_999, 12_346):
        before = len(tiles.fetches)
        reader.inclusion_proof(index)
        assert len(tiles.fetches) - before <= 1
    assert len(tiles.fetches) == 3  # the last leaf's tiles are the edge, held; its neighbour's tile is cached


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.tuples(st.integers(1, 900), st.booleans(), st.booleans()), min_size=1, max_size=8))
def test_a_full_tile_is_stored_with_its_inner_rows_as_hashed_from_its_bottom_row(
    batches: list[tuple[int, bool, bool]],
) -> None:
    data = _leaves(sum(count for count, _, _ in batches))
    tiles = Tiles()
    tree, store = tiles.writer(0)
    for count, reopen, one_by_one in batches:  # a reopened writer hashes its partial tiles' rows when they fill
        if one_by_one:
            for leaf in data[tree.size : tree.size + count]:
                tree.append(leaf)
        else:
            tree.extend(data[tree.size : tree.size + count])
        tiles.commit(store)
        if reopen:
            tree, store = tiles.writer(tree.size)
    for stored in tiles.rows.values():
        if width_of(stored) < 256:
            assert len(stored) == width_of(stored) * 32
        else:
            assert len(stored) == TILE_BYTES + INNER_BYTES
            assert stored[TILE_BYTES:] == inner_rows(stored[:TILE_BYTES])


def test_a_proof_from_full_tiles_hashes_nothing_and_tiles_stored_without_inner_rows_still_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiles, n = Tiles(), 65_536  # every tile full but the root's (width 1)
    tree, store = tiles.writer(0)
    tree.extend(_leaves(n))
    tiles.commit(store)
    memory = MerkleTree()
    memory.extend(_leaves(n))
    hashed: list[bytes] = []

    def counting(data: bytes = b"") -> Any:
        hashed.append(data)
        return hashlib.sha256(data)

    monkeypatch.setattr(tiles_module, "_sha256", counting)
    reader = tiles.reader(n)
    for index in (0, 255, 256, 40_000, 65_535):
        assert reader.inclusion_proof(index) == memory.inclusion_proof(index)
    assert hashed == []
    tiles.rows = {key: stored[:TILE_BYTES] for key, stored in tiles.rows.items()}  # as written before inner rows
    reader = tiles.reader(n)
    for index in (0, 255, 256, 40_000, 65_535):
        assert reader.inclusion_proof(index) == memory.inclusion_proof(index)
    assert hashed


def test_a_tile_takes_only_the_next_hash() -> None:
    store = TileStore(0)
    store.put(0, 0, b"a" * 32)
    store.put(3, 0, b"b" * 32)  # inside a tile: recomputed, not stored
    with pytest.raises(ValueError, match="append-only"):
        store.put(0, 2, b"c" * 32)
    with pytest.raises(KeyError):
        store.get(0, 1)
    assert store.take_dirty() == [(0, 0, b"a" * 32)]


# -- the ledger over the real tables -----------------------------------------------------------


@dataclass(frozen=True)
class Event:
    tenant_id: uuid.UUID
    timestamp: datetime


@dataclass(frozen=True)
class Record:
    notification_id: int
    state: bytes
    event: Any


@pytest.fixture
def quiet(make_settings: Callable[..., Settings], clock: ManualClock) -> Iterator[Services]:
    built = build_services(make_settings(checkpoint_every_events=100), start_runner=False, clock=clock)
    yield built
    built.close()


def _ledger(services: Services) -> Ledger:
    assert services.ledger is not None
    return services.ledger


def _records(start: int, count: int, tenants: list[uuid.UUID]) -> list[Record]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return [Record(n, b"event %d" % n, Event(tenants[n % len(tenants)], now)) for n in range(start, start + count)]


def test_a_crash_mid_batch_keeps_the_last_committed_tiles(quiet: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, tenants = _ledger(quiet), [uuid.uuid4(), uuid.uuid4()]
    first = _records(1, 300, tenants)  # past a full level-0 tile
    ledger.process_records(first, 300)
    second = _records(301, 400, tenants)  # fills the partial tiles, starts new ones

    def crash(*_: Any) -> None:
        raise OSError("killed before the tracking record")

    monkeypatch.setattr(type(ledger.tables), "_insert_tracking", crash)
    with pytest.raises(OSError):
        ledger.process_records(second, 700)
    monkeypatch.undo()
    with ledger.tables.reading() as snapshot:
        assert snapshot.tree(GLOBAL).size == 300
        assert snapshot.tree(GLOBAL).root() == _memory(first).root()
    tables: Any = ledger.tables
    with ledger.tables.reading() as snapshot:  # the global tree's full tiles carry their inner rows; a tenant's not
        global_tile = tables.fetch_tiles(snapshot._cursor, GLOBAL, [(0, 0)])[(0, 0)]
        assert global_tile[TILE_BYTES:] == inner_rows(global_tile[:TILE_BYTES])
    ledger.process_records(second, 700)
    everything = first + second
    with ledger.tables.reading() as snapshot:
        stored = snapshot.tree(GLOBAL)
        memory = _memory(everything)
        assert stored.root() == memory.root() and ledger.size == 700
        for index in (0, 255, 256, 299, 511, 699):
            assert stored.inclusion_proof(index) == memory.inclusion_proof(index)
        own = MerkleTree()
        for index, record in enumerate(everything):
            if record.event.tenant_id == tenants[0]:
                own.append(tenant_leaf_data(index, leaf_hash(record.state)))
        assert snapshot.tree(str(tenants[0])).root() == own.root()
        assert len(tables.fetch_tiles(snapshot._cursor, str(tenants[0]), [(0, 0)])[(0, 0)]) == TILE_BYTES


def _memory(records: list[Record]) -> MerkleTree:
    tree = MerkleTree()
    tree.extend(r.state for r in records)
    return tree


def test_a_store_from_before_tiles_replays_into_tiles_and_its_checkpoints_still_verify(
    make_settings: Callable[..., Settings], clock: ManualClock
) -> None:
    made = make_settings(checkpoint_every_events=5)
    services = build_services(made, start_runner=False, clock=clock)
    for n in range(3):
        services.app.signup(slug=f"old-{n}", name="T", admin_name="A", admin_email="a@t.example", request_id="r")
    services.runner.catch_up()
    ledger = _ledger(services)
    size = ledger.size
    with ledger.tables.reading() as snapshot:
        before = [r.note for r in snapshot.checkpoints(GLOBAL)]
    assert size > 5 and before
    _make_old(services)  # the node table the ledger kept before tiles, and no tiles
    services.close()

    reopened = build_services(made, start_runner=False, clock=clock)
    try:
        ledger = _ledger(reopened)
        assert ledger.size == size  # replayed by the runner's catch-up at start
        assert not _has_old(reopened)
        with ledger.tables.reading() as snapshot:
            assert [r.note for r in snapshot.checkpoints(GLOBAL)][: len(before)] == before
        assert ledger.signer is not None
        lines, ok = verify_database(reopened, public_keys(ledger.signer, reopened.settings), ledger.origin)
        assert ok, lines
    finally:
        reopened.close()


def _old_name(services: Services) -> str:
    if services.settings.persistence == "sqlite":
        return "integrity_nodes"
    return f'"{services.settings.postgres_schema}".ownllm_integrity_nodes'


def _make_old(services: Services) -> None:
    tables: Any = _ledger(services).tables
    with tables.datastore.transaction(commit=True) as c:
        c.execute(f"CREATE TABLE {_old_name(services)} (tree text, level integer, idx bigint, hash bytea)")
        if services.settings.persistence == "sqlite":
            c.execute("DELETE FROM integrity_tiles")
        else:
            c.execute(SQL("DELETE FROM {}").format(tables.tiles))


def _has_old(services: Services) -> bool:
    tables: Any = _ledger(services).tables
    with tables.datastore.transaction(commit=False) as c:
        if services.settings.persistence == "sqlite":
            c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'integrity_nodes'")
            return bool(c.fetchone()[0])
        c.execute("SELECT to_regclass(%s) AS found", (_old_name(services),))
        return c.fetchone()["found"] is not None
