"""Opening a ledger: one pass over the stored blocks rebuilds what the ledger keeps in memory.

What and why
------------
``rebuild(blocks, state)`` reads the durable blocks in height order (after those a state file
covers, if one is given) and returns a :class:`ChainIndex`: the balances, the Merkle tree and
its leaf hashes, the trade index, where each signing key starts, and the last hash and
timestamp. It checks, per block: the record checksum (the record log), the header, height,
hash link, key id and exact record length, and that no balance goes negative
(``block.check_non_negative``) -- not signatures or payload schemas, which ``venue-audit
verify`` checks on all cores. Any problem is a ``LedgerCorruptError`` naming the height.

Fills are read by a fast scanner (:func:`scan_block`: the documented layout, of the payload
only the trade id); everything else -- genesis and key rotations, whose key the chain follows
(``block.introduced_key``), and any record the fast path declines -- by block.py's strict
decoder (:func:`scan_block_strictly`), which names the problem and is the fast scanner's test
oracle. The scan costs about 15 us a block (1.5-2 s for 100,000 fills), which is why the
ledger also keeps a state file (``ledger.state_file``).

The ledger (``ledger.ledger``) then checks the newest stored checkpoint against the rebuilt
tree (``ledger.checkpointer.verified_newest_checkpoint``: its signature, origin and root, which
also checks every leaf hash a state file supplied against the signed root) and the signatures
of the blocks after it (:func:`check_signatures`), so that no checkpoint the ledger signs later
covers a block whose signature nobody checked. :func:`public_key_in_force` answers which key
signs a given height (and the checkpoint of that size). docs/LEDGER.md section 9 lists what
opening checks and what only ``venue-audit verify`` does.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import block as block_format
from ledger.block import BlockError, check_non_negative, decode_signed_block, introduced_key
from ledger.errors import LedgerCorruptError
from ledger.hasher import HASH_SIZE, leaf_hash
from ledger.keys import raw_key_id
from ledger.proof import MerkleTree
from ledger.recordlog import RecordLog, RecordLogCorruptError
from ledger.state_file import LedgerState

__all__ = [
    "ChainIndex",
    "ScannedBlock",
    "check_signatures",
    "public_key_in_force",
    "rebuild",
    "scan_block",
    "scan_block_strictly",
]

_GENESIS_CODE = block_format.KIND_CODES["genesis"]
_FILL_CODE = block_format.KIND_CODES["fill"]
_TRADE_ID_KEY = b'"trade_id":"'


@dataclass(slots=True)
class ChainIndex:
    """What the ledger knows about its blocks in memory: rebuilt on opening, extended by
    every append (under the ledger's lock).

    ``trade_order``/``trade_order_heights`` hold the trades again, append-only in height order,
    and ``leaf_hashes`` every leaf hash back to back (32 bytes a block; ``MerkleTree`` offers
    them one call per leaf): the state file saves prefixes of these without holding the lock
    for a copy. ``key_starts[i]`` is the first height the ``i``-th signing key signs.
    """

    tree: MerkleTree = field(default_factory=MerkleTree)
    leaf_hashes: bytearray = field(default_factory=bytearray)
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    trade_heights: dict[str, int] = field(default_factory=dict)
    trade_order: list[str] = field(default_factory=list)
    trade_order_heights: array = field(default_factory=lambda: array("Q"))
    key_starts: list[int] = field(default_factory=list)
    last_hash: bytes = block_format.GENESIS_PREV_HASH
    last_timestamp_ns: int = 0

    @classmethod
    def from_state(cls, state: LedgerState) -> ChainIndex:
        """The index of the blocks a state file covers (copies: the state is not shared)."""
        leaves = state.leaf_hashes
        return cls(
            tree=MerkleTree.from_leaf_hashes(
                leaves[offset : offset + HASH_SIZE] for offset in range(0, len(leaves), HASH_SIZE)
            ),
            leaf_hashes=bytearray(leaves),
            balances=dict(state.balances),
            trade_heights=dict(zip(state.trade_ids, state.trade_heights, strict=True)),
            trade_order=list(state.trade_ids),
            trade_order_heights=array("Q", state.trade_heights),
            key_starts=list(state.key_starts),
            last_hash=state.last_hash,
            last_timestamp_ns=state.last_timestamp_ns,
        )


@dataclass(frozen=True, slots=True)
class ScannedBlock:
    """What opening needs from one stored block."""

    height: int
    kind_code: int
    timestamp_ns: int
    prev_hash: bytes
    raw_key_id: bytes
    block_hash: bytes
    deltas: list[tuple[str, str, int]]
    trade_id: str | None
    next_key_id: bytes | None


def fill_trade_id(payload: bytes) -> str | None:
    """The trade id of a canonical fill payload, found without parsing all of the JSON.

    In canonical JSON a quote inside a string is escaped, so the byte sequence
    ``"trade_id":"`` can only be a key; a fill payload is flat, so it occurs once. Anything
    else (absent, repeated, escapes in the value) falls back to ``json.loads``.
    """
    start = payload.find(_TRADE_ID_KEY)
    if start >= 0 and payload.find(_TRADE_ID_KEY, start + 1) < 0:
        start += len(_TRADE_ID_KEY)
        end = payload.find(b'"', start)
        value = payload[start:end]
        if end > start and b"\\" not in value:
            return value.decode("ascii")
    try:
        parsed = json.loads(payload)
    except ValueError:
        return None
    trade_id = parsed.get("trade_id") if isinstance(parsed, dict) else None
    return trade_id if isinstance(trade_id, str) else None


def scan_block(record: bytes) -> ScannedBlock | None:
    """Read a stored block along the documented layout (docs/LEDGER.md), fast.

    Returns None for anything unusual -- a short or malformed record, a fill without a string
    trade id -- so the caller falls back to the strict decoder, which names the problem. The
    header, height, link and key checks are the caller's; of the payload only a fill's trade
    id is read. Deltas come back as plain (account, asset, amount) tuples.
    """
    header = block_format.HEADER
    if len(record) < header.size + 4 + block_format.SIGNATURE_SIZE:
        return None
    magic, version, kind_code, height, timestamp_ns, prev_hash, raw_key_id, payload_length = (
        header.unpack_from(record, 0)
    )
    if (
        magic != block_format.MAGIC
        or version != block_format.FORMAT_VERSION
        or kind_code >= len(block_format.KINDS)
    ):
        return None
    position = header.size + payload_length
    trade_id = None
    if kind_code == _FILL_CODE:
        trade_id = fill_trade_id(record[header.size : position])
        if trade_id is None:
            return None
    end = len(record) - block_format.SIGNATURE_SIZE
    if position + 4 > end:
        return None
    count = int.from_bytes(record[position : position + 4], "big")
    position += 4
    deltas = []
    try:
        for _ in range(count):
            length = (record[position] << 8) | record[position + 1]
            account = record[position + 2 : position + 2 + length].decode("ascii")
            position += 2 + length
            length = (record[position] << 8) | record[position + 1]
            asset = record[position + 2 : position + 2 + length].decode("ascii")
            position += 2 + length
            amount = int.from_bytes(record[position : position + 8], "big", signed=True)
            position += 8
            deltas.append((account, asset, amount))
    except (IndexError, UnicodeDecodeError):
        return None
    if position != end:
        return None
    return ScannedBlock(
        height,
        kind_code,
        timestamp_ns,
        prev_hash,
        raw_key_id,
        sha256(memoryview(record)[:end]).digest(),
        deltas,
        trade_id,
        None,
    )


def scan_block_strictly(record: bytes) -> ScannedBlock:
    """What opening needs from any block, by block.py's strict decoder: for genesis and key
    rotations (``next_key_id``: the id of the key they introduce) and for anything
    :func:`scan_block` declines. ``BlockError`` names a problem."""
    signed = decode_signed_block(record)
    block = signed.block
    introduced = introduced_key(block)
    return ScannedBlock(
        height=block.height,
        kind_code=block_format.KIND_CODES[block.kind],
        timestamp_ns=block.timestamp_ns,
        prev_hash=block.prev_hash,
        raw_key_id=bytes.fromhex(block.key_id),
        block_hash=signed.block_hash,
        deltas=[(delta.account, delta.asset, delta.amount) for delta in block.deltas],
        trade_id=block.payload.get("trade_id") if block.kind == "fill" else None,
        next_key_id=raw_key_id(introduced) if introduced is not None else None,
    )


def rebuild(blocks: RecordLog, state: LedgerState | None) -> ChainIndex:
    """One pass over the durable blocks of ``blocks``: links, balances, tree, trades, keys.

    Starts from ``state`` (blocks before ``state.size`` are not read) or from nothing; see the
    module docstring for what is checked. An empty log gives an empty index. Raises
    ``LedgerCorruptError``.
    """
    index = ChainIndex() if state is None else ChainIndex.from_state(state)
    previous_hash = index.last_hash
    key_in_force = state.key_in_force if state is not None else None  # raw id: signs next
    last_timestamp_ns = index.last_timestamp_ns
    start = state.size if state is not None else 0
    # Locals for the per-block loop (each saves a lookup per block).
    tree_append, balances, trades = index.tree.append, index.balances, index.trade_heights
    order_append, order_heights_append = index.trade_order.append, index.trade_order_heights.append
    leaves_extend, key_starts = index.leaf_hashes.extend, index.key_starts
    height = start - 1
    try:
        for height, record in blocks.records(start):
            try:
                scanned = scan_block(record)
                if scanned is None or scanned.kind_code in block_format.KEY_KIND_CODES:
                    scanned = scan_block_strictly(record)
                if scanned.height != height:
                    raise BlockError("block.bad_height", f"record holds block {scanned.height}")
                if scanned.prev_hash != previous_hash:
                    raise BlockError("block.bad_link", "prev_hash is not the previous hash")
                if scanned.kind_code == _GENESIS_CODE:
                    if height != 0:
                        raise BlockError("block.bad_kind", "genesis may only be first")
                elif scanned.raw_key_id != key_in_force:
                    raise BlockError("block.wrong_key", "block names a key not in force")
                check_non_negative(balances, scanned.deltas)
            except BlockError as error:
                raise LedgerCorruptError(f"block {height}: {error}", height) from error
            for account, asset, amount in scanned.deltas:
                balances[account, asset] = balances.get((account, asset), 0) + amount
            if scanned.trade_id is not None:
                trades[scanned.trade_id] = height
                order_append(scanned.trade_id)
                order_heights_append(height)
            if scanned.next_key_id is not None:
                key_in_force = scanned.next_key_id
                key_starts.append(height + 1)
            previous_hash = scanned.block_hash
            leaf = leaf_hash(previous_hash)
            tree_append(leaf)
            leaves_extend(leaf)
            if scanned.timestamp_ns > last_timestamp_ns:
                last_timestamp_ns = scanned.timestamp_ns
    except RecordLogCorruptError as error:
        raise LedgerCorruptError.from_record_log(error) from error
    if height >= 0 and not key_starts:
        raise LedgerCorruptError("block 0 is not a genesis block", 0)
    index.last_hash = previous_hash
    index.last_timestamp_ns = last_timestamp_ns
    return index


def public_key_in_force(blocks: RecordLog, chain: ChainIndex, height: int) -> bytes:
    """The raw public key that signs block ``height`` -- and so the checkpoint of size
    ``height``, which is signed by the key that signs the block after the last one it covers.

    Genesis (height 0) is signed by the key it introduces. The key is read from the genesis or
    key-rotation block that brought it in (``chain.key_starts``: where each key starts), so
    ``chain`` must be the rebuilt index of ``blocks``. ``LedgerCorruptError`` if that block
    does not decode.
    """
    index = max(bisect_right(chain.key_starts, height) - 1, 0)
    if not chain.key_starts:
        raise LedgerCorruptError("no signing key: the ledger has no genesis block", 0)
    introducing = chain.key_starts[index] - 1
    try:
        key = introduced_key(decode_signed_block(blocks.read(introducing)).block)
    except (BlockError, RecordLogCorruptError) as error:
        raise LedgerCorruptError(f"block {introducing}: {error}", introducing) from error
    if key is None:  # key_starts only ever follow genesis and rotations
        raise LedgerCorruptError(f"block {introducing} introduces no key", introducing)
    return key


def check_signatures(blocks: RecordLog, chain: ChainIndex, start: int) -> int:
    """Check the Ed25519 signature of every durable block from height ``start`` on, each by
    the key in force at its height; return how many were checked.

    Opening calls it for the blocks after the newest checkpoint (about 125 us a block here:
    at most what one checkpoint interval holds). ``rebuild`` has already checked that each
    names the key in force. ``LedgerCorruptError`` naming the first height that fails.
    """
    keys: dict[int, Ed25519PublicKey] = {}  # index into chain.key_starts -> key
    key_starts = chain.key_starts
    checked = 0
    try:
        for height, record in blocks.records(start):
            index = max(bisect_right(key_starts, height) - 1, 0)
            key = keys.get(index)
            if key is None:
                raw = public_key_in_force(blocks, chain, height)
                key = keys[index] = Ed25519PublicKey.from_public_bytes(raw)
            encoding = memoryview(record)[: -block_format.SIGNATURE_SIZE]
            try:
                key.verify(record[-block_format.SIGNATURE_SIZE :], sha256(encoding).digest())
            except InvalidSignature:
                raise LedgerCorruptError(
                    f"block {height}: block.bad_signature: its Ed25519 signature does not "
                    "verify under the key in force",
                    height,
                ) from None
            checked += 1
    except RecordLogCorruptError as error:
        raise LedgerCorruptError.from_record_log(error) from error
    return checked
