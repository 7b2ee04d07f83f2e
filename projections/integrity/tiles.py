"""A Merkle tree's hashes stored as tiles (the C2SP ``tlog-tiles`` layout): rows of up to 256 hashes.

Tile ``(t, k)`` ("tile level" ``t``, index ``k``) holds the hashes of nodes ``(8t, 256k)`` to
``(8t, 256k + 255)``: its bottom row, concatenated. The seven levels above it inside the tile
(nodes at levels ``8t + 1`` .. ``8t + 7``) are hashed from the bottom row when read (254 hashes
for a full tile), except that a full tile's stored row goes on after its bottom row with those
levels' 254 hashes, row by row upwards (:data:`INNER_BYTES`; written once, when the tile fills,
from the nodes the writer hashed anyway; the ledger does so for its global tree only, as the
extra bytes cost appends): a proof then reads every node it needs and hashes none.
The bottom row alone (the C2SP tile) is the first :data:`TILE_BYTES`; a full tile stored without
its inner rows (written before them) still reads, hashed as before. The tile's own root is the
bottom-row entry of tile ``(t + 1, k >> 8)``. Only the rightmost tile of each tile level is partial
(width < 256); it grows in place as leaves are appended, and a node inside a partial tile exists
when its subtree is complete.

Why: one row per node costs about two indexed rows per leaf and tree, and a proof one query per
node. With tiles, appending B leaves rewrites the right edge (one row per tile level) and adds a row
per 256 leaves; an inclusion proof reads at most ``ceil(height / 8)`` tiles (3 at 10M leaves), all
in one query (:meth:`TileStore.prefetch`).

:class:`TileStore` is a :class:`~projections.integrity.merkle.NodeStore`, so
:class:`~projections.integrity.merkle.MerkleTree` runs over it unchanged: ``put`` appends to a
tile's bottom row when the level is a multiple of 8 and drops the other levels (they are
recomputed); ``get`` reads a node from its tile. The store holds the tiles it was given or grew
(the writer: the right edge, whose grown tiles :meth:`TileStore.take_dirty` hands over for writing
in the caller's transaction) and asks ``fetch`` for the others (a reader), keeping full tiles,
which never change, with the levels already hashed, in a shared :class:`TileCache`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from projections.integrity.merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE
MAX_TILE_LEVELS = 64 // TILE_HEIGHT  # a tree of fewer than 2**64 leaves
INNER_BYTES = sum(TILE_WIDTH >> height for height in range(1, TILE_HEIGHT)) * HASH_SIZE  # 254 hashes

TileKey = tuple[int, int]  # (tile level, tile index)
Fetch = Callable[[Sequence[TileKey]], dict[TileKey, bytes]]

_sha256 = hashlib.sha256
_PAIR = 2 * HASH_SIZE


def tile_of(level: int, index: int) -> TileKey:
    """The tile holding node ``(level, index)`` (in its bottom row, or computed from it)."""
    tile_level, height = divmod(level, TILE_HEIGHT)
    return tile_level, index >> (TILE_HEIGHT - height)


def edge_tiles(size: int) -> list[TileKey]:
    """The tiles holding the last complete node of each level of a tree of ``size`` leaves (what appending needs).

    Per tile level: the last tile and, when that one is partial, the full one before it (a partial
    tile of width w holds no complete node higher than log2(w) levels above its bottom).
    """
    keys, tile_level = [], 0
    while count := size >> (TILE_HEIGHT * tile_level):
        last = (count - 1) >> TILE_HEIGHT
        keys += [(tile_level, last - 1), (tile_level, last)] if count % TILE_WIDTH and last else [(tile_level, last)]
        tile_level += 1
    return keys


def width_of(stored: bytes) -> int:
    """How many bottom-row hashes a stored tile holds (a full tile's inner rows aside)."""
    return min(len(stored) // HASH_SIZE, TILE_WIDTH)


def size_of(last_leaf_tile: int, width: int) -> int:
    """A tree's size from its last level-0 tile's index and width."""
    return last_leaf_tile * TILE_WIDTH + width


def inner_rows(bottom: bytes) -> bytes:
    """A full tile's inner rows (heights 1 to 7, each concatenated, lowest first), hashed from its bottom row."""
    tile = Tile(bottom)
    tile.node(TILE_HEIGHT - 1, 0)
    return b"".join(tile.rows[1:])


class Tile:
    """A tile's bottom row and the rows above it inside the tile: stored (a full tile's), or hashed when first read."""

    __slots__ = ("rows",)

    def __init__(self, stored: bytes) -> None:
        if len(stored) == TILE_BYTES + INNER_BYTES:
            self.rows, at = [bytes(stored[:TILE_BYTES])], TILE_BYTES
            for height in range(1, TILE_HEIGHT):
                end = at + (TILE_WIDTH >> height) * HASH_SIZE
                self.rows.append(bytes(stored[at:end]))
                at = end
            return
        if len(stored) % HASH_SIZE or not 0 < len(stored) <= TILE_BYTES:
            raise ValueError(f"a tile holds 1 to {TILE_WIDTH} hashes (and a full one its inner rows), "
                             f"not {len(stored)} bytes")  # fmt: skip
        self.rows = [bytes(stored)]

    @property
    def width(self) -> int:
        return len(self.rows[0]) // HASH_SIZE

    def node(self, height: int, offset: int) -> bytes:
        """The hash of the complete node ``height`` levels above the bottom row, ``offset`` along; ``KeyError``."""
        rows = self.rows
        while len(rows) <= height:
            below = rows[-1]
            rows.append(b"".join([_sha256(b"\x01" + below[i : i + _PAIR]).digest()
                                  for i in range(0, len(below) - _PAIR + 1, _PAIR)]))  # fmt: skip
        start = offset * HASH_SIZE
        digest = rows[height][start : start + HASH_SIZE]
        if offset < 0 or len(digest) != HASH_SIZE:
            raise KeyError((height, offset))
        return digest


class TileCache:
    """Full tiles (immutable) by ``(tree, tile level, tile index)``, least recently used dropped first."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._tiles: OrderedDict[tuple[str, int, int], Tile] = OrderedDict()
        self._lock = threading.Lock()  # readers in several threads share one cache

    def get(self, key: tuple[str, int, int]) -> Tile | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: tuple[str, int, int], tile: Tile) -> None:
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.capacity:
                self._tiles.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()


class TileStore:
    """A :class:`~projections.integrity.merkle.NodeStore` over tiles: those held in memory, the rest fetched."""

    def __init__(
        self,
        size: int,
        tiles: dict[TileKey, bytes] | None = None,
        fetch: Fetch | None = None,
        cache: TileCache | None = None,
        name: str = "",
        inner: bool = True,
    ) -> None:
        self._size = size
        self._with_inner = inner  # store full tiles with their inner rows (what a proof reads without hashing)
        self._held: dict[TileKey, bytearray] = {key: bytearray(value) for key, value in (tiles or {}).items()}
        self._views: dict[TileKey, Tile] = {}
        self._dirty: set[TileKey] = set()
        self._inner: dict[TileKey, dict[int, bytearray]] = {}  # rows inside tiles not yet full, by height
        self._recent: dict[TileKey, Tile] = {}  # what the last fetch brought, whatever the cache drops since
        self._fetch, self._cache, self._name = fetch, cache, name

    def leaf_count(self) -> int:
        return self._size

    def get(self, level: int, index: int) -> bytes:
        key = tile_of(level, index)
        height = level % TILE_HEIGHT
        tile = self._tile(key)
        if tile is None:
            self.prefetch([(level, index)])
            tile = self._tile(key)
            if tile is None:
                raise KeyError((level, index))
        return tile.node(height, index - (key[1] << (TILE_HEIGHT - height)))

    def put(self, level: int, index: int, digest: bytes) -> None:
        if len(digest) != HASH_SIZE:
            raise ValueError("a node hash is 32 bytes")
        if level % TILE_HEIGHT:
            self._keep_inner(level, index, [digest])  # stored with the tile once it is full
            return
        key = (level // TILE_HEIGHT, index >> TILE_HEIGHT)
        row = self._held.get(key, bytearray())
        if len(row) != (index % TILE_WIDTH) * HASH_SIZE:
            raise ValueError(f"node ({level}, {index}) is not the next one of its tile (append-only)")
        row += digest
        self._held[key] = row
        self._views.pop(key, None)
        self._dirty.add(key)
        if level == 0:
            self._size = index + 1

    def put_row(self, level: int, first: int, digests: Sequence[bytes]) -> None:
        """Store nodes ``(level, first)``, ``(level, first + 1)``, ... at once (what :meth:`put` does for each)."""
        if level % TILE_HEIGHT:
            self._keep_inner(level, first, digests)
            return
        tile_level, index, at = level // TILE_HEIGHT, first, 0
        while at < len(digests):
            key = (tile_level, index >> TILE_HEIGHT)
            chunk = digests[at : at + TILE_WIDTH - index % TILE_WIDTH]
            row = self._held.get(key, bytearray())
            if len(row) != (index % TILE_WIDTH) * HASH_SIZE or {*map(len, chunk)} - {HASH_SIZE}:
                raise ValueError(f"node ({level}, {index}) is not the next one of its tile (append-only)")
            row += b"".join(chunk)
            self._held[key] = row
            self._views.pop(key, None)
            self._dirty.add(key)
            at, index = at + len(chunk), index + len(chunk)
        if level == 0 and digests:
            self._size = first + len(digests)

    def _keep_inner(self, level: int, first: int, digests: Sequence[bytes]) -> None:
        """Keep nodes inside tiles, row by row from each tile's first, for the tiles' inner rows once full.

        A row that does not start at its tile's first node (this store opened on a partial tile) is
        not kept: that tile's inner rows are hashed from its bottom row when it fills.
        """
        if not self._with_inner:
            return
        tile_level, height = divmod(level, TILE_HEIGHT)
        per = TILE_WIDTH >> height  # nodes of this height in one tile
        index, at = first, 0
        while at < len(digests):
            key, offset = (tile_level, index // per), index % per
            chunk = digests[at : at + per - offset]
            rows = self._inner.setdefault(key, {})
            row = rows.get(height, bytearray()) if offset else rows.setdefault(height, bytearray())
            if len(row) == offset * HASH_SIZE and height in rows:
                row += b"".join(chunk)
            else:
                rows.pop(height, None)
            at, index = at + len(chunk), index + len(chunk)

    def _stored(self, key: TileKey) -> bytes:
        """A grown tile as stored: its bottom row, and when full its inner rows after it."""
        bottom = bytes(self._held[key][:TILE_BYTES])
        if len(bottom) < TILE_BYTES or not self._with_inner:
            return bottom
        rows = self._inner.pop(key, {})
        kept = [rows.get(height, b"") for height in range(1, TILE_HEIGHT)]
        if all(len(row) == (TILE_WIDTH >> h) * HASH_SIZE for h, row in enumerate(kept, 1)):
            return bottom + b"".join(kept)
        return bottom + inner_rows(bottom)

    def prefetch(self, nodes: Iterable[tuple[int, int]]) -> None:
        """Load the tiles of these nodes that are neither held nor cached, in one ``fetch``."""
        if self._fetch is None:
            return
        wanted = {tile_of(level, index) for level, index in nodes}
        missing = sorted(key for key in wanted if key not in self._held and self._cached(key) is None)
        if not missing:
            return
        self._recent = {}
        for key, bottom in self._fetch(missing).items():
            if len(bottom) < TILE_BYTES:
                self._held[key] = bytearray(bottom)  # a partial tile: this store's size decides its width
                continue
            tile = self._recent[key] = Tile(bottom)
            if self._cache is not None:
                self._cache.put((self._name, *key), tile)

    def take_dirty(self) -> list[tuple[int, int, bytes]]:
        """The tiles grown since the last call, as ``(tile level, tile index, hashes)``; then :meth:`trim`."""
        grown = [(key[0], key[1], self._stored(key)) for key in sorted(self._dirty)]
        self._dirty.clear()
        self.trim()
        return grown

    def trim(self) -> None:
        """Forget the held tiles but the last of each tile level (an appending tree reads none once open)."""
        last: dict[int, int] = {}
        for tile_level, index in self._held:
            last[tile_level] = max(index, last.get(tile_level, index))
        for key in [key for key in self._held if key[1] != last[key[0]] and key not in self._dirty]:
            del self._held[key]
            self._views.pop(key, None)

    def _cached(self, key: TileKey) -> Tile | None:
        tile = self._recent.get(key)
        if tile is None and self._cache is not None:
            tile = self._cache.get((self._name, *key))
        return tile

    def _tile(self, key: TileKey) -> Tile | None:
        tile = self._views.get(key)
        if tile is None:
            row = self._held.get(key)
            if row is None:
                return self._cached(key)
            tile = self._views[key] = Tile(bytes(row))
        return tile
