"""Fill receipts: build from real blocks, verify offline, refuse every kind of tampering."""

from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.block import GENESIS_PREV_HASH, Block, Signer, deposit_deltas, fill_deltas
from ledger.checkpoint import make_checkpoint, sign_checkpoint
from ledger.keys import generate_private_key, public_key_to_text
from ledger.proof import MerkleTree
from ledger.receipt import (
    ReceiptError,
    build_receipt,
    load_receipt,
    receipt_to_json,
    verify_receipt,
)

LEDGER_DIR = Path(__file__).resolve().parents[2] / "ledger"
ORIGIN = "abs-venue.example/ledger"
OLD = Signer(generate_private_key())
NEW = Signer(generate_private_key())


def _fill(trade_id: str) -> dict:
    return {
        "trade_id": trade_id,
        "instrument": "IPABS-2019-1-A",
        "price": 998_750,
        "qty": 100,
        "accrued": 0,
        "factor": 1_000_000,
        "settlement_amount": 998_750,
        "buyer_fee": 10,
        "seller_fee": 10,
        "maker_order_id": 1,
        "taker_order_id": 2,
        "buyer": "P-1",
        "seller": "P-2",
        "buyer_segment": "exchange",
        "seller_segment": "interbank",
        "aggressor": "sell",
        "timestamp_ns": 5,
    }


def _chain(rotate_at: int | None = None, size: int = 12):
    """A small valid chain: genesis, a deposit, fills; optionally a key rotation."""
    genesis = Block(
        0,
        GENESIS_PREV_HASH,
        1,
        "genesis",
        OLD.key_id,
        {"venue": "v", "origin": ORIGIN, "public_key": public_key_to_text(OLD.public_key)},
        (),
    )
    signed = [OLD.sign(genesis)]
    signer = OLD
    deposit = {"account": "P-1", "asset": "CNY", "amount": 10**9, "source": "external:bank"}
    while len(signed) < size:
        height, prev = len(signed), signed[-1].block_hash
        if height == 1:
            kind, payload, deltas = "deposit", deposit, deposit_deltas("P-1", "CNY", 10**9)
        elif height == rotate_at:
            kind, payload, deltas = (
                "key_rotation",
                {"new_public_key": public_key_to_text(NEW.public_key)},
                (),
            )
        else:
            payload = _fill(f"T-{height}")
            kind, deltas = "fill", fill_deltas(payload)
        signed.append(
            signer.sign(Block(height, prev, height, kind, signer.key_id, payload, deltas))
        )
        if kind == "key_rotation":
            signer = NEW
    tree = MerkleTree.from_leaf_hashes(block.leaf_hash for block in signed)
    note = sign_checkpoint(make_checkpoint(ORIGIN, tree.size, tree.root(), 99), signer.private_key)
    return signed, tree, note


SIGNED, TREE, NOTE = _chain()


def _receipt(height: int, signed=SIGNED, tree=TREE, note=NOTE) -> dict:
    return build_receipt(
        signed[height].to_bytes(), height, tree.size, tree.inclusion_proof(height), note
    )


def test_every_fill_receipt_verifies_and_reports_the_fill() -> None:
    for height in range(2, len(SIGNED)):
        receipt = load_receipt(receipt_to_json(_receipt(height)))
        verified = verify_receipt(receipt, OLD.public_key, origin=ORIGIN)
        assert verified.height == height and verified.trade_id == f"T-{height}"
        assert verified.fill == SIGNED[height].block.payload
        assert verified.block_hash == SIGNED[height].block_hash
        assert verified.tree_size == TREE.size and verified.root_hash == TREE.root()
        assert [tuple(d) for d in SIGNED[height].block.deltas] == verified.deltas
    # The same key as raw bytes or hex text works too, and JSON text is accepted directly.
    text = receipt_to_json(_receipt(3))
    raw = bytes.fromhex(public_key_to_text(OLD.public_key))
    assert verify_receipt(text, raw).height == 3
    assert verify_receipt(text, public_key_to_text(OLD.public_key)).height == 3


def test_a_deposit_is_not_a_fill() -> None:
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(_receipt(1), OLD.public_key)
    assert caught.value.code == "receipt.not_a_fill"


def test_any_flipped_block_byte_fails() -> None:
    receipt = _receipt(5)
    record = base64.b64decode(receipt["block"])
    accepted = []
    for position in range(len(record)):
        tampered = bytearray(record)
        tampered[position] ^= 0x04
        changed = {**receipt, "block": base64.b64encode(bytes(tampered)).decode()}
        try:
            verify_receipt(changed, OLD.public_key)
        except ReceiptError:
            continue
        accepted.append(position)
    assert not accepted


def test_altered_proof_wrong_index_size_or_checkpoint_fail() -> None:
    receipt = _receipt(6)
    proof = receipt["inclusion_proof"]
    for index in range(len(proof)):
        node = bytearray(base64.b64decode(proof[index]))
        node[index % 32] ^= 1
        altered = [*proof[:index], base64.b64encode(bytes(node)).decode(), *proof[index + 1 :]]
        with pytest.raises(ReceiptError) as caught:
            verify_receipt({**receipt, "inclusion_proof": altered}, OLD.public_key)
        assert caught.value.code == "receipt.not_included"
    for changes in ({"leaf_index": 7}, {"tree_size": 11}, {"inclusion_proof": proof[:-1]}):
        with pytest.raises(ReceiptError):
            verify_receipt({**receipt, **changes}, OLD.public_key)
    forged = sign_checkpoint(make_checkpoint(ORIGIN, TREE.size, TREE.root()), NEW.private_key)
    with pytest.raises(ReceiptError) as caught:
        verify_receipt({**receipt, "checkpoint": forged}, OLD.public_key)
    assert caught.value.code == "receipt.bad_checkpoint"
    wrong_root = sign_checkpoint(make_checkpoint(ORIGIN, TREE.size, TREE.root(5)), OLD.private_key)
    with pytest.raises(ReceiptError) as caught:
        verify_receipt({**receipt, "checkpoint": wrong_root}, OLD.public_key)
    assert caught.value.code == "receipt.not_included"
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(receipt, OLD.public_key, origin="other.example/log")
    assert caught.value.code == "receipt.origin_mismatch"


