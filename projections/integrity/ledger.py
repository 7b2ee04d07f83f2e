"""The integrity ledger: every stored event a leaf of a Merkle tree, per tenant too, with signed checkpoints.

What it keeps (a tracked read model, ``ownllm projections rebuild integrity`` replays it):

- The global tree: one leaf per stored event, in notification order, whose data is the event's bytes
  exactly as the recorder holds them (``Recorded.state``: personal data sealed, so crypto-shredding
  never changes a leaf). Notification ids may have gaps; leaf indexes are dense, and the leaf table
  maps one to the other (with the event's tenant, its index in the tenant's tree, and its time).
- One tree per tenant: its leaves are the tenant's events in order, each leaf holding the event's
  8-byte global leaf index and its global leaf hash (:func:`~projections.integrity.bundle_format.tenant_leaf_data`).
- Checkpoints (C2SP ``tlog-checkpoint`` signed notes, Ed25519): of the global tree, origin
  ``<origin>``, and of every tenant tree that grew since the last one, origin
  ``<origin>/tenant/<tenant id>``, all signed together, stored with the global size they were cut at.

Why a tenant tree. A tenant's bundle must prove its events without showing other tenants': each
event comes with an inclusion proof in the global tree. That proves each event shown is in the log,
not that none is missing: an operator could drop an event together with its proof, and the global
tree alone cannot say which leaves are the tenant's. The tenant tree's signed size is the tenant's
count of events, K; the bundle must hold tenant leaves 0..K-1, each proven in both trees (the tenant
leaf commits to the global index and bytes, so an event of another tenant, or another position,
fails there). A removed event either leaves a hole below K, or needs a tenant tree re-signed with a
smaller size or another root, which a checkpoint the tenant pinned earlier refuses (its consistency
proof to the newest tenant checkpoint fails). Simpler designs were weighed: a per-tenant counter in
each global leaf proves no holes but cannot show a cut tail (the count itself must be signed);
a per-tenant hash chain proves the count but makes "this log extends my pinned state" cost the
whole chain; a tenant tree gives both with O(log n) proofs.

Storage: each tree's hashes are tiles (:mod:`projections.integrity.tiles`, the C2SP tlog-tiles
layout): one row per 256 hashes of every eighth level, the levels between hashed again when read.
A tree in memory holds its right edge only (the last node of each level, and the partial tile of
each tile level, which grows in place), so a batch of B leaves writes about B/256 new rows plus one
rewritten partial row per tile level and tree it touched, instead of two rows per leaf and tree;
a proof reads at most ``ceil(height / 8)`` tiles, in one query.

Exactly once: the tile rows, leaf rows, checkpoint rows and the tracking position of a batch are
written in ONE transaction (:class:`LedgerTables.apply` checks the stored position first), so a kill
at any point loses or duplicates nothing; on any failure the in-memory trees are dropped and
reloaded from the committed rows.

Signing happens in the ledger's own process step (and :meth:`Ledger.checkpoint` for the timer and
``ownllm audit checkpoint``), not in a separate reaction: a checkpoint of size S is then written in
the transaction that makes the tree size S, so no checkpoint ever names a root the tables do not
hold, and a reaction would need its own copy of the trees. Checkpoints are cut at every multiple of
``every_events`` leaves and at the end of a batch ``every_s`` seconds after the previous one; a
quiet log's tail is signed by :meth:`Ledger.checkpoint_if_due`, which a timer calls. The signing key
is only in the process (a file the database never holds); without one the ledger appends but signs
nothing. A rebuild keeps the checkpoints (tenants may have pinned them): the replayed tree is the
same, so they stay valid, and ``ownllm audit verify --live`` checks it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from projections.integrity.bundle_format import tenant_leaf_data, tenant_origin
from projections.integrity.checkpoints import Checkpoint, sign_checkpoint
from projections.integrity.ledger_rows import (
    GLOBAL,
    CheckpointRow,
    LeafRow,
    LedgerTables,
    StaleLedgerPosition,
    StoredRecord,
)
from projections.integrity.merkle import MerkleTree, leaf_hash
from projections.integrity.note_keys import Signer
from projections.integrity.tiles import TileStore

log = logging.getLogger(__name__)
_sha256 = hashlib.sha256


class NoSigningKey(RuntimeError):
    """The ledger has no signing key configured."""


def tenant_of_event(event: Any) -> Any:
    """The tenant an event belongs to: a tenant's own creation, or its ``tenant_id`` (None: no tenant)."""
    tenant = getattr(event, "tenant_id", None)
    if tenant is None and type(event).__qualname__ == "Tenant.Registered":
        return event.originator_id
    return tenant


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Ledger:
    """Appends every stored event to the global and its tenant's tree, and signs checkpoints, exactly once."""

    tables: LedgerTables
    signer: Signer | None = None
    origin: str = "ownllm"
    every_events: int = 100_000
    every_s: float = 60.0
    clock: Callable[[], datetime] = _utc_now
    tenant_of: Callable[[Any], Any] = tenant_of_event
    # reads (tenant key, time) from a record's stored bytes without decoding it, or None (then ``tenant_of``)
    locate: Callable[[StoredRecord], tuple[str | None, datetime | None] | None] | None = None
    name: str = "integrity"
    topics: tuple[str, ...] = ()  # every event
    position: int = field(init=False)

    def __post_init__(self) -> None:
        if self.every_events < 1 or self.every_s <= 0:
            raise ValueError("checkpoints need every_events >= 1 and every_s > 0")
        self._lock = threading.RLock()
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()
        self._reset()

    def _reset(self) -> None:
        """Forget everything in memory; the committed rows are the truth."""
        self.position = self.tables.position()
        self._trees: dict[str, MerkleTree] = {}
        self._stores: dict[str, TileStore] = {}
        self._last_size, self._last_at, self._dirty = self.tables.checkpoint_state()

    def stored_position(self) -> int:
        """The position as the tracking record says."""
        return self.tables.position()

    def clear(self) -> None:
        """Drop the trees and go back to position 0 (before a rebuild)."""
        with self._lock:
            self.tables.clear()
            self._reset()

    def _tree(self, key: str) -> MerkleTree:
        tree = self._trees.get(key)
        if tree is None:
            size, tiles = self.tables.edge(key)
            # inner rows (proofs that hash nothing) for the global tree, which every proof reads; a tenant
            # tree's proofs hash theirs (two tile writes per leaf, not four: the append rate)
            store = self._stores[key] = TileStore(size, tiles, inner=key == GLOBAL)
            tree = self._trees[key] = MerkleTree(store)
            store.trim()  # the tree keeps its right edge; the full tiles behind it are not needed to append
        return tree

    @property
    def size(self) -> int:
        """Leaves in the global tree (as applied by this process)."""
        with self._lock:
            return self._tree(GLOBAL).size

    def process_records(self, records: Sequence[StoredRecord], through: int) -> None:
        """Append the records after the position, sign what is due, move to ``through``: one transaction."""
        with self._lock:
            start = self.position
            for _ in range(5):
                if self.position >= through or self.position < start:
                    return
                if self._attempt(lambda: self._apply(records, through)):
                    return
            raise StaleLedgerPosition("the ledger kept losing races; is more than one runner configured?")

    def _attempt(self, write: Callable[[], None]) -> bool:
        """Run ``write``; False when another process moved the ledger on. On any failure memory is reloaded."""
        try:
            write()
        except StaleLedgerPosition:
            self._reset()
            return False
        except BaseException:
            self._reset()
            raise
        return True

    def _apply(self, records: Sequence[StoredRecord], through: int) -> None:
        fresh = [r for r in records if r.notification_id > self.position]
        places = [self._place(r) for r in fresh]
        digests = [_sha256(b"\x00" + r.state).digest() for r in fresh]  # leaf_hash, inline
        leaves: list[LeafRow] = []
        checkpoints: list[CheckpointRow] = []
        global_tree = self._tree(GLOBAL)
        touched = {GLOBAL}
        now = self.clock()
        at = 0
        while at < len(fresh):  # in runs that end where a checkpoint is due (every ``every_events`` leaves)
            end = len(fresh)
            if self.signer is not None:
                end = min(end, at + self.every_events - global_tree.size % self.every_events)
            first = global_tree.extend_hashes(digests[at:end])
            by_tenant: dict[str, list[int]] = {}
            for i in range(at, end):
                key = places[i][0]
                if key is not None:
                    by_tenant.setdefault(key, []).append(i)
            tenant_leaf: dict[int, int] = {}
            for key, items in by_tenant.items():
                tree = self._tree(key)
                start = tree.extend_hashes([leaf_hash(tenant_leaf_data(first + i - at, digests[i])) for i in items])
                tenant_leaf.update((i, start + n) for n, i in enumerate(items))
                self._dirty.add(key)
                touched.add(key)
            leaves += [LeafRow(first + i - at, fresh[i].notification_id, places[i][0], tenant_leaf.get(i), places[i][1])
                       for i in range(at, end)]  # fmt: skip
            if self.signer is not None and global_tree.size % self.every_events == 0:
                checkpoints += self._sign(now)
            at = end
        if self._due(now):
            checkpoints += self._sign(now)
        tiles = [(key, *tile) for key in sorted(touched) for tile in self._stores[key].take_dirty()]
        self.tables.apply(self.position, through, tiles, leaves, checkpoints)
        self.position = through

    def _place(self, record: StoredRecord) -> tuple[str | None, datetime | None]:
        """The record's tenant (its tree's key; None: no tenant's) and time, from its bytes where ``locate`` can."""
        if self.locate is not None:
            found = self.locate(record)
            if found is not None:
                return found
        event = record.event
        tenant = self.tenant_of(event)
        return (None if tenant is None else str(tenant)), getattr(event, "timestamp", None)

    def _due(self, now: datetime) -> bool:
        """A checkpoint is due: there is a key, the tree grew, and ``every_s`` passed since the last one."""
        if self.signer is None or self._tree(GLOBAL).size <= self._last_size:
            return False
        return self._last_at is None or (now - self._last_at).total_seconds() >= self.every_s

    def _sign(self, now: datetime) -> list[CheckpointRow]:
        """Checkpoints of the global tree and of every tenant tree that grew since the last ones."""
        assert self.signer is not None
        signers = [self.signer]
        global_tree = self._tree(GLOBAL)
        size = global_tree.size
        rows = [
            CheckpointRow(
                GLOBAL, size, size, now, sign_checkpoint(Checkpoint(self.origin, size, global_tree.root()), signers)
            )
        ]
        for key in sorted(self._dirty):
            tree = self._tree(key)
            checkpoint = Checkpoint(tenant_origin(self.origin, key), tree.size, tree.root())
            rows.append(CheckpointRow(key, tree.size, size, now, sign_checkpoint(checkpoint, signers)))
        self._dirty = set()
        self._last_size, self._last_at = size, now
        return rows

    def checkpoint(self) -> int:
        """Sign the committed trees now if they grew since the last checkpoint; the global size signed at."""
        if self.signer is None:
            raise NoSigningKey("no ledger signing key (OWNLLM_LEDGER_SIGNING_KEY_FILE)")
        with self._lock:
            for _ in range(5):
                if self.tables.position() != self.position:
                    self._reset()
                size = self._tree(GLOBAL).size
                if size == 0 or size == self._last_size:
                    return self._last_size
                if self._attempt(self._sign_and_write):
                    return size
            raise StaleLedgerPosition("could not sign: the ledger kept moving")

    def _sign_and_write(self) -> None:
        """Sign the committed trees and write the checkpoints, the position unchanged."""
        self.tables.apply(self.position, self.position, (), (), self._sign(self.clock()))

    def checkpoint_if_due(self) -> None:
        """Sign the tail of a quiet log once ``every_s`` passed (what the timer calls)."""
        with self._lock:
            if self.tables.position() == self.position and self._due(self.clock()):
                self.checkpoint()

    def start_timer(self, interval_s: float | None = None) -> None:
        """Call :meth:`checkpoint_if_due` from a daemon thread until :meth:`stop`."""
        if self.signer is None or self._timer is not None:
            return
        every = interval_s if interval_s is not None else min(self.every_s, 5.0)

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    self.checkpoint_if_due()
                except Exception as exc:  # the next tick retries
                    log.warning("ledger checkpoint failed (%s); retrying", type(exc).__name__)

        self._timer = threading.Thread(target=run, name="ledger-checkpoints", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        """Stop the timer."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
