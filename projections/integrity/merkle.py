"""An RFC 9162 Merkle tree: append-only, over a store of complete-subtree hashes.

Hashes (RFC 9162 §2.1.1): the empty tree's root is ``SHA-256("")``, a leaf is
``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``. A tree of ``n`` leaves
splits at the largest power of two below ``n``, so it is a row of complete subtrees ("peaks", one per
set bit of ``n``, largest first) folded from the right; every node of any such tree that is itself
complete is the node ``(level, index)`` covering leaves ``[index << level, (index + 1) << level)``.

The store keeps exactly those complete nodes. Appending a leaf writes it and the complete nodes it
closes (two writes per leaf on average); any root, and any proof for a size up to the current one,
reads O(log n) stored nodes. The store is an interface (:class:`NodeStore`) so a database table can
back it; :class:`MemoryStore` keeps one byte array per level. A store may also offer
``prefetch(nodes)``: proofs and past roots name every node they will read to it first, so a store
over a database reads them in one query (:mod:`projections.integrity.tiles`).

Proofs are checked by :mod:`projections.integrity.proofs`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def split_point(width: int) -> int:
    """The largest power of two strictly below ``width`` (``width`` >= 2): where RFC 9162 splits a tree."""
    return 1 << ((width - 1).bit_length() - 1)


class NodeStore(Protocol):
    """Hashes of complete subtrees by ``(level, index)``, written in append order, never rewritten."""

    def leaf_count(self) -> int:
        """How many leaves (level-0 nodes) are stored."""
        ...

    def get(self, level: int, index: int) -> bytes:
        """The stored hash of node ``(level, index)``; ``KeyError`` when absent."""
        ...

    def put(self, level: int, index: int, digest: bytes) -> None:
        """Store node ``(level, index)``, which must be the next one of its level."""
        ...


class MemoryStore:
    """A :class:`NodeStore` in memory: one byte array per level, 32 bytes per node."""

    def __init__(self) -> None:
        self._levels: list[bytearray] = []

    def leaf_count(self) -> int:
        return len(self._levels[0]) // HASH_SIZE if self._levels else 0

    def get(self, level: int, index: int) -> bytes:
        if index < 0 or level >= len(self._levels):
            raise KeyError((level, index))
        start = index * HASH_SIZE
        digest = bytes(self._levels[level][start : start + HASH_SIZE])
        if len(digest) != HASH_SIZE:
            raise KeyError((level, index))
        return digest

    def put(self, level: int, index: int, digest: bytes) -> None:
        while len(self._levels) <= level:
            self._levels.append(bytearray())
        row = self._levels[level]
        if index * HASH_SIZE != len(row):
            raise ValueError(f"node ({level}, {index}) is not the next one of its level (append-only)")
        row += digest


class MerkleTree:
    """An append-only RFC 9162 tree over a :class:`NodeStore`, answering roots and proofs for past sizes."""

    def __init__(self, store: NodeStore | None = None) -> None:
        self.store: NodeStore = store if store is not None else MemoryStore()
        self._size = self.store.leaf_count()
        # the last node written on each level: the left siblings the next appends close with
        self._last = [self.store.get(level, (self._size >> level) - 1) for level in range(self._size.bit_length())]

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._size

    def append(self, data: bytes) -> int:
        """Append a leaf holding ``data``; its index."""
        return self.append_hash(leaf_hash(data))

    def extend(self, items: Iterable[bytes]) -> None:
        """Append a leaf for each item, in order."""
        for data in items:
            self.append_hash(leaf_hash(data))

    def append_hash(self, digest: bytes) -> int:
        """Append a leaf by its leaf hash; its index."""
        if len(digest) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        index = node = self._size
        level = 0
        while True:
            self.store.put(level, node, digest)
            left = self._last[level] if node & 1 else b""
            if level == len(self._last):
                self._last.append(digest)
            else:
                self._last[level] = digest
            if not node & 1:
                break
            digest = node_hash(left, digest)
            level += 1
            node >>= 1
        self._size += 1
        return index

    def extend_hashes(self, digests: Sequence[bytes]) -> int:
        """Append leaves by their leaf hashes; the first one's index. The same tree as :meth:`append_hash`
        one by one, hashed a level at a time (a store with ``put_row`` takes each level's new nodes at once)."""
        first = self._size
        if {*map(len, digests)} - {HASH_SIZE}:
            raise ValueError("a leaf hash is 32 bytes")
        put_row = getattr(self.store, "put_row", None)
        last, level, start, row = self._last, 0, first, list(digests)  # the new nodes of ``level`` from ``start``
        while row:
            if put_row is not None:
                put_row(level, start, row)
            else:
                for offset, digest in enumerate(row):
                    self.store.put(level, start + offset, digest)
            nodes = [last[level], *row] if start & 1 else row  # an odd start closes the last node's pair
            if level == len(last):
                last.append(row[-1])
            else:
                last[level] = row[-1]
            row = [
                _sha256(b"\x01" + left + right).digest() for left, right in zip(nodes[::2], nodes[1::2], strict=False)
            ]
            level, start = level + 1, start >> 1
        self._size += len(digests)
        return first

    def leaf_hash_at(self, index: int) -> bytes:
        """The stored hash of leaf ``index``."""
        if not 0 <= index < self._size:
            raise IndexError(index)
        return self.store.get(0, index)

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the tree's first ``size`` leaves (default: all)."""
        size = self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        if size == self._size:
            peaks = [self._last[level] for level in reversed(range(size.bit_length())) if size >> level & 1]
            return _fold(peaks)
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves (RFC 9162 §2.1.3.1)."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise IndexError(f"leaf {index} is not in a tree of size {size}")
        ranges = []
        for level in range((size - 1).bit_length()):
            start = ((index >> level) ^ 1) << level  # the sibling's first leaf
            if start < size:  # else no sibling on this level: the node moves up as it is
                ranges.append((start, min(start + (1 << level), size)))
        return self._range_hashes(ranges)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The proof that the tree of ``old_size`` leaves is a prefix of that of ``new_size`` (RFC 9162 §2.1.4.1)."""
        new_size = self._check_size(new_size)
        if not 0 < old_size <= new_size:
            raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
        return self._range_hashes(self._subproof(old_size, 0, new_size, True))

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[tuple[int, int]]:
        """RFC 9162's SUBPROOF(m, D[start:end], complete), as the leaf ranges whose hashes it lists."""
        width = end - start
        if m == width:
            return [] if complete else [(start, end)]
        k = split_point(width)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), (start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), (start, start + k)]

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range starting on a boundary of its largest peak, from its peaks."""
        return self._range_hashes([(start, end)])[0]

    def _range_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """MTH of each range, reading every stored node they need at once (a tiled store fetches in one query)."""
        peaks = [_peaks(start, end) for start, end in ranges]
        prefetch = getattr(self.store, "prefetch", None)
        if prefetch is not None:
            prefetch([node for nodes in peaks for node in nodes])
        get = self.store.get
        return [_fold([get(level, index) for level, index in nodes]) for nodes in peaks]

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise ValueError(f"size {size} is outside 0..{self._size}")
        return size


def _peaks(start: int, end: int) -> list[tuple[int, int]]:
    """The stored nodes ``(level, index)`` of the complete subtrees of ``[start, end)``, largest first."""
    nodes = []
    for level in reversed(range((end - start).bit_length())):
        if (end - start) >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def _fold(peaks: list[bytes]) -> bytes:
    """Fold complete-subtree hashes, largest (leftmost) first, from the right into one root."""
    digest = peaks[-1]
    for left in reversed(peaks[:-1]):
        digest = node_hash(left, digest)
    return digest


class CompactRange:
    """The peaks of a growing tree without storing it: its root at every size, O(log n) memory."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []  # largest first

    def append_hash(self, digest: bytes) -> None:
        """Add a leaf by its leaf hash."""
        node = self.size
        while node & 1:
            digest = node_hash(self._peaks.pop(), digest)
            node >>= 1
        self._peaks.append(digest)
        self.size += 1

    def root(self) -> bytes:
        """The root of the leaves added so far."""
        return _fold(self._peaks) if self._peaks else EMPTY_ROOT


def root_of(leaf_hashes: Iterable[bytes]) -> tuple[int, bytes]:
    """The size and root of the tree of these leaf hashes, in one pass."""
    compact = CompactRange()
    for digest in leaf_hashes:
        compact.append_hash(digest)
    return compact.size, compact.root()
