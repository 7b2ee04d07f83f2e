"""The RFC 9162 tree: known answers, a naive recursive reference, and proofs that verify only what is true."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.integrity.merkle import EMPTY_ROOT, CompactRange, MemoryStore, MerkleTree, leaf_hash, root_of
from projections.integrity.proofs import (
    ProofError,
    consistency_proof_size,
    inclusion_proof_size,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962's test leaves and the roots of their first 1..8 (certificate-transparency's reference vectors)
LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
MAX = 80


# --- a naive reference, straight from RFC 9162 §2.1, sharing no code with the module ---


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return ref_leaf(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    if m == len(leaves):
        return [] if complete else [ref_mth(leaves)]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m <= k:
        return [*ref_subproof(m, leaves[:k], complete), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


DATA = [b"event %d" % i for i in range(MAX)]
TREE = MerkleTree()
TREE.extend(DATA)
ROOT_AT = [TREE.root(size) for size in range(MAX + 1)]


def fails(check, *args) -> bool:
    try:
        check(*args)
    except ProofError:
        return True
    return False


# --- known answers ---


def test_the_empty_tree_has_the_root_of_the_empty_string() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT == root_of([])[1]


def test_rfc6962_vectors() -> None:
    tree = MerkleTree()
    tree.extend(bytes.fromhex(x) for x in LEAVES)
    assert [tree.root(size).hex() for size in range(1, 9)] == ROOTS
    assert [p.hex() for p in tree.inclusion_proof(5)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert tree.inclusion_proof(2, 3) == [bytes.fromhex(ROOTS[1])]
    assert [p.hex() for p in tree.consistency_proof(6)] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [p.hex() for p in tree.consistency_proof(2, 5)] == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]
    verify_consistency(6, 8, tree.consistency_proof(6), bytes.fromhex(ROOTS[5]), bytes.fromhex(ROOTS[7]))
    assert fails(verify_consistency, 6, 8, tree.consistency_proof(6), bytes.fromhex(ROOTS[4]), bytes.fromhex(ROOTS[7]))


def test_roots_and_proofs_equal_the_naive_reference_for_every_small_size() -> None:
    for size in range(MAX + 1):
        assert ROOT_AT[size] == ref_mth(DATA[:size])
        assert root_of(leaf_hash(d) for d in DATA[:size]) == (size, ROOT_AT[size])
    for size in range(1, 40):
        for index in range(size):
            proof = TREE.inclusion_proof(index, size)
            assert proof == ref_path(index, DATA[:size])
            assert len(proof) == inclusion_proof_size(index, size)
        for old in range(1, size + 1):
            proof = TREE.consistency_proof(old, size)
            assert proof == ref_subproof(old, DATA[:size], True)
            assert len(proof) == consistency_proof_size(old, size)


def test_a_tree_reopened_on_its_store_goes_on_as_if_never_closed() -> None:
    store = MemoryStore()
    first = MerkleTree(store)
    first.extend(DATA[:37])
    again = MerkleTree(store)
    assert again.size == 37 and again.root() == ROOT_AT[37]
    again.extend(DATA[37:])
    assert again.root() == TREE.root() and again.inclusion_proof(5, 50) == TREE.inclusion_proof(5, 50)


def test_the_store_is_append_only() -> None:
    store = MemoryStore()
    store.put(0, 0, b"a" * 32)
    with pytest.raises(ValueError):
        store.put(0, 0, b"b" * 32)
    with pytest.raises(ValueError):
        store.put(0, 2, b"b" * 32)
    with pytest.raises(KeyError):
        store.get(0, 1)
    with pytest.raises(KeyError):
        store.get(3, 0)


def test_a_compact_range_has_the_root_of_every_prefix() -> None:
    compact = CompactRange()
    for size, data in enumerate(DATA, 1):
        compact.append_hash(leaf_hash(data))
        assert compact.root() == ROOT_AT[size]


# --- what verification refuses ---


def test_nothing_is_proven_in_or_from_an_empty_tree() -> None:
    assert fails(verify_inclusion, 0, 0, leaf_hash(b""), [], EMPTY_ROOT)
    assert fails(verify_consistency, 0, 5, [], EMPTY_ROOT, ROOT_AT[5])
    assert fails(verify_consistency, 0, 5, TREE.consistency_proof(1, 5), EMPTY_ROOT, ROOT_AT[5])
    with pytest.raises(ValueError):
        TREE.consistency_proof(0, 5)


def test_an_index_outside_the_tree_is_refused() -> None:
    proof = TREE.inclusion_proof(3, 4)
    assert fails(verify_inclusion, 4, 4, leaf_hash(DATA[3]), proof, ROOT_AT[4])
    assert fails(verify_inclusion, -1, 4, leaf_hash(DATA[3]), proof, ROOT_AT[4])
    with pytest.raises(IndexError):
        TREE.inclusion_proof(4, 4)


def test_a_proof_of_the_wrong_length_is_refused_even_with_valid_hashes() -> None:
    proof = TREE.consistency_proof(6, 8)
    assert fails(verify_consistency, 6, 8, [*proof, proof[-1]], ROOT_AT[6], ROOT_AT[8])
    assert fails(verify_consistency, 6, 8, proof[:-1], ROOT_AT[6], ROOT_AT[8])
    # equal sizes: the proof is empty and the roots equal
    assert fails(verify_consistency, 8, 8, [ROOT_AT[8]], ROOT_AT[8], ROOT_AT[8])
    assert fails(verify_consistency, 8, 8, [], ROOT_AT[7], ROOT_AT[8])
    verify_consistency(8, 8, [], ROOT_AT[8], ROOT_AT[8])
    inclusion = TREE.inclusion_proof(5, 8)
    assert fails(verify_inclusion, 5, 8, leaf_hash(DATA[5]), [*inclusion, ROOT_AT[1]], ROOT_AT[8])
    assert fails(verify_inclusion, 5, 8, leaf_hash(DATA[5]), inclusion[:-1], ROOT_AT[8])
    assert fails(verify_inclusion, 5, 8, leaf_hash(DATA[5]), [*inclusion[:-1], b"short"], ROOT_AT[8])


def test_a_proof_holds_for_its_own_sizes_only_when_roots_come_with_their_sizes() -> None:
    """Exhaustively: a proof verifies for no other (index or old size, size) with that tree's roots.

    With the roots held fixed, RFC 9162 proofs of the same shape recur at other sizes (the proof
    from 23 to 24 also walks from 15 to 16): so a verifier must take each size and its root from the
    same signed checkpoint, which ``verify.py`` does.
    """
    for size in range(1, 17):
        for index in range(size):
            proof = TREE.inclusion_proof(index, size)
            passing = [
                (i, n)
                for n in range(1, 33)
                for i in range(n)
                if not fails(verify_inclusion, i, n, leaf_hash(DATA[index]), proof, ROOT_AT[n])
            ]
            assert passing == [(index, size)]
        for old in range(1, size):
            proof = TREE.consistency_proof(old, size)
            passing = [
                (m, n)
                for n in range(1, 33)
                for m in range(1, n + 1)
                if not fails(verify_consistency, m, n, proof, ROOT_AT[m], ROOT_AT[n])
            ]
            assert passing == [(old, size)]


# --- properties ---


def flip(proof: list[bytes], which: int, byte: int, bit: int) -> list[bytes]:
    element = bytearray(proof[which % len(proof)])
    element[byte] ^= 1 << bit
    return [bytes(element) if k == which % len(proof) else p for k, p in enumerate(proof)]


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, MAX))
def test_inclusion_proofs_verify_and_nothing_else_does(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = TREE.inclusion_proof(index, size)
    leaf = leaf_hash(DATA[index])
    verify_inclusion(index, size, leaf, proof, ROOT_AT[size])
    if proof:
        which, byte, bit = data.draw(st.integers(0, 99)), data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
        assert fails(verify_inclusion, index, size, leaf, flip(proof, which, byte, bit), ROOT_AT[size])
    other_index = data.draw(st.integers(-2, size + 2).filter(lambda i: i != index))
    assert fails(verify_inclusion, other_index, size, leaf, proof, ROOT_AT[size])
    other_size = data.draw(st.integers(0, MAX).filter(lambda n: n != size))
    assert fails(verify_inclusion, index, other_size, leaf, proof, ROOT_AT[other_size])
    assert fails(verify_inclusion, index, size, leaf_hash(DATA[index] + b"!"), proof, ROOT_AT[size])


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, MAX))
def test_consistency_proofs_verify_and_nothing_else_does(data: st.DataObject, new: int) -> None:
    old = data.draw(st.integers(1, new))
    proof = TREE.consistency_proof(old, new)
    verify_consistency(old, new, proof, ROOT_AT[old], ROOT_AT[new])
    if proof:
        which, byte, bit = data.draw(st.integers(0, 99)), data.draw(st.integers(0, 31)), data.draw(st.integers(0, 7))
        assert fails(verify_consistency, old, new, flip(proof, which, byte, bit), ROOT_AT[old], ROOT_AT[new])
    m = data.draw(st.integers(0, MAX))
    n = data.draw(st.integers(0, MAX))
    if (m, n) != (old, new) and not (m == n and old == new):
        assert fails(verify_consistency, m, n, proof, ROOT_AT[m], ROOT_AT[n])
    if old < new:
        assert fails(verify_consistency, old, new, proof, ROOT_AT[old - 1], ROOT_AT[new])
        assert fails(verify_consistency, old, new, proof, ROOT_AT[old], ROOT_AT[new - 1])
