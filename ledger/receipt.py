"""Fill receipts: a block, its Merkle inclusion proof and a signed checkpoint, checked offline.

Self-contained on purpose: this module imports only the standard library, ``cryptography`` and
``ledger.hasher`` / ``ledger.proof`` (which themselves import only the standard library). A
participant can be handed these three files and verify their own fill with nothing but the
venue's public key. The small parts of block parsing and signed-note checking it needs are
re-implemented here (kept byte-for-byte equal to ``ledger.block`` / ``ledger.checkpoint`` by
tests) rather than imported, so that the rest of the ledger does not have to travel along.

Receipt document (JSON object; byte strings in standard base64)::

    {"format": "abs-venue-receipt/1",
     "block": base64(record = block encoding || 64-byte Ed25519 signature),
     "leaf_index": int,            # = the block height
     "tree_size": int,             # = the checkpoint's size
     "inclusion_proof": [base64(32-byte hash), ...],   # leaf level first
     "checkpoint": "<C2SP signed-note checkpoint text>"}

API:

- ``build_receipt(record, leaf_index, tree_size, inclusion_proof, checkpoint_note) -> dict``
- ``receipt_to_json(receipt) -> str`` / ``load_receipt(text) -> dict``
- ``verify_receipt(receipt, public_key, origin=None) -> VerifiedReceipt``: raises
  ``ReceiptError`` (a ``ValueError`` with a stable ``code``) unless every check passes.
  ``public_key`` is the venue key (an ``Ed25519PublicKey``, 32 raw bytes, or 64 hex chars), or
  a list of them when the venue rotated its key between the fill and the checkpoint.

Verification recipe (also in docs/LEDGER.md): parse the block's header (magic ``ABSL``, version
1, kind ``fill``), its canonical JSON payload and deltas, with nothing left over; block hash =
SHA-256(encoding); the block's key id (first 8 bytes of SHA-256 of the raw public key) must name
a trusted key whose Ed25519 signature over the block hash verifies; the leaf index must equal the
block height; the checkpoint note must carry a valid signature by a trusted key (signed-note key
hash = SHA-256(origin || 0x0A || 0x01 || key)[:4]); and the inclusion proof must lead from
``SHA-256(0x00 || block hash)`` at ``leaf_index`` to the checkpoint's root at its size.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import b64
from ledger.hasher import HASH_SIZE, leaf_hash
from ledger.proof import ProofError, verify_inclusion

RECEIPT_FORMAT = "abs-venue-receipt/1"
_BLOCK_HEADER = struct.Struct(">4sBBQQ32s8sI")  # same layout as ledger.block.HEADER
_BLOCK_MAGIC = b"ABSL"
_BLOCK_VERSION = 1
_FILL_KIND_CODE = 5  # index of "fill" in ledger.block.KINDS
_SIGNATURE_SIZE = 64
_SIGNATURE_PREFIX = "\u2014 "
_SIZE_PATTERN = re.compile(r"0|[1-9][0-9]{0,19}")
_canonical_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


class ReceiptError(ValueError):
    """The receipt does not prove what it claims; ``code`` is stable, ``message`` human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a valid receipt proves: this fill is block ``height`` of the log at ``tree_size``."""

    height: int
    trade_id: str
    fill: dict[str, Any]
    deltas: list[tuple[str, str, int]]
    block_hash: bytes
    key_id: str
    origin: str
    tree_size: int
    root_hash: bytes


def build_receipt(
    record: bytes,
    leaf_index: int,
    tree_size: int,
    inclusion_proof: Sequence[bytes],
    checkpoint_note: str,
) -> dict[str, Any]:
    """Assemble a receipt document (no checking: call ``verify_receipt`` to check it)."""
    return {
        "format": RECEIPT_FORMAT,
        "block": b64.encode(record),
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "inclusion_proof": [b64.encode(node) for node in inclusion_proof],
        "checkpoint": checkpoint_note,
    }


def receipt_to_json(receipt: Mapping[str, Any]) -> str:
    """Pretty JSON text of a receipt, stable key order, trailing newline."""
    return json.dumps(receipt, indent=2, sort_keys=True) + "\n"


def load_receipt(text: str | bytes) -> dict[str, Any]:
    """Parse receipt JSON text into a dict (structure is checked by ``verify_receipt``)."""
    try:
        receipt = json.loads(text)
    except ValueError as error:
        raise ReceiptError("receipt.malformed", f"receipt is not JSON: {error}") from error
    if not isinstance(receipt, dict):
        raise ReceiptError("receipt.malformed", "receipt must be a JSON object")
    return receipt


def _b64(value: object, what: str, code: str = "receipt.malformed") -> bytes:
    try:
        return b64.decode(value)
    except b64.Base64Error as error:
        raise ReceiptError(code, f"{what} is not canonical base64 ({error})") from error


def _public_keys(public_key: object) -> list[Ed25519PublicKey]:
    keys = public_key if isinstance(public_key, list | tuple) else [public_key]
    result = []
    for key in keys:
        if isinstance(key, Ed25519PublicKey):
            result.append(key)
            continue
        try:
            raw = bytes.fromhex(key) if isinstance(key, str) else bytes(key)  # type: ignore[arg-type]
            result.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, TypeError) as error:
            raise ReceiptError("receipt.bad_key", f"not an Ed25519 public key: {error}") from error
    if not result:
        raise ReceiptError("receipt.bad_key", "no public key given")
    return result


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _reject_number(text: str) -> Any:
    raise ValueError(f"non-integer number {text}")


def _parse_block(record: bytes) -> tuple[int, str, dict[str, Any], list, bytes, bytes]:
    """(height, key id hex, payload, deltas, encoding, signature) of a fill record, strictly."""
    if len(record) < _BLOCK_HEADER.size + 4 + _SIGNATURE_SIZE:
        raise ReceiptError("receipt.bad_block", "block record is too short")
    magic, version, kind, height, _, _, key_id, payload_length = _BLOCK_HEADER.unpack_from(record)
    if magic != _BLOCK_MAGIC or version != _BLOCK_VERSION:
        raise ReceiptError("receipt.bad_block", "not a version 1 ledger block")
    if kind != _FILL_KIND_CODE:
        raise ReceiptError("receipt.not_a_fill", f"block kind code {kind} is not a fill")
    position = _BLOCK_HEADER.size
    payload_bytes = record[position : position + payload_length]
    position += payload_length
    try:
        payload = json.loads(
            payload_bytes.decode("ascii"),
            parse_float=_reject_number,
            parse_constant=_reject_number,
        )
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
        if _canonical_json(payload).encode("ascii") != payload_bytes:
            raise ValueError("payload is not canonical JSON")
        (count,) = struct.unpack_from(">I", record, position)
        position += 4
        deltas = []
        for _ in range(count):
            names = []
            for _name in range(2):
                (length,) = struct.unpack_from(">H", record, position)
                raw_name = record[position + 2 : position + 2 + length]
                if len(raw_name) != length:
                    raise ValueError("record ends inside a delta")
                names.append(raw_name.decode("ascii"))
                position += 2 + length
            (amount,) = struct.unpack_from(">q", record, position)
            position += 8
            deltas.append((names[0], names[1], amount))
    except (ValueError, struct.error) as error:
        raise ReceiptError("receipt.bad_block", f"block does not parse: {error}") from error
    if len(record) - position != _SIGNATURE_SIZE:
        raise ReceiptError("receipt.bad_block", "block record has the wrong length")
    return height, key_id.hex(), payload, deltas, record[:position], record[position:]


def _verify_note(note: str, keys: list[Ed25519PublicKey]) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint note validly signed by one of ``keys``."""
    if not isinstance(note, str):
        raise ReceiptError("receipt.malformed", "checkpoint must be text")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise ReceiptError("receipt.bad_checkpoint", "checkpoint is not a signed note")
    text, signature_lines = note[: split + 1], note[split + 2 : -1].split("\n")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines) or not _SIZE_PATTERN.fullmatch(lines[1]):
        raise ReceiptError("receipt.bad_checkpoint", "checkpoint body is malformed")
    origin, size = lines[0], int(lines[1])
    root = _b64(lines[2], "checkpoint root", "receipt.bad_checkpoint")
    if len(root) != HASH_SIZE:
        raise ReceiptError("receipt.bad_checkpoint", "checkpoint root is not a 32-byte hash")
    key_hashes = {
        sha256(origin.encode("utf-8") + b"\n\x01" + _raw(key)).digest()[:4]: key for key in keys
    }
    for line in signature_lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise ReceiptError("receipt.bad_checkpoint", "bad signature line")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        blob = _b64(encoded, "checkpoint signature", "receipt.bad_checkpoint")
        key = key_hashes.get(blob[:4])
        if name != origin or key is None:
            continue  # a signature by some other key (a witness, say): ignored
        try:
            key.verify(blob[4:], text.encode("utf-8"))
        except InvalidSignature:
            continue
        return origin, size, root
    raise ReceiptError("receipt.bad_checkpoint", "checkpoint is not signed by a trusted key")


