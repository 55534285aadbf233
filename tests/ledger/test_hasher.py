"""RFC 6962 leaf/node hashing: prefixes, empty root and the RFC's published leaf hashes."""

from hashlib import sha256

from ledger.hasher import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_leaf_and_node_use_distinct_prefixes() -> None:
    data = b"\x01" + b"a" * 32 + b"b" * 32
    assert leaf_hash(data) == sha256(b"\x00" + data).digest()
    assert node_hash(b"a" * 32, b"b" * 32) == sha256(data).digest()
    # The same bytes hashed as a leaf never equal the node over them.
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


def test_rfc6962_empty_leaf_hash() -> None:
    # RFC 6962 test data: the hash of the empty leaf.
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert len(leaf_hash(b"")) == HASH_SIZE


def test_node_order_matters() -> None:
    left, right = leaf_hash(b"left"), leaf_hash(b"right")
    assert node_hash(left, right) != node_hash(right, left)
