"""Inclusion and consistency proofs: round trips over many tree sizes, and tamper rejection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.hasher import EMPTY_ROOT, leaf_hash
from ledger.proof import (
    CompactRange,
    MerkleTree,
    ProofError,
    merkle_root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 70
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
TREE = MerkleTree.from_leaf_hashes(LEAVES)
ROOTS = [merkle_root(LEAVES[:size]) for size in range(MAX_SIZE + 1)]


def test_roots_match_the_reference_definition_for_every_size() -> None:
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT == TREE.root(0)
    for size in range(1, MAX_SIZE + 1):
        compact.append(LEAVES[size - 1])
        assert compact.size == size
        assert compact.root() == ROOTS[size] == TREE.root(size)


def test_inclusion_round_trip_for_every_index_and_size() -> None:
    for size in range(1, MAX_SIZE + 1):
        for index in range(size):
            proof = TREE.inclusion_proof(index, size)
            verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


def test_consistency_round_trip_for_every_pair_of_sizes() -> None:
    for size2 in range(1, MAX_SIZE + 1):
        for size1 in range(1, size2 + 1):
            proof = TREE.consistency_proof(size1, size2)
            verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])


def _flip_each_byte(proof: list[bytes]):
    for position, node in enumerate(proof):
        for byte_index in range(len(node)):  # every byte of every hash
            for bit in (0x01, 0x80):
                changed = bytearray(node)
                changed[byte_index] ^= bit
                yield [*proof[:position], bytes(changed), *proof[position + 1 :]]


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (5, 7), (31, 64), (64, 70), (3, 70)])
def test_any_altered_inclusion_proof_byte_fails(index: int, size: int) -> None:
    proof = TREE.inclusion_proof(index, size)
    for altered in _flip_each_byte(proof):
        with pytest.raises(ProofError):
            verify_inclusion(index, size, LEAVES[index], altered, ROOTS[size])
    with pytest.raises(ProofError):
        verify_inclusion(index, size, LEAVES[index], [*proof, LEAVES[0]], ROOTS[size])
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, LEAVES[index], proof[:-1], ROOTS[size])
    with pytest.raises(ProofError):
        verify_inclusion(index, size, LEAVES[(index + 1) % MAX_SIZE], proof, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2"), [(1, 2), (3, 7), (4, 8), (6, 70), (32, 70), (69, 70)])
def test_any_altered_consistency_proof_byte_fails(size1: int, size2: int) -> None:
    proof = TREE.consistency_proof(size1, size2)
    for altered in _flip_each_byte(proof):
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, altered, ROOTS[size1], ROOTS[size2])
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof[:-1], ROOTS[size1], ROOTS[size2])
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2])
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2 - 1])


def test_a_forked_history_is_not_consistent() -> None:
    forked = list(LEAVES[:40])
    forked[10] = leaf_hash(b"rewritten")
    forked_tree = MerkleTree.from_leaf_hashes(forked)
    proof = forked_tree.consistency_proof(20, 40)
    with pytest.raises(ProofError):
        verify_consistency(20, 40, proof, ROOTS[20], forked_tree.root(40))


BIG = MerkleTree.from_leaf_hashes(leaf_hash(i.to_bytes(4, "big")) for i in range(3000))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_large_sizes_round_trip(data: st.DataObject) -> None:
    """Proofs over sizes far beyond the exhaustive range still verify (tree of 3000 leaves)."""
    size2 = data.draw(st.integers(1, BIG.size))
    size1 = data.draw(st.integers(1, size2))
    index = data.draw(st.integers(0, size2 - 1))
    root2 = BIG.root(size2)
    verify_inclusion(index, size2, BIG.leaf_hash(index), BIG.inclusion_proof(index, size2), root2)
    verify_consistency(size1, size2, BIG.consistency_proof(size1, size2), BIG.root(size1), root2)


def test_big_tree_root_matches_reference() -> None:
    leaves = [BIG.leaf_hash(i) for i in range(BIG.size)]
    assert BIG.root() == merkle_root(leaves)
    assert BIG.root(1234) == merkle_root(leaves[:1234])


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_bad_index_or_size_is_a_proof_error(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        root_from_inclusion_proof(index, size, LEAVES[0], [])


def test_tree_refuses_out_of_range_queries_with_proof_error() -> None:
    with pytest.raises(ProofError):
        TREE.root(MAX_SIZE + 1)
    with pytest.raises(ProofError):
        TREE.inclusion_proof(MAX_SIZE, MAX_SIZE)
    with pytest.raises(ProofError):
        TREE.consistency_proof(0, 5)
    with pytest.raises(ProofError):
        TREE.consistency_proof(6, 5)
    with pytest.raises(ProofError):
        TREE.append(b"short")
    assert ProofError.code == "ledger.proof_mismatch"


def test_wrong_length_hashes_are_refused() -> None:
    proof = TREE.inclusion_proof(2, 5)
    with pytest.raises(ProofError):
        verify_inclusion(2, 5, LEAVES[2][:31], proof, ROOTS[5])
    with pytest.raises(ProofError):
        verify_inclusion(2, 5, LEAVES[2], [*proof[:-1], proof[-1] + b"\x00"], ROOTS[5])