def verify_receipt(
    receipt: Mapping[str, Any] | str | bytes,
    public_key: Ed25519PublicKey | bytes | str | Sequence[Ed25519PublicKey | bytes | str],
    origin: str | None = None,
) -> VerifiedReceipt:
    """Check a fill receipt end to end (see the module docstring for the steps).

    Returns what it proves; raises ``ReceiptError`` with a stable code otherwise:
    ``receipt.malformed``, ``receipt.bad_key``, ``receipt.bad_block``, ``receipt.not_a_fill``,
    ``receipt.bad_signature``, ``receipt.bad_checkpoint``, ``receipt.origin_mismatch``,
    ``receipt.not_included``.
    """
    if isinstance(receipt, str | bytes):
        receipt = load_receipt(receipt)
    if receipt.get("format") != RECEIPT_FORMAT:
        raise ReceiptError("receipt.malformed", f"format must be {RECEIPT_FORMAT!r}")
    keys = _public_keys(public_key)
    record = _b64(receipt.get("block"), "block")
    height, key_id, payload, deltas, encoded, signature = _parse_block(record)
    block_hash = sha256(encoded).digest()
    signer = next((k for k in keys if sha256(_raw(k)).digest()[:8].hex() == key_id), None)
    if signer is None:
        raise ReceiptError("receipt.bad_signature", f"block names key {key_id}, not trusted")
    try:
        signer.verify(signature, block_hash)
    except InvalidSignature:
        raise ReceiptError("receipt.bad_signature", "block signature does not verify") from None
    note_origin, size, root = _verify_note(receipt.get("checkpoint"), keys)  # type: ignore[arg-type]
    if origin is not None and note_origin != origin:
        raise ReceiptError("receipt.origin_mismatch", f"checkpoint is from {note_origin!r}")
    leaf_index, tree_size = receipt.get("leaf_index"), receipt.get("tree_size")
    if type(leaf_index) is not int or leaf_index != height:
        raise ReceiptError("receipt.not_included", "leaf_index must equal the block height")
    if type(tree_size) is not int or tree_size != size:
        raise ReceiptError("receipt.not_included", "tree_size must equal the checkpoint size")
    proof_field = receipt.get("inclusion_proof")
    if not isinstance(proof_field, list):
        raise ReceiptError("receipt.malformed", "inclusion_proof must be a list")
    proof = [_b64(node, "proof hash") for node in proof_field]
    try:
        verify_inclusion(leaf_index, tree_size, leaf_hash(block_hash), proof, root)
    except ProofError as error:
        raise ReceiptError("receipt.not_included", str(error)) from error
    trade_id = payload.get("trade_id")
    if not isinstance(trade_id, str):
        raise ReceiptError("receipt.bad_block", "fill payload lacks a trade_id")
    return VerifiedReceipt(
        height, trade_id, payload, deltas, block_hash, key_id, note_origin, tree_size, root
    )
