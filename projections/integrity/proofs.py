"""Checking RFC 9162 proofs: inclusion (§2.1.3.2) and consistency (§2.1.4.2), with no tree at hand.

Verification also rejects what broke other verifiers: a proof against a tree of size 0, an index outside
the tree, and a proof whose length does not fit the sizes claimed (so one proof cannot verify for several sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

from projections.integrity.merkle import HASH_SIZE, node_hash, split_point


class ProofError(ValueError):
    """A proof that does not prove what it claims."""


def inclusion_proof_size(index: int, size: int) -> int:
    """How many hashes the inclusion proof of leaf ``index`` in a tree of ``size`` leaves holds."""
    return sum(1 for level in range((size - 1).bit_length()) if ((index >> level) ^ 1) << level < size)


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """How many hashes the consistency proof from ``old_size`` to ``new_size`` (0 < old <= new) holds."""
    count, complete, m, n = 0, True, old_size, new_size
    while m != n:
        k = split_point(n)
        if m <= k:
            n = k
        else:
            m, n, complete = m - k, n - k, False
        count += 1
    return count if complete else count + 1


def _check_hashes(*hashes: bytes) -> None:
    if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in hashes):
        raise ProofError("every hash in a proof is 32 bytes")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` leaves with ``root``."""
    if size <= 0:
        raise ProofError("no inclusion proof in an empty tree")
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    _check_hashes(leaf, root, *proof)
    if len(proof) != inclusion_proof_size(index, size):
        raise ProofError(f"a proof for leaf {index} of {size} holds {inclusion_proof_size(index, size)} hashes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with this root")


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> None:
    """Check that the tree of ``old_size`` leaves with ``old_root`` is a prefix of ``new_size`` with ``new_root``."""
    if old_size <= 0:
        raise ProofError("no consistency proof from an empty tree")
    if old_size > new_size:
        raise ProofError(f"size {old_size} cannot be a prefix of size {new_size}")
    _check_hashes(old_root, new_root, *proof)
    if len(proof) != consistency_proof_size(old_size, new_size):
        raise ProofError(f"a proof from {old_size} to {new_size} holds {consistency_proof_size(old_size, new_size)}")
    if old_size == new_size:
        if old_root != new_root:
            raise ProofError(f"two different roots for size {old_size}")
        return
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise ProofError(f"the tree of size {old_size} is not a prefix of this tree of size {new_size}")
