"""The ledger state file, ``state.bin``: what opening would rebuild, saved to skip the scan.

What and why
------------
Opening a ledger scans every block (about 15 us a block: 1.5-2 s for 100,000 fills) to rebuild
the balances, the trade index, the key history, the last hash and timestamp, and every Merkle
leaf hash. The state file holds exactly that for the first ``size`` blocks, at a height that is
durable and covered by a stored checkpoint, MACed with a key derived from the signing key, so
that opening can start from it and scan only the blocks after it. It is a cache, not part of
the audited record (``venue-audit`` ignores it): anything wrong with it means "scan instead".

This module is the file alone -- its bytes, writing and reading:

- ``LedgerState``: the saved facts; ``state_mac_key(signing_key)``;
- ``encode_state`` / ``state_pieces`` / ``decode_state``: the format (below);
- ``write_state_file(directory, state, mac_key, trade_count)``: the paced, crash-safe write;
- ``read_state_file(directory, mac_key, covered, blocks)``: the state if intact and fitting the
  blocks on disk, else None (logged).

The ledger (``ledger.ledger``) decides when to save (after a checkpoint, every
``state_every_blocks``, and on close) and checks the saved leaves against the newest checkpoint
after using them (``ledger.recovery``).

Format (docs/LEDGER.md section 9): header (``ABSLST01``, covered count, metadata JSON length,
trade-id bytes length, trade count; u64 little-endian), the metadata as JSON (balances, key in
force, key starts, last hash, last timestamp), trade ids joined by newlines, their heights
(u64 LE), ``size`` x 32-byte leaf hashes, then HMAC-SHA256 over all of it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import struct
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.block import SIGNATURE_SIZE
from ledger.hasher import HASH_SIZE, leaf_hash
from ledger.keys import private_key_bytes
from ledger.recordlog import RecordLog, RecordLogError, fsync_directory, write_all

__all__ = [
    "STATE_FILE_NAME",
    "LedgerState",
    "decode_state",
    "encode_state",
    "read_state_file",
    "state_mac_key",
    "state_pieces",
    "write_state_file",
]

logger = logging.getLogger(__name__)

STATE_FILE_NAME = "state.bin"
_STATE_MAGIC = b"ABSLST01"
# magic, covered block count, then the byte lengths of the metadata JSON and the trade ids, and
# the trade count; all little-endian.
_STATE_HEADER = struct.Struct("<8sQQQQ")
_STATE_MAC_SIZE = 32
_STATE_MAC_CONTEXT = b"abs-venue ledger state file v1\x00"
# Writing: pieces of this many bytes, each flushed, with this pause after each (see
# write_state_file).
STATE_PIECE_BYTES = 256 * 1024
STATE_PAUSE_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class LedgerState:
    """Everything opening rebuilds from blocks ``0 .. size - 1``.

    Saved (by ``Ledger._save_state``) only for a height that is durable and covered by a
    stored checkpoint, so opening can check the saved leaf hashes against that checkpoint.
    """

    size: int
    last_hash: bytes
    last_timestamp_ns: int
    key_in_force: bytes  # raw 8-byte id of the key that signs block ``size``
    key_starts: list[int]
    balances: dict[tuple[str, str], int]
    trade_ids: list[str]
    trade_heights: array
    leaf_hashes: bytes | bytearray  # size x 32 bytes (or more: see state_pieces), leaf order


def state_mac_key(signing_key: Ed25519PrivateKey) -> bytes:
    """HMAC key for the state file, derived from the signing key in force when it was saved.

    Only the holder of the signing key can write a state file that opening accepts, and a
    state file saved before a key rotation is simply not used (opening scans instead).
    """
    return sha256(_STATE_MAC_CONTEXT + private_key_bytes(signing_key)).digest()


def encode_state(state: LedgerState, mac_key: bytes) -> bytes:
    """The state file's bytes: header, metadata JSON, trade ids, heights, leaves, HMAC."""
    return b"".join(state_pieces(state, mac_key))


