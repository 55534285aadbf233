"""The worker side of ``venue-audit verify``: checking records with no state from before them.

What and why
------------
Ed25519 verification is the floor of an audit (~105 us a block on the reference 2-core box),
so it runs on all cores: the main process cuts the block records into chunks of consecutive
records (:class:`ChunkTask`) and a worker checks each chunk as a whole (:func:`check_chunk`).
Fills go through ``block.check_fill_record`` (decode + rules in one pass, ~5 us), other kinds
through the reference decoder and ``check_block_rules``; then heights, links, the keys in force
(following ``block.introduced_key``), signatures, trade ids within the chunk, the Merkle
subtrees of its leaves and a per-account summary of balance changes. The worker sends back one
small :class:`ChunkReport`, so inter-process traffic is the records going out and almost
nothing coming back. What needs the state before the chunk (the first link, the start key,
trade ids seen earlier, balances, checkpoints) is the main process's (``audit.verify``).

:func:`check_records` is the plain per-block reference check that the main process replays a
chunk with when anything in it did not fit, so that the first bad height and its message are
those of an obviously-ordered sequential check; it returns one named record per block
(:class:`CheckedRecord` or :class:`RecordProblem`).

Measured on 8,192 fills, one process: 9.9 us of non-signature CPU per block in the worker task
(it was 30.8 us when workers decoded every block with the reference decoder and sent back
per-block tuples).
"""

from __future__ import annotations

from hashlib import sha256
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.block import (
    BlockError,
    Delta,
    check_block_rules,
    check_fill_record,
    check_key_rotation,
    decode_signed_block,
    introduced_key,
)
from ledger.hasher import LEAF_PREFIX, node_hash
from ledger.keys import raw_key_id

__all__ = [
    "BalanceChange",
    "CheckedRecord",
    "ChunkReport",
    "ChunkTask",
    "GenesisFacts",
    "RecordProblem",
    "Subtree",
    "aligned_subtrees",
    "check_chunk",
    "check_records",
]


class ChunkTask(NamedTuple):
    """A chunk of consecutive block records for a worker: the height of the first one, the
    records, and the raw public key in force before the first one (None at height 0)."""

    start: int
    records: list[bytes]
    start_key: bytes | None


class GenesisFacts(NamedTuple):
    """What a chunk that starts the chain learnt from its genesis block."""

    public_key: bytes  # raw, 32 bytes
    origin: str


class BalanceChange(NamedTuple):
    """How a chunk changes one (account, asset) balance: the net change, and the lowest the
    running change reaches (so the balance before the chunk plus ``lowest`` is its minimum)."""

    net: int
    lowest: int


class Subtree(NamedTuple):
    """An aligned complete Merkle subtree: ``2**level`` leaves with root hash ``root``."""

    level: int
    root: bytes


class ChunkReport(NamedTuple):
    """A worker's summary of one chunk of consecutive records, checked as a whole.

    ``clean`` is False if any record broke a rule the worker can see (then the rest is not
    meaningful and the chunk is replayed). Otherwise every record decoded strictly, passed its
    kind's rules, sits at its height, links to the one before, names the key in force (starting
    from ``start_key``, following rotations) and carries a valid signature; and the trade ids
    are distinct. What needs the state before the chunk is left to ``Verifier.apply_chunk``:
    the first link, the start key, trade ids seen earlier and the balances. ``subtrees`` cover
    the chunk's leaves, left to right.
    """

    clean: bool
    start: int
    count: int
    start_key: bytes | None
    end_key: bytes | None
    first_prev_hash: bytes
    last_hash: bytes
    genesis: GenesisFacts | None  # if the chunk starts the chain
    trade_ids: list[str]
    balance_changes: dict[tuple[str, str], BalanceChange]
    subtrees: list[Subtree]


class CheckedRecord(NamedTuple):
    """A record that decoded strictly and passed its kind's rules (``check_records``).

    ``signature_ok`` says whether its signature verifies under the key it *names*; whether that
    key is the one in force is the sequential pass's to decide. ``introduced_key`` is what
    ``block.introduced_key`` says (genesis, rotations); ``genesis_origin`` is genesis's origin.
    """

    height: int
    prev_hash: bytes
    block_hash: bytes
    kind: str
    key_id: str
    deltas: tuple[Delta, ...]
    introduced_key: bytes | None
    trade_id: str | None
    signature_ok: bool
    genesis_origin: str | None


class RecordProblem(NamedTuple):
    """A record that did not decode or broke its kind's rules: the ``BlockError``'s code and
    message."""

    code: str
    message: str


def check_records(
    records: list[bytes], raw_keys: dict[str, bytes]
) -> list[CheckedRecord | RecordProblem]:
    """The reference per-block check of a run of records, one result per record.

    ``raw_keys`` maps key id to raw public key for every key the chain introduced up to the end
    of the run; each signature is checked against the key its block names. Only replays use it
    (``Verifier.replay``): a chunk in which the fast pass found anything wrong is re-checked
    block by block, so the first bad height and its message come from this plain code.
    """
    keys = {kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in raw_keys.items()}
    results: list[CheckedRecord | RecordProblem] = []
    for record in records:
        try:
            signed = decode_signed_block(record)
            block = signed.block
            check_block_rules(block)
            introduced = introduced_key(block)
        except BlockError as error:
            results.append(RecordProblem(error.code, error.message))
            continue
        key = keys.get(block.key_id)
        signature_ok = False
        if key is not None:
            try:
                key.verify(signed.signature, signed.block_hash)
                signature_ok = True
            except InvalidSignature:
                pass
        payload = block.payload
        results.append(
            CheckedRecord(
                height=block.height,
                prev_hash=block.prev_hash,
                block_hash=signed.block_hash,
                kind=block.kind,
                key_id=block.key_id,
                deltas=block.deltas,
                introduced_key=introduced,
                trade_id=payload["trade_id"] if block.kind == "fill" else None,
                signature_ok=signature_ok,
                genesis_origin=payload["origin"] if block.kind == "genesis" else None,
            )
        )
    return results


