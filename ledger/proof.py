"""Merkle inclusion and consistency proofs (RFC 6962 section 2.1 / RFC 9162 section 2.1).

Imports nothing but ``ledger.hasher`` (itself stdlib only), so it can travel with
``ledger/receipt.py`` to an outside verifier.

Conventions: leaves are numbered from 0; a tree of ``size`` leaves covers the half-open range
``[0, size)``; ``MTH(D[a:b])`` is the RFC hash of leaves ``a`` (included) to ``b`` (excluded).
Proof lists are ordered from the leaf level upwards, each element a 32-byte hash. Every mismatch
or malformed input raises the one typed error ``ProofError`` (a ``ValueError``), never a bare
exception.

API:

- ``verify_inclusion(index, size, leaf_hash, proof, root) -> None``
- ``root_from_inclusion_proof(index, size, leaf_hash, proof) -> bytes``
- ``verify_consistency(size1, size2, proof, root1, root2) -> None``
- ``merkle_root(leaf_hashes) -> bytes``: reference RFC 6962 MTH over a list of leaf hashes.
- ``CompactRange``: O(log n) state; ``append(leaf_hash)``, ``root()``, ``size``. Use it where only
  roots are needed (auditing, recomputing a checkpoint root).
- ``MerkleTree``: keeps every complete subtree hash (about 64 bytes per leaf, in one
  ``bytearray`` per level) so that ``root(size)``, ``inclusion_proof(index, size)`` and
  ``consistency_proof(size1, size2)`` cost O(log n) hashes for any ``size <= tree.size``.
  ``append(leaf_hash)`` is amortised O(1). ``leaf_hash(index)`` returns a stored leaf hash.

Note: ``append`` takes the *leaf hash* (``hasher.leaf_hash(data)``), not the leaf data; in this
ledger the leaf data is the 32-byte block hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ledger.hasher import EMPTY_ROOT, HASH_SIZE, node_hash


class ProofError(ValueError):
    """A proof, a hash or a tree-size argument did not check out; ``code`` is stable."""

    code = "ledger.proof_mismatch"


def _split_point(size: int) -> int:
    """Largest power of two strictly below ``size`` (RFC 6962 ``k``); requires ``size >= 2``."""
    return 1 << ((size - 1).bit_length() - 1)


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes")


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Reference ``MTH`` over already-hashed leaves, straight from the RFC's recursive definition.

    O(n); used as the test oracle and for small trees. Empty input gives ``EMPTY_ROOT``.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    if len(leaf_hashes) == 1:
        return bytes(leaf_hashes[0])
    k = _split_point(len(leaf_hashes))
    return node_hash(merkle_root(leaf_hashes[:k]), merkle_root(leaf_hashes[k:]))


def _decompose_inclusion(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof of ``index`` in a tree of ``size`` into (inner, border) lengths.

    ``inner`` proof hashes lie below the point where the paths to ``index`` and ``size - 1``
    diverge; the ``border`` hashes above it are all left siblings on the tree's right border.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for level, sibling in enumerate(proof):
        if (index >> level) & 1:
            seed = node_hash(sibling, seed)
        else:
            seed = node_hash(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like ``_chain_inner`` but only left siblings count: the hash of the older, smaller tree."""
    for level, sibling in enumerate(proof):
        if (index >> level) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root implied by ``proof`` for leaf ``index`` in a tree of ``size`` leaves.

    Preconditions (else ``ProofError``): ``0 <= index < size``, 32-byte leaf and proof hashes,
    and exactly the number of proof hashes the (index, size) shape requires.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside the tree [0, {size})")
    _check_hash("leaf hash", leaf_hash)
    for node in proof:
        _check_hash("proof hash", node)
    inner, border = _decompose_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, expected {inner + border}")
    seed = _chain_inner(bytes(leaf_hash), proof[:inner], index)
    return _chain_border_right(seed, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` with ``leaf_hash`` is in the tree of ``size`` with ``root``.

    Raises ``ProofError`` on any mismatch; returns ``None`` when the proof holds.
    """
    if root_from_inclusion_proof(index, size, leaf_hash, proof) != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that tree ``[0, size1)`` with ``root1`` is a prefix of ``[0, size2)`` with ``root2``.

    Requires ``0 < size1 <= size2``. A proof from the empty tree is refused as meaningless (the
    transparency-dev test vectors and RFC 9162 agree: it would prove nothing). Equal sizes need an
    empty proof and equal roots. Raises ``ProofError`` on any mismatch.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"tree sizes must satisfy 0 < size1 <= size2, got {size1}, {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("equal tree sizes need an empty consistency proof")
        if root1 != root2:
            raise ProofError("equal tree sizes but different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof for different tree sizes")
    for node in proof:
        _check_hash("proof hash", node)
    inner, border = _decompose_inclusion(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    inner -= shift
    # The old tree's right-most complete subtree (size 2**shift) is either the whole old tree,
    # whose root the verifier already has, or the first proof hash.
    if size1 == 1 << shift:
        seed, rest = bytes(root1), proof
    else:
        seed, rest = bytes(proof[0]), proof[1:]
    if len(rest) != inner + border:
        expected = inner + border + (0 if size1 == 1 << shift else 1)
        raise ProofError(f"consistency proof has {len(proof)} hashes, expected {expected}")
    mask = (size1 - 1) >> shift
    old_root = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if old_root != root1:
        raise ProofError("consistency proof does not lead to the old root")
    new_root = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if new_root != root2:
        raise ProofError("consistency proof does not lead to the new root")


class CompactRange:
    """Merkle accumulator over ``[0, size)`` holding only O(log n) subtree hashes.

    The stored hashes are the roots of the complete subtrees given by the binary digits of
    ``size``, largest (left-most) first; appending merges equal-sized neighbours.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash; amortised O(1), worst case O(log n) node hashes."""
        hashes = self._hashes
        size = self._size
        node = leaf_hash
        while size & 1:
            node = node_hash(hashes.pop(), node)
            size >>= 1
        hashes.append(node)
        self._size += 1

    def root(self) -> bytes:
        """Root hash of the tree of all leaves appended so far (``EMPTY_ROOT`` when empty)."""
        if not self._hashes:
            return EMPTY_ROOT
        node = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            node = node_hash(left, node)
        return node


class MerkleTree:
    """Append-only Merkle tree storing every complete subtree hash, for serving proofs.

    ``_levels[h]`` is one ``bytearray`` holding, back to back, the 32-byte hashes of the
    complete subtrees of ``2**h`` leaves in order: entry ``i`` covers leaves
    ``[i * 2**h, (i + 1) * 2**h)``. Any node the RFC recursion asks for is either such a stored
    aligned subtree or lies on the right border of the requested tree and is rebuilt from
    O(log n) stored ones, so every query costs O(log n) hashes.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MerkleTree:
        """Build a tree by appending each leaf hash in order."""
        tree = cls()
        for leaf in leaf_hashes:
            tree.append(leaf)
        return tree

    @property
    def size(self) -> int:
        """Number of leaves in the tree."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append one 32-byte leaf hash; completes at most log2(n) parent nodes."""
        _check_hash("leaf hash", leaf_hash)
        levels = self._levels
        levels[0] += leaf_hash
        index = self._size
        level = 0
        node = leaf_hash
        # The new node is a right child while its index is odd: build its parent.
        while index & 1:
            offset = (index - 1) * HASH_SIZE
            node = node_hash(bytes(levels[level][offset : offset + HASH_SIZE]), node)
            level += 1
            if len(levels) == level:
                levels.append(bytearray())
            levels[level] += node
            index >>= 1
        self._size += 1

    def leaf_hash(self, index: int) -> bytes:
        """The stored leaf hash at ``index`` (``0 <= index < size``)."""
        if not 0 <= index < self._size:
            raise ProofError(f"leaf index {index} is outside the tree [0, {self._size})")
        offset = index * HASH_SIZE
        return bytes(self._levels[0][offset : offset + HASH_SIZE])

    def _range_hash(self, start: int, end: int) -> bytes:
        """``MTH(D[start:end])`` for a range the RFC recursion produces (start aligned)."""
        count = end - start
        if count & (count - 1) == 0:  # a complete, aligned subtree: stored
            level = count.bit_length() - 1
            offset = (start >> level) * HASH_SIZE
            return bytes(self._levels[level][offset : offset + HASH_SIZE])
        k = _split_point(count)
        return node_hash(self._range_hash(start, start + k), self._range_hash(start + k, end))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ProofError(f"tree size {size} is outside [0, {self._size}]")

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` leaves (default: all). O(log n)."""
        if size is None:
            size = self._size
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 ``PATH(index, D[0:size])``: audit path of leaf ``index``, leaf level first."""
        if size is None:
            size = self._size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is outside the tree [0, {size})")
        path: list[bytes] = []
        self._path(index, 0, size, path)
        return path

    def _path(self, index: int, start: int, end: int, out: list[bytes]) -> None:
        if end - start == 1:
            return
        k = _split_point(end - start)
        if index < k:
            self._path(index, start, start + k, out)
            out.append(self._range_hash(start + k, end))
        else:
            self._path(index - k, start + k, end, out)
            out.append(self._range_hash(start, start + k))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 6962 ``PROOF(size1, D[0:size2])``; requires ``0 < size1 <= size2 <= size``."""
        if size2 is None:
            size2 = self._size
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise ProofError(f"tree sizes must satisfy 0 < size1 <= size2, got {size1}, {size2}")
        proof: list[bytes] = []
        self._subproof(size1, 0, size2, True, proof)
        return proof

    def _subproof(self, old: int, start: int, end: int, whole: bool, out: list[bytes]) -> None:
        count = end - start
        if old == count:
            if not whole:
                out.append(self._range_hash(start, end))
            return
        k = _split_point(count)
        if old <= k:
            self._subproof(old, start, start + k, whole, out)
            out.append(self._range_hash(start + k, end))
        else:
            self._subproof(old - k, start + k, end, False, out)
            out.append(self._range_hash(start, start + k))
