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
- ``write_state_file(directory, state, mac_key, trade_count)``: the paced, crash-safe write of
  a whole file (the base record);
- ``append_state_file(directory, tail, state, mac_key, trade_count)``: append what changed
  since ``tail`` (the last saved record) as a delta record;
- ``read_state_file(directory, mac_key, covered, blocks)``: the state if intact and fitting the
  blocks on disk (and the tail to append after), else None (logged).

Appended, not rewritten
-----------------------
The file is a *base* record (the whole state, as written by ``write_state_file``) followed by
*delta* records, each holding only what changed since the record before it: the new leaf
hashes, the new trade ids and heights, the balances that changed (their new values), and the
small facts in full (size, last hash and timestamp, key in force, key starts). A save appends
one delta (``append_state_file``), so its cost follows the blocks since the last save, not the
size of the ledger. Each delta is ``length u32 LE || payload || HMAC-SHA256(mac key, previous
record's MAC || length || payload)``: chained, so records cannot be dropped from the middle,
reordered or spliced in from another file; dropping records at the end only leaves an older,
genuine state (the file is a cache). Reading stops at the first delta that is cut short (a torn
append: a crash mid-save) or whose MAC fails, and uses the state up to there; the next save
truncates the file back to the end of the record it continues from before appending. The file
is rewritten whole (compacted) when this process did not open from it, after a key rotation
(the MAC key changes) and once it holds ``STATE_MAX_RECORDS`` records.

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
    "StateFileTail",
    "append_state_file",
    "decode_state",
    "decode_state_file",
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
# A delta record: new size, metadata JSON length, trade-id bytes length, trade count (u64 LE).
_DELTA_HEADER = struct.Struct("<QQQQ")
_LENGTH = struct.Struct("<I")
# The file is compacted (rewritten whole) once it holds this many records: opening reads them
# all (about 0.1 ms a delta beyond its leaves), and each repeats the key starts.
STATE_MAX_RECORDS = 1024


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


@dataclass(frozen=True, slots=True)
class StateFileTail:
    """Where the next save appends: the end ``offset`` of the last record used, its ``mac``
    (the next delta's MAC chains to it), what it saved (``size`` blocks, ``trade_count``
    trades, ``balances``), the ``mac_key`` it was saved under and how many ``records`` the
    file holds up to there."""

    offset: int
    mac: bytes
    size: int
    trade_count: int
    balances: dict[tuple[str, str], int]
    mac_key: bytes
    records: int


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


def decode_state(data: bytes, mac_key: bytes, limit: int | None = None) -> LedgerState:
    """Parse a state file, its deltas applied; ``ValueError`` naming the problem if its base
    record is not exactly valid. See :func:`decode_state_file`."""
    return decode_state_file(data, mac_key, limit)[0]


def decode_state_file(
    data: bytes, mac_key: bytes, limit: int | None = None
) -> tuple[LedgerState, StateFileTail]:
    """The state a state file holds and the tail a save appends after.

    The base record must be exactly valid (else ``ValueError``). Deltas are applied in order
    while they are complete, their MAC chain holds and (with ``limit``) they claim at most
    ``limit`` blocks; the first that is not ends the reading (logged unless it is the end of
    the file or merely beyond ``limit``), so a torn append costs only that save.
    """
    if len(data) < _STATE_HEADER.size + _STATE_MAC_SIZE:
        raise ValueError(f"state file is {len(data)} bytes, too short (no MAC)")
    magic, size, meta_length, ids_length, trade_count = _STATE_HEADER.unpack_from(data, 0)
    if magic != _STATE_MAGIC:
        raise ValueError(f"state file magic {magic!r}")
    body_end = _STATE_HEADER.size + meta_length + ids_length + 8 * trade_count + HASH_SIZE * size
    if len(data) < body_end + _STATE_MAC_SIZE:
        raise ValueError("state file is cut short: its MAC does not match")
    body, mac = data[:body_end], data[body_end : body_end + _STATE_MAC_SIZE]
    if not hmac.compare_digest(hmac.new(mac_key, body, sha256).digest(), mac):
        raise ValueError("state file MAC does not match (damaged, or saved under another key)")
    position = _STATE_HEADER.size
    meta = json.loads(body[position : position + meta_length])
    position += meta_length
    trade_ids = _split_ids(body[position : position + ids_length], trade_count)
    position += ids_length
    heights = _heights(body[position : position + 8 * trade_count])
    position += 8 * trade_count
    if len(trade_ids) != trade_count:
        raise ValueError(f"state file names {len(trade_ids)} trades, header says {trade_count}")
    balances = {(account, asset): amount for account, asset, amount in meta["balances"]}
    leaves = bytearray(body[position:])
    offset, records = body_end + _STATE_MAC_SIZE, 1
    saved = dict(balances)
    while offset < len(data):
        delta = _read_delta(data, offset, mac, mac_key)
        if delta is None:
            break
        end, mac, delta_size, delta_meta, delta_ids, delta_heights, delta_leaves = delta
        if limit is not None and delta_size > limit:
            break
        meta = delta_meta
        for account, asset, amount in meta["balances"]:
            saved[account, asset] = amount
        trade_ids.extend(delta_ids)
        heights.extend(delta_heights)
        leaves += delta_leaves
        size, offset, records = delta_size, end, records + 1
    state = LedgerState(
        size=size,
        last_hash=bytes.fromhex(meta["last_hash"]),
        last_timestamp_ns=meta["last_timestamp_ns"],
        key_in_force=bytes.fromhex(meta["key_in_force"]),
        key_starts=list(meta["key_starts"]),
        balances=saved,
        trade_ids=trade_ids,
        trade_heights=heights,
        leaf_hashes=leaves,
    )
    tail = StateFileTail(offset, mac, size, len(trade_ids), dict(saved), mac_key, records)
    return state, tail


def _split_ids(text: bytes, count: int) -> list[str]:
    return text.decode("ascii").split("\n") if count else []


def _heights(raw: bytes) -> array:
    heights = array("Q")
    heights.frombytes(raw)
    if sys.byteorder != "little":
        heights.byteswap()
    return heights


def _read_delta(data: bytes, offset: int, previous_mac: bytes, mac_key: bytes):
    """The delta record at ``offset``, parsed, or None (logged) if it is cut short, its MAC
    does not chain to ``previous_mac`` or it does not parse."""
    end = offset + _LENGTH.size
    if end <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        end += length + _STATE_MAC_SIZE
    if end > len(data):
        logger.warning("state file: ignoring a delta cut short at byte %d (a torn save)", offset)
        return None
    payload = data[offset + _LENGTH.size : end - _STATE_MAC_SIZE]
    mac = hmac.new(mac_key, previous_mac + data[offset : offset + _LENGTH.size], sha256)
    mac.update(payload)
    if not hmac.compare_digest(mac.digest(), data[end - _STATE_MAC_SIZE : end]):
        logger.warning("state file: delta at byte %d does not match its MAC; ignored", offset)
        return None
    try:
        size, meta_length, ids_length, trade_count = _DELTA_HEADER.unpack_from(payload, 0)
        position = _DELTA_HEADER.size
        meta = json.loads(payload[position : position + meta_length])
        position += meta_length
        ids = _split_ids(payload[position : position + ids_length], trade_count)
        position += ids_length
        heights = _heights(payload[position : position + 8 * trade_count])
        leaves = payload[position + 8 * trade_count :]
        if len(ids) != trade_count or len(heights) != trade_count or len(leaves) % HASH_SIZE:
            raise ValueError("lengths do not add up")
    except (ValueError, struct.error) as error:
        logger.warning("state file: delta at byte %d does not parse (%s); ignored", offset, error)
        return None
    return end, mac.digest(), size, meta, ids, heights, leaves


def write_state_file(
    directory: Path, state: LedgerState, mac_key: bytes, trade_count: int
) -> StateFileTail:
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
    a crash leaves the old file or the new one. Returns the tail a save appends after. Raises
    ``OSError``.
    """
    temporary = directory / (STATE_FILE_NAME + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        last: list[bytes] = []  # the last piece: the MAC
        written = _write_paced(fd, _remember_last(state_pieces(state, mac_key, trade_count), last))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, directory / STATE_FILE_NAME)
    fsync_directory(directory)
    return StateFileTail(
        written, last[0], state.size, trade_count, dict(state.balances), mac_key, 1
    )


def append_state_file(
    directory: Path, tail: StateFileTail, state: LedgerState, mac_key: bytes, trade_count: int
) -> StateFileTail:
    """Append to ``directory/state.bin`` what changed from ``tail`` to ``state`` (one delta
    record: module docstring); the new tail. ``state`` may hold the ledger's live containers,
    as for ``write_state_file``; its first ``trade_count`` trades and ``state.size`` leaves are
    what it saves. The file is first cut back to ``tail.offset`` (dropping a torn or unused
    tail), then the record is written in paced pieces and fsynced: a crash leaves the file as
    it was or with a torn delta that reading ignores. Raises ``OSError``.
    """
    changed = sorted(
        (account, asset, amount)
        for (account, asset), amount in state.balances.items()
        if tail.balances.get((account, asset)) != amount
    )
    meta = json.dumps(
        {
            "balances": [list(entry) for entry in changed],
            "key_in_force": state.key_in_force.hex(),
            "key_starts": state.key_starts,
            "last_hash": state.last_hash.hex(),
            "last_timestamp_ns": state.last_timestamp_ns,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
    ids = "\n".join(state.trade_ids[tail.trade_count : trade_count]).encode("ascii")
    new_trades = trade_count - tail.trade_count
    heights = array("Q", state.trade_heights[tail.trade_count : trade_count])
    if sys.byteorder != "little":
        heights.byteswap()
    leaves = state.leaf_hashes
    leaves_start, leaves_end = tail.size * HASH_SIZE, state.size * HASH_SIZE
    header = _DELTA_HEADER.pack(state.size, len(meta), len(ids), new_trades)
    length = len(header) + len(meta) + len(ids) + 8 * new_trades + leaves_end - leaves_start
    length_bytes = _LENGTH.pack(length)
    mac = hmac.new(mac_key, tail.mac + length_bytes, sha256)

    def pieces() -> Iterator[bytes]:
        yield length_bytes + header + meta + ids + heights.tobytes()
        for start in range(leaves_start, leaves_end, STATE_PIECE_BYTES):
            yield bytes(leaves[start : min(start + STATE_PIECE_BYTES, leaves_end)])

    def maced() -> Iterator[bytes]:
        first = True
        for piece in pieces():
            mac.update(piece[_LENGTH.size :] if first else piece)
            first = False
            yield piece
        yield mac.digest()

    fd = os.open(directory / STATE_FILE_NAME, os.O_WRONLY)
    try:
        os.ftruncate(fd, tail.offset)
        os.lseek(fd, tail.offset, os.SEEK_SET)
        written = _write_paced(fd, maced())
        os.fsync(fd)
    finally:
        os.close(fd)
    return StateFileTail(
        tail.offset + written,
        mac.digest(),
        state.size,
        trade_count,
        dict(state.balances),
        mac_key,
        tail.records + 1,
    )


def _remember_last(pieces: Iterator[bytes], seen: list[bytes]) -> Iterator[bytes]:
    """``pieces`` passed through, the last one kept in ``seen``."""
    for piece in pieces:
        seen[:] = [piece]
        yield piece


def _write_paced(fd: int, pieces: Iterator[bytes]) -> int:
    """Write ``pieces``, each flushed with ``fdatasync`` and followed by a pause of
    ``STATE_PAUSE_SECONDS`` (see ``write_state_file``); the bytes written."""
    written = 0
    for piece in pieces:
        if piece:
            write_all(fd, piece)
            os.fdatasync(fd)
            written += len(piece)
        time.sleep(STATE_PAUSE_SECONDS)
    return written


def read_state_file(
    directory: Path, mac_key: bytes, covered: int, blocks: RecordLog
) -> tuple[LedgerState, StateFileTail] | None:
    """The saved state if it is intact and fits the blocks on disk, and the tail the next save
    appends after; else None (logged).

    Deltas claiming more blocks than ``covered`` or stored are not applied (the state of the
    record before them is used). Checks: the HMACs (``mac_key``: from the signing key given to
    open), exact lengths, a size
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
        state, tail = decode_state_file(data, mac_key, min(covered, blocks.durable_count))
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
    return state, tail