def state_pieces(
    state: LedgerState, mac_key: bytes, trade_count: int | None = None
) -> Iterator[bytes]:
    """The state file's bytes in pieces, each cheap to make (well under a millisecond), so that
    a saver can pause between them (see ``write_state_file``); an empty piece is only a
    pause point.

    Reads only the first ``trade_count`` (default: all) trade ids and heights and the first
    ``state.size`` leaf hashes, so a saver can pass the ledger's live, append-only containers
    instead of copying them.
    """
    meta = json.dumps(
        {
            "balances": [[account, asset, amount] for (account, asset), amount in
                         sorted(state.balances.items())],
            "key_in_force": state.key_in_force.hex(),
            "key_starts": state.key_starts,
            "last_hash": state.last_hash.hex(),
            "last_timestamp_ns": state.last_timestamp_ns,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")  # fmt: skip
    trade_ids, heights = state.trade_ids, state.trade_heights  # ids: ASCII, never a newline
    count = len(trade_ids) if trade_count is None else trade_count
    ids_step = STATE_PIECE_BYTES // 16  # trade ids are about 10-16 bytes
    ranges = [(start, min(start + ids_step, count)) for start in range(0, count, ids_step)]
    mac = hmac.new(mac_key, digestmod=sha256)

    def pieces() -> Iterator[bytes]:
        ids_length = max(0, count - 1)  # the newlines
        for start, end in ranges:
            ids_length += sum(map(len, trade_ids[start:end]))
            yield b""
        yield _STATE_HEADER.pack(_STATE_MAGIC, state.size, len(meta), ids_length, count) + meta
        for start, end in ranges:
            text = "\n".join(trade_ids[start:end])
            yield (text if start == 0 else "\n" + text).encode("ascii")
        for start, end in ranges:
            chunk = array("Q", heights[start:end])
            if sys.byteorder != "little":
                chunk.byteswap()
            yield chunk.tobytes()
        leaves, leaves_end = state.leaf_hashes, state.size * HASH_SIZE
        for start in range(0, leaves_end, STATE_PIECE_BYTES):
            yield bytes(leaves[start : min(start + STATE_PIECE_BYTES, leaves_end)])

    for piece in pieces():
        mac.update(piece)
        yield piece
    yield mac.digest()


def decode_state(data: bytes, mac_key: bytes) -> LedgerState:
    """Parse a state file; ``ValueError`` naming the problem if it is not exactly valid."""
    if len(data) < _STATE_HEADER.size + _STATE_MAC_SIZE:
        raise ValueError(f"state file is {len(data)} bytes, too short")
    body, mac = data[:-_STATE_MAC_SIZE], data[-_STATE_MAC_SIZE:]
    if not hmac.compare_digest(hmac.new(mac_key, body, sha256).digest(), mac):
        raise ValueError("state file MAC does not match (damaged, or saved under another key)")
    magic, size, meta_length, ids_length, trade_count = _STATE_HEADER.unpack_from(body, 0)
    if magic != _STATE_MAGIC:
        raise ValueError(f"state file magic {magic!r}")
    position = _STATE_HEADER.size
    expected = position + meta_length + ids_length + 8 * trade_count + HASH_SIZE * size
    if len(body) != expected:
        raise ValueError(f"state file body is {len(body)} bytes, its header implies {expected}")
    meta = json.loads(body[position : position + meta_length])
    position += meta_length
    trade_ids = body[position : position + ids_length].decode("ascii").split("\n")
    if trade_count == 0:
        trade_ids = []
    position += ids_length
    heights = array("Q")
    heights.frombytes(body[position : position + 8 * trade_count])
    if sys.byteorder != "little":
        heights.byteswap()
    position += 8 * trade_count
    if len(trade_ids) != trade_count:
        raise ValueError(f"state file names {len(trade_ids)} trades, header says {trade_count}")
    return LedgerState(
        size=size,
        last_hash=bytes.fromhex(meta["last_hash"]),
        last_timestamp_ns=meta["last_timestamp_ns"],
        key_in_force=bytes.fromhex(meta["key_in_force"]),
        key_starts=list(meta["key_starts"]),
        balances={(account, asset): amount for account, asset, amount in meta["balances"]},
        trade_ids=trade_ids,
        trade_heights=heights,
        leaf_hashes=body[position:],
    )


def write_state_file(directory: Path, state: LedgerState, mac_key: bytes, trade_count: int) -> None:
    """Write ``state`` as ``directory/state.bin``, keeping out of the block pipeline's way.

    ``state`` may hold the ledger's live, append-only trade and leaf containers: only the first
    ``trade_count`` trades and ``state.size`` leaves are read, piece by piece. (Measured here: a
    save written in one go at 50,000 blocks took about 35 ms under load and was the worst stall
    in append-to-durable latency.) So the file is written in pieces of ``STATE_PIECE_BYTES``,
    each flushed with ``fdatasync`` (one flush of megabytes would make the block log's next
    fsync wait for all of it: one journal on ext4), with a pause of ``STATE_PAUSE_SECONDS``
    after each, so the GIL and the disk go to the block pipeline in between. (Measured against
    two alternatives -- write-back started per piece with ``posix_fadvise`` and one fsync at
    the end, or no per-piece flush at all -- this had the lowest p99, though the differences
    were within the machine's noise.)

    Written to a temporary file, fsynced, renamed over the old one and the directory fsynced:
    a crash leaves the old file or the new one. Raises ``OSError``.
    """
    temporary = directory / (STATE_FILE_NAME + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for piece in state_pieces(state, mac_key, trade_count):
            if piece:
                write_all(fd, piece)
                os.fdatasync(fd)
            time.sleep(STATE_PAUSE_SECONDS)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, directory / STATE_FILE_NAME)
    fsync_directory(directory)


def read_state_file(
    directory: Path, mac_key: bytes, covered: int, blocks: RecordLog
) -> LedgerState | None:
    """The saved state if it is intact and fits the blocks on disk, else None (logged).

    Checks: the HMAC (``mac_key``: from the signing key given to open), exact lengths, a size
    no larger than ``covered`` (the newest checkpoint's size) or the block log holds, and that
    the block at ``size - 1`` on disk hashes to the saved last hash, whose leaf is the last
    saved leaf. The caller checks the saved leaves as a whole against the checkpoint after
    rebuilding from them.
    """
    path = directory / STATE_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = decode_state(data, mac_key)
        if not 1 <= state.size <= min(covered, blocks.durable_count):
            raise ValueError(
                f"state covers {state.size} blocks; checkpointed {covered}, "
                f"stored {blocks.durable_count}"
            )
        record = blocks.read(state.size - 1)
        if sha256(record[:-SIGNATURE_SIZE]).digest() != state.last_hash:
            raise ValueError(f"block {state.size - 1} does not hash to the saved last hash")
        if state.leaf_hashes[-HASH_SIZE:] != leaf_hash(state.last_hash):
            raise ValueError("the last saved leaf is not the last block's leaf")
        if not state.key_starts or len(state.key_in_force) != 8:
            raise ValueError("state names no signing key")
    except (ValueError, KeyError, TypeError, RecordLogError) as error:
        logger.warning("ledger state file %s not used: %s", path, error)
        return None
    return state
