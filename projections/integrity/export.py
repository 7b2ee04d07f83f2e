"""A tenant's bundle from the ledger's committed rows: its events as stored, proofs in both trees, checkpoints.

The proofs are against the newest global checkpoint and the tenant's newest checkpoint; events
after the tenant's newest checkpoint are left for the next export (sign one first with
``ownllm audit checkpoint``, which ``ownllm audit export`` does). Every checkpoint comes with its
consistency proof to the newest of its tree, so any of them that a tenant pinned is proven extended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from projections.integrity.bundle_format import Bundle, BundleEvent
from projections.integrity.ledger_rows import GLOBAL, CheckpointRow, LeafRow
from projections.integrity.merkle import MerkleTree
from projections.integrity.verify import InclusionProof


class ExportError(RuntimeError):
    """Nothing to export yet (no checkpoint covers the tenant), or the store lacks an event's bytes."""


class Snapshot(Protocol):
    """The ledger's rows as an export reads them (``projections.ledger_tables.LedgerSnapshot``)."""

    def tree(self, key: str) -> MerkleTree: ...

    def tenant_leaves(
        self, tenant: str, below: int, since: datetime | None, until: datetime | None
    ) -> list[LeafRow]: ...

    def checkpoints(self, tree: str) -> list[CheckpointRow]: ...


def _consistency(tree: MerkleTree, rows: Sequence[CheckpointRow], newest: int) -> dict[tuple[int, int], list[bytes]]:
    return {(r.size, newest): tree.consistency_proof(r.size, newest) for r in rows if 0 < r.size <= newest}


def build_bundle(
    snapshot: Snapshot, stored: Callable[[list[int]], dict[int, bytes]], origin: str, tenant: str,
    keys: Sequence[str], since: datetime | None = None, until: datetime | None = None,
) -> Bundle:  # fmt: skip
    """The bundle of ``tenant``'s events (at or after ``since``, before ``until``) up to its newest checkpoint."""
    global_rows, tenant_rows = snapshot.checkpoints(GLOBAL), snapshot.checkpoints(tenant)
    if not global_rows or not tenant_rows:
        raise ExportError("no signed checkpoint covers this tenant yet; run `ownllm audit checkpoint`")
    newest, own = global_rows[-1].size, tenant_rows[-1].size
    global_tree, tenant_tree = snapshot.tree(GLOBAL), snapshot.tree(tenant)
    leaves = snapshot.tenant_leaves(tenant, own, since, until)
    states = stored([leaf.notification_id for leaf in leaves])
    missing = [leaf.notification_id for leaf in leaves if leaf.notification_id not in states]
    if missing:
        raise ExportError(f"the event store lacks notification ids {missing[:10]} that the ledger holds")
    return Bundle(
        origin=origin,
        tenant_id=tenant,
        events=[BundleEvent(x.leaf, _int(x.tenant_leaf), x.notification_id, states[x.notification_id]) for x in leaves],
        global_proofs=[
            InclusionProof(x.leaf, newest, tuple(global_tree.inclusion_proof(x.leaf, newest))) for x in leaves
        ],
        tenant_proofs=[
            InclusionProof(_int(x.tenant_leaf), own, tuple(tenant_tree.inclusion_proof(_int(x.tenant_leaf), own)))
            for x in leaves
        ],
        global_checkpoints=[r.note for r in global_rows],
        tenant_checkpoints=[r.note for r in tenant_rows],
        global_consistency=_consistency(global_tree, global_rows, newest),
        tenant_consistency=_consistency(tenant_tree, tenant_rows, own),
        keys=list(keys),
        since=None if since is None else since.isoformat(),
        until=None if until is None else until.isoformat(),
    )


def _int(value: Any) -> int:
    assert isinstance(value, int)
    return value