def _unclean(start: int) -> ChunkReport:
    return ChunkReport(False, start, 0, None, None, b"", b"", None, [], {}, [])


def check_chunk(task: ChunkTask) -> ChunkReport:
    """Check a chunk of consecutive block records on its own (runs in a worker).

    Fill records take ``check_fill_record``; other kinds and anything it declines take the
    reference decode + rules. Per block the only Python work left besides that is a few
    comparisons, one signature check, a leaf hash and the balance summary. Worker processes
    by default: in threads, this Python part holds the GIL while the signature checks of other
    threads wait.
    """
    start, records, start_key = task
    key_raw = start_key
    key = Ed25519PublicKey.from_public_bytes(key_raw) if key_raw is not None else None
    key_id_raw = raw_key_id(key_raw) if key_raw is not None else None
    trade_ids: list[str] = []
    # (account, asset) -> [net change, lowest running change]; lists, updated in place, on the
    # hot path; named (BalanceChange) in the report.
    changes: dict[tuple[str, str], list[int]] = {}
    leaves: list[bytes] = []
    previous_hash = first_prev_hash = b""
    genesis = None
    height = start
    # Locals for the per-block loop (each saves a lookup per block on the hot path).
    changes_get, add_trade_id, add_leaf = changes.get, trade_ids.append, leaves.append
    for record in records:
        fill = check_fill_record(record)
        if fill is not None:
            block_height, prev_hash, block_key_id, block_hash, signature, trade_id, delta_keys, \
                delta_amounts = fill  # fmt: skip
            kind = "fill"
        else:
            try:
                signed = decode_signed_block(record)
                check_block_rules(signed.block)
            except BlockError:
                return _unclean(start)
            block = signed.block
            block_height, prev_hash, block_hash, signature = (
                block.height, block.prev_hash, signed.block_hash, signed.signature
            )  # fmt: skip
            block_key_id = bytes.fromhex(block.key_id)
            kind, payload = block.kind, block.payload
            trade_id = payload["trade_id"] if kind == "fill" else None
            delta_keys = tuple((delta.account, delta.asset) for delta in block.deltas)
            delta_amounts = tuple(delta.amount for delta in block.deltas)
        if block_height != height:
            return _unclean(start)
        if height == start:
            first_prev_hash = prev_hash
        elif prev_hash != previous_hash:
            return _unclean(start)
        if (kind == "genesis") != (height == 0):
            return _unclean(start)
        if kind == "genesis":  # check_block_rules: it names the key it introduces
            key_raw = introduced_key(block)
            key = Ed25519PublicKey.from_public_bytes(key_raw)
            key_id_raw = block_key_id
            genesis = GenesisFacts(key_raw, payload["origin"])
        if key is None or block_key_id != key_id_raw:
            return _unclean(start)
        try:
            key.verify(signature, block_hash)
        except InvalidSignature:
            return _unclean(start)
        if trade_id is not None:
            add_trade_id(trade_id)
        for balance_key, amount in zip(delta_keys, delta_amounts, strict=False):
            entry = changes_get(balance_key)
            if entry is None:
                changes[balance_key] = [amount, amount]
            else:
                entry[0] += amount
                if entry[0] < entry[1]:
                    entry[1] = entry[0]
        if kind == "key_rotation":
            new_raw = introduced_key(block)
            try:
                check_key_rotation(new_raw, key_raw)
            except BlockError:
                return _unclean(start)
            key_raw, key = new_raw, Ed25519PublicKey.from_public_bytes(new_raw)
            key_id_raw = raw_key_id(new_raw)
        add_leaf(sha256(LEAF_PREFIX + block_hash).digest())
        previous_hash = block_hash
        height += 1
    if len(set(trade_ids)) != len(trade_ids):
        return _unclean(start)
    return ChunkReport(
        clean=True,
        start=start,
        count=len(records),
        start_key=start_key,
        end_key=key_raw,
        first_prev_hash=first_prev_hash,
        last_hash=previous_hash,
        genesis=genesis,
        trade_ids=trade_ids,
        balance_changes={
            balance_key: BalanceChange(net, lowest)
            for balance_key, (net, lowest) in changes.items()
        },
        subtrees=aligned_subtrees(start, leaves),
    )


def aligned_subtrees(start: int, leaves: list[bytes]) -> list[Subtree]:
    """Cover leaves ``[start, start + len(leaves))`` with the fewest aligned complete subtrees.

    Returns them left to right; a subtree of level ``k`` holds ``2**k`` leaves and starts at a
    multiple of ``2**k``, so ``MerkleAccumulator.append_subtree`` can take them.
    """
    subtrees = []
    position = 0
    while position < len(leaves):
        absolute = start + position
        size = absolute & -absolute if absolute else 1 << len(leaves).bit_length()
        while size > len(leaves) - position:
            size >>= 1
        level_nodes = leaves[position : position + size]
        while len(level_nodes) > 1:
            level_nodes = [
                node_hash(level_nodes[index], level_nodes[index + 1])
                for index in range(0, len(level_nodes), 2)
            ]
        subtrees.append(Subtree(size.bit_length() - 1, level_nodes[0]))
        position += size
    return subtrees
