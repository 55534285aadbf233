"""RFC 6962 / RFC 9162 Merkle tree hashing (SHA-256), standard library only.

API (everything other ledger code should use for tree hashing):

- ``HASH_SIZE``: 32, the size in bytes of every hash here.
- ``EMPTY_ROOT``: ``SHA-256("")``, the root hash of a tree with no leaves.
- ``leaf_hash(data) -> bytes``: ``SHA-256(0x00 || data)``.
- ``node_hash(left, right) -> bytes``: ``SHA-256(0x01 || left || right)``.

The distinct one-byte prefixes keep a leaf from ever being confused with an interior node
(second-preimage protection, RFC 6962 section 2.1). In this ledger the leaf *data* is the 32-byte
block hash, so a leaf hash is ``SHA-256(0x00 || SHA-256(block encoding))``.

This module deliberately imports nothing but ``hashlib`` so that ``ledger/proof.py`` and
``ledger/receipt.py`` can be handed to an outside verifier together with only ``cryptography``.
"""

from __future__ import annotations

from hashlib import sha256

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 hash of a leaf: ``SHA-256(0x00 || data)``."""
    return sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 hash of an interior node: ``SHA-256(0x01 || left || right)``.

    ``left`` covers the lower leaf indices. Both are 32-byte hashes; lengths are not checked here
    (this is the hot path) — callers that accept hashes from outside check them (see proof.py).
    """
    return sha256(NODE_PREFIX + left + right).digest()