def test_a_stranger_key_is_refused() -> None:
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(_receipt(4), NEW.public_key)
    assert caught.value.code == "receipt.bad_signature"


def test_key_rotation_needs_both_keys() -> None:
    signed, tree, note = _chain(rotate_at=4, size=8)
    receipt = _receipt(2, signed, tree, note)  # fill signed by OLD, checkpoint by NEW
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, OLD.public_key)
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, NEW.public_key)
    assert verify_receipt(receipt, [OLD.public_key, NEW.public_key]).height == 2
    assert verify_receipt(_receipt(6, signed, tree, note), NEW.public_key).height == 6


@pytest.mark.parametrize(
    "receipt",
    [
        "not json",
        "[]",
        json.dumps({"format": "other"}),
        json.dumps({"format": "abs-venue-receipt/1"}),
    ],
)
def test_malformed_receipts(receipt: str) -> None:
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, OLD.public_key)


def test_receipt_module_imports_only_stdlib_cryptography_hasher_proof_and_b64() -> None:
    allowed_roots = {"__future__", "base64", "binascii", "json", "re", "struct", "collections"}
    allowed_roots |= {"dataclasses", "hashlib", "typing", "cryptography"}
    travelling = ("receipt.py", "hasher.py", "proof.py", "b64.py")
    for name in travelling:
        tree = ast.parse((LEDGER_DIR / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
                if node.module == "ledger":  # from ledger import b64
                    modules = [f"ledger.{alias.name}" for alias in node.names]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                assert root in allowed_roots | {"ledger"}, f"{name} imports {module}"
                if root == "ledger":
                    assert module in ("ledger.hasher", "ledger.proof", "ledger.b64"), name


def test_four_files_alone_verify_a_receipt(tmp_path: Path) -> None:
    """Copy only receipt.py, hasher.py, proof.py and b64.py into an empty package and verify
    there."""
    package = tmp_path / "ledger"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("receipt.py", "hasher.py", "proof.py", "b64.py"):
        shutil.copy(LEDGER_DIR / name, package / name)
    (tmp_path / "receipt.json").write_text(receipt_to_json(_receipt(3)))
    script = (
        "import sys; sys.path.insert(0, '.'); from ledger.receipt import verify_receipt; "
        "r = verify_receipt(open('receipt.json').read(), sys.argv[1]); print(r.trade_id)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, public_key_to_text(OLD.public_key)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "T-3"


def non_canonical(text: str) -> str:
    """The same bytes spelled with non-zero pad bits (``text`` must end in ``=`` padding)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = text.rstrip("=")
    last = alphabet.index(stripped[-1])
    spelled = stripped[:-1] + alphabet[last | 1] + text[len(stripped) :]
    assert spelled != text and base64.b64decode(spelled) == base64.b64decode(text)
    return spelled


def test_a_non_canonical_checkpoint_signature_is_refused_by_receipt_and_checkpoint_alike() -> None:
    """Issue 14, item 5: verify-receipt accepted pad bits in a signature line that the
    checkpoint parser (and so consistency) refused. One decoder now, strict everywhere."""
    from ledger.checkpoint import CheckpointError, parse_checkpoint

    receipt = _receipt(3)
    body, _, signature = receipt["checkpoint"].partition("\n\n")
    prefix, _, encoded = signature.rstrip("\n").rpartition(" ")
    assert encoded.endswith("=")  # 68 bytes: the last character has unused bits
    note = f"{body}\n\n{prefix} {non_canonical(encoded)}\n"
    with pytest.raises(ReceiptError) as caught:
        verify_receipt({**receipt, "checkpoint": note}, OLD.public_key)
    assert caught.value.code == "receipt.bad_checkpoint"
    with pytest.raises(CheckpointError, match="not canonical"):
        parse_checkpoint(note)
    assert verify_receipt(receipt, OLD.public_key).trade_id == "T-3"


@pytest.mark.parametrize("field", ["block", "proof"])
def test_a_non_canonical_block_or_proof_hash_is_refused(field: str) -> None:
    receipt = _receipt(3)
    if field == "block":
        encoded = receipt["block"]
        if not encoded.endswith("="):
            pytest.skip("this block's length leaves no pad bits")
        changed = {**receipt, "block": non_canonical(encoded)}
    else:
        proof = list(receipt["inclusion_proof"])
        proof[0] = non_canonical(proof[0])  # 32 bytes: one '=' of padding
        changed = {**receipt, "inclusion_proof": proof}
    with pytest.raises(ReceiptError, match="canonical") as caught:
        verify_receipt(changed, OLD.public_key)
    assert caught.value.code == "receipt.malformed"


def test_every_base64_decode_in_the_ledger_goes_through_b64() -> None:
    """One decoder: no module but ledger/b64.py calls the standard library's decoders."""
    callers = []
    for path in sorted(LEDGER_DIR.rglob("*.py")):
        if path.name == "b64.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.endswith("b64decode"):
                callers.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Import | ast.ImportFrom) and any(
                alias.name in ("base64", "binascii") for alias in node.names
            ):
                callers.append(f"{path.name}:{node.lineno} imports it")
    assert callers == []
