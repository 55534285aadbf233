"""Walk the transparency-dev/merkle RFC 6962 proof vectors in place and check every one.

The vectors are in ``tests/ledger/testdata`` (unchanged upstream files, Apache-2.0; see the README
and LICENSE there). One test walks all files and reports every failure together rather than
stopping at the first.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ledger.hasher import leaf_hash
from ledger.proof import MerkleTree, ProofError, verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parent / "testdata"

# The eight leaves of the RFC 6962 test data, used by every happy path.
RFC_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def _check(kind: str, case: dict) -> str | None:
    """Return a failure description, or None when the verifier's verdict matches ``wantErr``."""
    try:
        if kind == "inclusion":
            verify_inclusion(
                case["leafIdx"],
                case["treeSize"],
                _b64(case["leafHash"]),
                _proof(case["proof"]),
                _b64(case["root"]),
            )
        else:
            verify_consistency(
                case["size1"],
                case["size2"],
                _proof(case["proof"]),
                _b64(case["root1"]),
                _b64(case["root2"]),
            )
    except ProofError as error:
        return None if case["wantErr"] else f"rejected a valid proof: {error}"
    return "accepted an invalid proof" if case["wantErr"] else None


def test_vectors_directory_is_present() -> None:
    assert VECTORS.is_dir(), f"RFC 6962 vectors missing at {VECTORS}"


def test_every_vector() -> None:
    files = sorted(VECTORS.rglob("*.json"))
    assert len(files) == 196
    failures = []
    happy = 0
    for path in files:
        kind = path.relative_to(VECTORS).parts[0]
        case = json.loads(path.read_text())
        happy += not case["wantErr"]
        problem = _check(kind, case)
        if problem:
            failures.append(f"{path.relative_to(VECTORS)} ({case['desc']}): {problem}")
    assert not failures, "\n".join(failures)
    assert happy >= 10


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_our_generator_reproduces_every_happy_path(kind: str) -> None:
    """Proofs we generate for the RFC leaves equal the published happy-path proofs byte for byte."""
    tree = MerkleTree.from_leaf_hashes(leaf_hash(leaf) for leaf in RFC_LEAVES)
    failures = []
    happy_paths = sorted((VECTORS / kind).glob("[0-9]*/happy-path.json"))
    assert len(happy_paths) == 5
    for path in happy_paths:
        case = json.loads(path.read_text())
        if kind == "inclusion":
            ours = tree.inclusion_proof(case["leafIdx"], case["treeSize"])
            root_ok = tree.root(case["treeSize"]) == _b64(case["root"])
        else:
            ours = tree.consistency_proof(case["size1"], case["size2"])
            root_ok = tree.root(case["size1"]) == _b64(case["root1"]) and tree.root(
                case["size2"]
            ) == _b64(case["root2"])
        if ours != _proof(case["proof"]) or not root_ok:
            failures.append(str(path.relative_to(VECTORS)))
    assert not failures, failures
