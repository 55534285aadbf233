"""The audit's read-only reports: balances, block views, receipts, volumes, trusted keys.

Each reads the blocks strictly through ``audit.reading.read_blocks`` (an ``AuditFailure`` at the
first undecodable block) but checks no signatures: ``verify`` (``audit.verify``) is the command
that establishes a ledger is sound; these answer questions about it.

- ``compute_balances(data_dir, at=None, progress=None)``: balances recomputed from the deltas
  of ``0..at``;
- ``block_to_json(signed)``: a JSON-ready view of a block;
- ``make_receipt(data_dir, trade_id)``: a receipt (docs/LEDGER.md section 8) against the newest
  stored checkpoint covering the fill;
- ``volume_report(data_dir, progress=None)``, ``segment_pair(buyer, seller)``: fills by
  instrument and by segment pair;
- ``trusted_keys(data_dir)``: every key the chain introduced (``block.introduced_key``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.audit.reading import AuditFailure, ledger_directory, read_blocks, read_checkpoint_notes
from ledger.block import SignedBlock, introduced_key
from ledger.checkpoint import Checkpoint, parse_checkpoint
from ledger.proof import MerkleTree
from ledger.receipt import build_receipt

__all__ = [
    "block_to_json",
    "compute_balances",
    "make_receipt",
    "segment_pair",
    "trusted_keys",
    "volume_report",
]


def compute_balances(
    data_dir: str | os.PathLike[str],
    at: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], int]:
    """Balances after applying blocks ``0..at`` inclusive (all blocks when ``at`` is None);
    ``progress`` as for ``read_blocks``."""
    balances: dict[tuple[str, str], int] = defaultdict(int)
    last_height = -1
    for signed in read_blocks(data_dir, progress):
        if at is not None and signed.height > at:
            break
        last_height = signed.height
        for account, asset, amount in signed.block.deltas:
            balances[account, asset] += amount
    if at is not None and at > last_height:
        raise AuditFailure(f"height {at} is beyond the ledger (last height {last_height})")
    return dict(balances)


def block_to_json(signed: SignedBlock) -> dict[str, Any]:
    """A JSON-ready view of a block (hashes and signature in hex)."""
    block = signed.block
    return {
        "height": block.height,
        "kind": block.kind,
        "timestamp_ns": block.timestamp_ns,
        "key_id": block.key_id,
        "prev_hash": block.prev_hash.hex(),
        "block_hash": signed.block_hash.hex(),
        "signature": signed.signature.hex(),
        "payload": block.payload,
        "deltas": [list(delta) for delta in block.deltas],
    }


def trusted_keys(data_dir: str | os.PathLike[str]) -> list[Ed25519PublicKey]:
    """Every key the chain introduced (genesis, rotations), in order."""
    keys = []
    for signed in read_blocks(data_dir):
        introduced = introduced_key(signed.block)
        if introduced is not None:
            keys.append(Ed25519PublicKey.from_public_bytes(introduced))
    return keys


def make_receipt(data_dir: str | os.PathLike[str], trade_id: str) -> dict[str, Any]:
    """A receipt for ``trade_id`` against the newest stored checkpoint that covers it."""
    directory = ledger_directory(data_dir)
    notes, problem = read_checkpoint_notes(directory)
    if problem is not None:
        raise AuditFailure(problem)
    tree = MerkleTree()
    record: bytes | None = None
    height = -1
    for signed in read_blocks(data_dir):
        tree.append(signed.leaf_hash)
        if signed.block.kind == "fill" and signed.block.payload["trade_id"] == trade_id:
            record, height = signed.to_bytes(), signed.height
    if record is None:
        raise AuditFailure(f"no fill with trade id {trade_id!r}")
    newest: Checkpoint | None = None  # the largest covering checkpoint (the first if tied)
    newest_note = ""
    for note in notes:
        checkpoint, _ = parse_checkpoint(note)
        if height < checkpoint.size <= tree.size and (
            newest is None or checkpoint.size > newest.size
        ):
            newest, newest_note = checkpoint, note
    if newest is None:
        raise AuditFailure(f"no stored checkpoint covers height {height} yet")
    size = newest.size
    if tree.root(size) != newest.root_hash:
        raise AuditFailure(f"the checkpoint of size {size} does not match the blocks")
    return build_receipt(record, height, size, tree.inclusion_proof(height, size), newest_note)


def segment_pair(buyer_segment: str, seller_segment: str) -> str:
    """Order-free segment pair name: interbank-interbank, interbank-exchange, exchange-exchange."""
    if buyer_segment == seller_segment:
        return f"{buyer_segment}-{seller_segment}"
    return "interbank-exchange"


def volume_report(
    data_dir: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Fill count, quantity and settlement amount by instrument and by segment pair;
    ``progress`` as for ``read_blocks``."""
    by_instrument: dict[str, dict[str, int]] = {}
    by_pair: dict[str, dict[str, int]] = {
        pair: {"count": 0, "qty": 0, "settlement_amount": 0}
        for pair in ("interbank-interbank", "interbank-exchange", "exchange-exchange")
    }
    totals = {"count": 0, "qty": 0, "settlement_amount": 0}
    for signed in read_blocks(data_dir, progress):
        if signed.block.kind != "fill":
            continue
        fill = signed.block.payload
        rows = (
            by_instrument.setdefault(
                fill["instrument"], {"count": 0, "qty": 0, "settlement_amount": 0}
            ),
            by_pair[segment_pair(fill["buyer_segment"], fill["seller_segment"])],
            totals,
        )
        for row in rows:
            row["count"] += 1
            row["qty"] += fill["qty"]
            row["settlement_amount"] += fill["settlement_amount"]
    return {
        "by_instrument": dict(sorted(by_instrument.items())),
        "by_segment_pair": by_pair,
        "total": totals,
    }
