"""The Ledger: the venue's tamper-evident book of record, one signed block per event.

What it does
------------
``Ledger.append(kind, payload, deltas)`` builds the next block (height, previous block hash,
timestamp, signing key id), checks it completely *before* anything is written -- payload schema,
conservation and DvP (``ledger.block.validate_and_encode``), no duplicate trade id, no balance going
negative -- and refuses a bad block with :class:`LedgerRefusedError` (a stable ``code``), changing
nothing. An accepted block is encoded, hashed, appended to the Merkle tree, applied to the
balances, signed, and written to a group-committed :class:`~ledger.recordlog.RecordLog`. The
returned :class:`BlockHandle` completes only once the block is durable: report a fill to anyone
only after that.

On disk, inside ``directory`` (the venue uses ``<data_dir>/ledger``)::

    blocks/        record log: record number == block height; record == encoding || signature
    checkpoints/   record log: one signed C2SP checkpoint note (UTF-8) per record, sizes rising
    state.bin      the state file (see "Opening"): a cache that speeds up opening

Pipeline (why there is a process)
---------------------------------
The caller's thread builds, validates, encodes and hashes each block (it must: the next block
needs this block's hash, and refusals must be synchronous). Everything after that -- the
Ed25519 signature, framing, ``write`` and ``fsync`` -- is the durable path, and where it runs
is ``signer``:

- ``signer="process"`` (default): the *writer process* (:mod:`ledger.writer_process`), a child
  with its own interpreter on the second core, signs, appends to the block log and fsyncs,
  with group commit. The parent opens and recovers the log, then detaches its writer
  (:meth:`~ledger.recordlog.RecordLog.detach_writer`): it keeps the index and serves reads.
  Two parent threads remain on the path: a *forwarder* sends each batch of accepted blocks
  down a pipe, and a *durable* thread reads the child's reports, indexes the new records and
  completes their handles. So the parent takes the GIL twice a batch on the way to durable
  (five times in an earlier design with signing alone in the child, whose p99 at half load
  was 9-60 ms; see the writer process's docstring for why that matters). Sending each block
  from the caller's thread instead of a forwarder was tried and was worse: every pipe write
  hands the GIL to the other threads, and the caller's schedule slipped (p50 1.4-2.2 ms).
- ``signer="thread"``: the forwarder signs (``sign`` releases the GIL) and the block log's own
  writer thread writes and fsyncs; no child process (fast to open, for tests and small tools).

Where the time goes (fills, 2 cores, ``load_tests/bench_ledger.py``)
-------------------------------------------------------------------
The writer process costs one raw Ed25519 signature a block (about 32 us here) plus framing and
its share of the writes (about 35 us in all), so the ledger process must stay below that for
the pair to run near the raw sign rate. Measured CPU per fill block in the ledger process, all
threads: about 23-26 us -- block.py's one-pass ``validate_and_encode`` about 12 us of it; the
rest is the fill deltas (``block.fill_deltas``, the one DvP rule, itself written for this path),
the balance check (``block.check_non_negative``), two SHA-256s and the Merkle append, the
handle, and the forwarder and durable threads. The handles matter for garbage collection: a
``Future`` carries a ``Condition`` and lists (ten GC-tracked objects), and thousands are in
flight at full speed; :class:`~ledger.recordlog.AppendHandle` creates them only on first use,
which cut collections from about 6 to under 1 us a block. A plain ``dict`` payload is not
copied (it is encoded before ``append`` returns and not kept).

Checkpoints
-----------
A checkpointer thread issues a signed checkpoint when ``checkpoint_every_blocks`` new blocks are
durable, or ``checkpoint_every_ms`` after the oldest uncovered durable block, whichever is first;
a checkpoint only ever covers blocks that are already durable, and is itself durable before
:meth:`Ledger.checkpoint` returns it. A checkpoint of size ``n`` is signed by the key in force for
block ``n`` (the key that signs the block after the last one it covers).

Opening
-------
Opening rebuilds balances, the Merkle tree, the trade index and the key in force. The record
log checks every record's checksum. Blocks are then scanned -- each block's header, height,
hash link, key id, exact length and deltas, and non-negative balances, but *no* signature or
payload-schema checks (``venue-audit verify`` does those, on all cores). Fills are read by a
fast scanner (:func:`_scan_block`); everything else by block.py's strict decoder, which is
also the fast scanner's test oracle. The newest stored checkpoint must match the rebuilt tree;
if crash recovery cut blocks a checkpoint covered, the ledger refuses to open.

The scan costs about 15 us a block (1.5-2 s for 100,000 fills), so the ledger also keeps a
**state file**, ``state.bin``: what the scan rebuilds (balances, trade index, key history,
last hash and timestamp, and every Merkle leaf hash) at a height that is durable and covered
by a stored checkpoint, with an HMAC-SHA256 keyed from the signing key. It is saved by the
checkpointer every ``state_every_blocks`` blocks and on close (temporary file, fsync, rename,
directory fsync). Opening uses it only if the MAC verifies under the signing key given to
``open``, it covers no more blocks than the newest checkpoint and the block log hold, the block
at its last height hashes to its last hash, and -- after the blocks after it are scanned as
above -- the newest checkpoint's root equals the tree rebuilt from its leaves, which checks
every saved leaf hash against the signed root. Otherwise opening logs why and scans every
block, so damage in the blocks is still named by the full scan. Blocks the state file covers
are checked only by their record checksums on open; ``venue-audit verify`` checks them all.
On disk: header (``ABSLST01``, covered count, section lengths, u64 little-endian), the
metadata as JSON, trade ids joined by newlines, their heights (u64 LE), the leaf hashes, the
32-byte MAC over all of it.

A failed write, fsync or signer is fatal: the ledger refuses every later append (reopen it).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import struct
import sys
import threading
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import block as blocks
from ledger.block import (
    Block,
    BlockError,
    Delta,
    SignedBlock,
    check_key_rotation,
    check_non_negative,
    decode_signed_block,
    fill_deltas,
    introduced_key,
)
from ledger.checkpoint import CheckpointError, make_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.errors import (
    LedgerClosedError,
    LedgerCorruptError,
    LedgerError,
    LedgerFailedError,
    LedgerRefusedError,
)
from ledger.hasher import HASH_SIZE, leaf_hash
from ledger.keys import (
    key_id,
    private_key_bytes,
    public_key_bytes,
    public_key_to_text,
    raw_key_id,
)
from ledger.proof import MerkleTree, ProofError
from ledger.receipt import build_receipt
from ledger.recordlog import (
    DEFAULT_SEGMENT_MAX_BYTES,
    AppendHandle,
    RecordLog,
    RecordLogCorruptError,
    RecordLogError,
    RecoveryReport,
    fsync_directory,
    write_all,
)
from ledger.writer_process import WriterProcess, WriterProcessError

DurableCallback = Callable[["BaseException | None"], None]

__all__ = [
    "BLOCKS_DIRECTORY",
    "CHECKPOINTS_DIRECTORY",
    "DEFAULT_ORIGIN",
    "BlockHandle",
    "Ledger",
    "LedgerClosedError",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerFailedError",
    "LedgerRefusedError",
]

logger = logging.getLogger(__name__)

BLOCKS_DIRECTORY = "blocks"
CHECKPOINTS_DIRECTORY = "checkpoints"
DEFAULT_ORIGIN = "abs-venue.example/ledger"
# At most this many blocks per batch the forwarder takes (one message to the writer process, or
# one group signed in the forwarder): bounds the latency a large backlog adds to its first block.
SIGN_BATCH_LIMIT = 512
# After a crash of the venue, its writer process commits what it holds and exits once it sees
# its input end; opening the ledger meanwhile waits up to this long for the block log's lock.
WRITER_EXIT_WAIT_SECONDS = 5.0


class BlockHandle(AppendHandle):
    """Completes (result: the height) once the block is durable; ``height`` is known at once.

    A ``concurrent.futures.Future``: ``result(timeout)`` from threads,
    ``asyncio.wrap_future(handle)`` from asyncio. Fails with :class:`LedgerFailedError`.

    ``durable_at``: ``time.perf_counter()`` when the ledger learnt the block was durable (set
    just before the handle completes; None until then or if it failed). It lets a caller
    measure append-to-durable latency without a callback per block (the benchmark does).
    """

    durable_at: float | None = None

    @property
    def height(self) -> int:
        return self.record_number


# --------------------------------------------------------------------------------------------
# Fast block scan for opening


_GENESIS_CODE = blocks.KIND_CODES["genesis"]
_FILL_CODE = blocks.KIND_CODES["fill"]
_TRADE_ID_KEY = b'"trade_id":"'


@dataclass(frozen=True, slots=True)
class _ScannedBlock:
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


def _fill_trade_id(payload: bytes) -> str | None:
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


def _scan_block(record: bytes) -> _ScannedBlock | None:
    """Read a stored block along the documented layout (docs/LEDGER.md), fast.

    Returns None for anything unusual -- a short or malformed record, a fill without a string
    trade id -- so the caller falls back to the strict decoder, which names the problem. The
    header, height, link and key checks are the caller's; of the payload only a fill's trade
    id is read. Deltas come back as plain (account, asset, amount) tuples.
    """
    header = blocks.HEADER
    if len(record) < header.size + 4 + blocks.SIGNATURE_SIZE:
        return None
    magic, version, kind_code, height, timestamp_ns, prev_hash, raw_key_id, payload_length = (
        header.unpack_from(record, 0)
    )
    if magic != blocks.MAGIC or version != blocks.FORMAT_VERSION or kind_code >= len(blocks.KINDS):
        return None
    position = header.size + payload_length
    trade_id = None
    if kind_code == _FILL_CODE:
        trade_id = _fill_trade_id(record[header.size : position])
        if trade_id is None:
            return None
    end = len(record) - blocks.SIGNATURE_SIZE
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
    return _ScannedBlock(
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


# --------------------------------------------------------------------------------------------
# The ledger state file: what a full scan would rebuild, saved at a checkpointed height


STATE_FILE_NAME = "state.bin"
_STATE_MAGIC = b"ABSLST01"
# magic, covered block count, then the byte lengths of the metadata JSON and the trade ids, and
# the trade count; all little-endian.
_STATE_HEADER = struct.Struct("<8sQQQQ")
_STATE_MAC_SIZE = 32
_STATE_MAC_CONTEXT = b"abs-venue ledger state file v1\x00"
_STATE_PIECE_BYTES = 256 * 1024
_STATE_PAUSE_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class _LedgerState:
    """Everything opening rebuilds from blocks ``0 .. size - 1``.

    Saved by :meth:`Ledger._save_state` only for a height that is durable and covered by a
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
    leaf_hashes: bytes | bytearray  # size x 32 bytes (or more: see _state_pieces), leaf order


def _state_mac_key(signing_key: Ed25519PrivateKey) -> bytes:
    """HMAC key for the state file, derived from the signing key in force when it was saved.

    Only the holder of the signing key can write a state file that opening accepts, and a
    state file saved before a key rotation is simply not used (opening scans instead).
    """
    return sha256(_STATE_MAC_CONTEXT + private_key_bytes(signing_key)).digest()


def _encode_state(state: _LedgerState, mac_key: bytes) -> bytes:
    """The state file's bytes: header, metadata JSON, trade ids, heights, leaves, HMAC."""
    return b"".join(_state_pieces(state, mac_key))


def _state_pieces(
    state: _LedgerState, mac_key: bytes, trade_count: int | None = None
) -> Iterator[bytes]:
    """The state file's bytes in pieces, each cheap to make (well under a millisecond), so that
    a saver can pause between them (see ``Ledger._save_state``); an empty piece is only a
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
    ids_step = _STATE_PIECE_BYTES // 16  # trade ids are about 10-16 bytes
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
        for start in range(0, leaves_end, _STATE_PIECE_BYTES):
            yield bytes(leaves[start : min(start + _STATE_PIECE_BYTES, leaves_end)])

    for piece in pieces():
        mac.update(piece)
        yield piece
    yield mac.digest()


def _decode_state(data: bytes, mac_key: bytes) -> _LedgerState:
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
    return _LedgerState(
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


# --------------------------------------------------------------------------------------------
# The ledger


class Ledger:
    """An open ledger. Create with :meth:`Ledger.open`; thread-safe."""

    def __init__(self) -> None:
        """Private: use :meth:`Ledger.open`."""
        self._lock = threading.RLock()
        self._blocks: RecordLog
        self._checkpoints: RecordLog
        self.directory = Path()
        self.origin = DEFAULT_ORIGIN
        self.checkpoint_every_blocks = 0
        self.checkpoint_every_ms = 0
        self.state_every_blocks = 0
        # How many blocks opening took from the state file rather than scanning (0: none).
        self.opened_from_state = 0
        self._state_size = 0  # blocks covered by the newest state file this process saved
        self._tree = MerkleTree()
        # Every leaf hash again, back to back: the state file saves them with one copy
        # (MerkleTree offers them one call per leaf). 32 bytes a block.
        self._leaf_hashes = bytearray()
        self._balances: dict[tuple[str, str], int] = {}
        self._trade_heights: dict[str, int] = {}
        # The same trades again, append-only in height order: the state file saves a prefix of
        # these without holding the lock for a copy of the whole index.
        self._trade_order: list[str] = []
        self._trade_order_heights = array("Q")
        self._last_hash = blocks.GENESIS_PREV_HASH
        self._last_timestamp_ns = 0
        # Parallel lists in height order: the first height each key signs, and that private
        # key (None for keys retired before this process opened the ledger).
        self._key_starts: list[int] = []
        self._key_history: list[Ed25519PrivateKey | None] = []
        self._signing_key: Ed25519PrivateKey
        self._signing_key_id = ""
        self._failure: LedgerFailedError | None = None
        self._closed = False
        self._last_handle: BlockHandle | None = None
        # when_durable: (size, callback) in non-decreasing size order, released in that order
        self._durable_waiters: deque[tuple[int, DurableCallback]] = deque()
        self._waiters_lock = threading.Lock()
        # forwarding stage
        self._forward_ready = threading.Condition(threading.Lock())
        self._to_sign: list[tuple[BlockHandle, bytes, bytes, Ed25519PrivateKey]] = []
        self._forwarder_waiting = False  # guarded by _forward_ready
        self._forwarder: threading.Thread | None = None
        # signer="process": the writer process, the handles of blocks sent to it and not yet
        # reported durable (in height order), and the thread reading its reports
        self._writer_process: WriterProcess | None = None
        self._awaiting: deque[BlockHandle] = deque()
        self._awaiting_lock = threading.Lock()
        self._durable_reader: threading.Thread | None = None
        # checkpoints
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_wakeup = threading.Condition(threading.Lock())
        self._checkpointer: threading.Thread | None = None
        self._latest_checkpoint: str | None = None
        self._covered_size = 0
        self._oldest_uncovered_ns: int | None = None

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | Path,
        signing_key: Ed25519PrivateKey,
        *,
        checkpoint_every_blocks: int = 1000,
        checkpoint_every_ms: int = 1000,
        origin: str | None = None,
        venue: str = "ABS Venue",
        signer: str = "process",
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        state_every_blocks: int = 50_000,
    ) -> Ledger:
        """Open the ledger in ``directory``, creating it with a genesis block if it is new.

        ``signing_key`` must be the key in force (the genesis key, or the newest rotated-in
        key). ``origin`` names the log in checkpoints; it is recorded in genesis (default
        ``DEFAULT_ORIGIN``) and, when given on a later open, must match. ``signer`` is
        ``"process"`` (the writer process signs, writes and fsyncs: see "Pipeline") or
        ``"thread"``.
        ``state_every_blocks``: save the state file (see "Opening" above) after a checkpoint
        once this many blocks are newer than the saved one, and on close.

        Raises :class:`LedgerCorruptError` for damage; ``LedgerError`` with code
        ``ledger.wrong_signing_key`` or ``ledger.origin_mismatch``; ``RecordLogLockedError``
        if the ledger is open elsewhere.
        """
        if checkpoint_every_blocks < 1 or checkpoint_every_ms < 1 or state_every_blocks < 1:
            raise ValueError("checkpoint and state intervals must be positive")
        if signer not in ("process", "thread"):
            raise ValueError(f"signer must be 'process' or 'thread', not {signer!r}")
        ledger = cls()
        ledger.directory = Path(directory)
        ledger.origin = origin or DEFAULT_ORIGIN
        ledger.checkpoint_every_blocks = checkpoint_every_blocks
        ledger.checkpoint_every_ms = checkpoint_every_ms
        ledger.state_every_blocks = state_every_blocks
        if not ledger.directory.is_dir():
            ledger.directory.mkdir(parents=True)
            fsync_directory(ledger.directory.parent)  # the new directory's name is durable
        # Checkpoints first: what the newest one covers was durable, so the block log must not
        # treat any of it as a torn tail (it refuses before truncating anything).
        ledger._checkpoints = RecordLog.open(ledger.directory / CHECKPOINTS_DIRECTORY)
        try:
            covered = ledger._newest_checkpoint_size()
            ledger._blocks = RecordLog.open(
                ledger.directory / BLOCKS_DIRECTORY,
                segment_max_bytes=segment_max_bytes,
                required_records=covered,
                lock_wait_seconds=WRITER_EXIT_WAIT_SECONDS,
            )
        except RecordLogCorruptError as error:
            ledger._checkpoints.close()
            raise LedgerCorruptError.from_record_log(error) from error
        except BaseException:
            ledger._checkpoints.close()
            raise
        try:
            ledger._recover(signing_key, venue, origin, covered)
            ledger._adopt_signing_key(signing_key)
            if signer == "process":
                ledger._writer_process = WriterProcess(ledger._blocks.detach_writer())
        except BaseException:
            ledger._blocks.close()
            ledger._checkpoints.close()
            raise
        ledger._start_threads()
        return ledger

    def _recover(
        self, signing_key: Ed25519PrivateKey, venue: str, origin: str | None, covered: int
    ) -> None:
        """Rebuild the in-memory state from the state file and the blocks after it, or else
        from every block; write genesis into a new ledger; check the newest checkpoint.

        The newest checkpoint's root must equal the rebuilt tree's (``_load_latest_checkpoint``)
        and the state file never claims more than that checkpoint covers, so every leaf hash
        the file supplied is checked against the signed root. If that check fails with the
        state file, the file is set aside and the ledger rebuilt from every block, so damage
        in the blocks is still named by the full scan.
        """
        state = self._read_state(signing_key, covered)
        if state is not None:
            try:
                self._rebuild(state)
                self._adopt_origin(origin)
                self._load_latest_checkpoint()
                self.opened_from_state = state.size
                return
            except LedgerCorruptError as error:
                logger.warning("ledger state file not used, scanning every block: %s", error)
                self._tree = MerkleTree()
                self._leaf_hashes = bytearray()
                self._balances = {}
                self._trade_heights = {}
                self._trade_order, self._trade_order_heights = [], array("Q")
                self._key_starts, self._key_history = [], []
        self._rebuild(None)
        if self._tree.size == 0:
            self._write_genesis(signing_key, venue)
        self._adopt_origin(origin)
        self._load_latest_checkpoint()

    def _read_state(self, signing_key: Ed25519PrivateKey, covered: int) -> _LedgerState | None:
        """The saved state if it is intact and fits the blocks on disk, else None (logged).

        Checks: the HMAC (written by the holder of ``signing_key``), exact lengths, a size no
        larger than the newest checkpoint covers or the block log holds, and that the block
        at ``size - 1`` on disk hashes to the saved last hash, whose leaf is the last saved
        leaf. The saved leaves as a whole are checked against the checkpoint afterwards.
        """
        path = self.directory / STATE_FILE_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = _decode_state(data, _state_mac_key(signing_key))
            if not 1 <= state.size <= min(covered, self._blocks.durable_count):
                raise ValueError(
                    f"state covers {state.size} blocks; checkpointed {covered}, "
                    f"stored {self._blocks.durable_count}"
                )
            record = self._blocks.read(state.size - 1)
            if sha256(record[: -blocks.SIGNATURE_SIZE]).digest() != state.last_hash:
                raise ValueError(f"block {state.size - 1} does not hash to the saved last hash")
            if state.leaf_hashes[-HASH_SIZE:] != leaf_hash(state.last_hash):
                raise ValueError("the last saved leaf is not the last block's leaf")
            if not state.key_starts or len(state.key_in_force) != 8:
                raise ValueError("state names no signing key")
        except (ValueError, KeyError, TypeError, RecordLogError) as error:
            logger.warning("ledger state file %s not used: %s", path, error)
            return None
        return state

    def _rebuild(self, state: _LedgerState | None) -> None:
        """One pass over the durable blocks: links, balances, tree, trade index, keys.

        Starts from ``state`` (blocks before ``state.size`` are not read) or from nothing.

        Checks record checksums (the record log), the header, height, hash link, key id and the
        exact record length of every block, and that no balance goes negative -- not signatures
        or payload schemas (``venue-audit verify`` does). Fills take the fast path of
        :func:`_scan_block`; every other kind, and any block the fast path cannot read, goes
        through the strict ``decode_signed_block`` so a problem is named by block.py's rules.
        """
        previous_hash = blocks.GENESIS_PREV_HASH
        key_in_force: bytes | None = None  # 8-byte raw key id of the key that signs next
        last_timestamp_ns = 0
        start = 0
        if state is not None:
            start = state.size
            previous_hash = state.last_hash
            key_in_force = state.key_in_force
            last_timestamp_ns = state.last_timestamp_ns
            leaves = state.leaf_hashes
            self._tree = MerkleTree.from_leaf_hashes(
                leaves[offset : offset + HASH_SIZE] for offset in range(0, len(leaves), HASH_SIZE)
            )
            self._leaf_hashes = bytearray(leaves)
            self._balances = dict(state.balances)
            self._trade_heights = dict(zip(state.trade_ids, state.trade_heights, strict=True))
            self._trade_order = list(state.trade_ids)
            self._trade_order_heights = array("Q", state.trade_heights)
            self._key_starts = list(state.key_starts)
            self._key_history = [None] * len(state.key_starts)
        tree_append, balances, trades = self._tree.append, self._balances, self._trade_heights
        order_append, order_heights_append = (
            self._trade_order.append,
            self._trade_order_heights.append,
        )
        leaves_extend = self._leaf_hashes.extend
        height = start - 1
        try:
            for height, record in self._blocks.records(start):
                try:
                    scanned = _scan_block(record)
                    if scanned is None or scanned.kind_code in blocks.KEY_KIND_CODES:
                        scanned = self._rebuild_key_block(record)
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
                    for account, asset, amount in scanned.deltas:
                        balances[account, asset] = balances.get((account, asset), 0) + amount
                except BlockError as error:
                    raise LedgerCorruptError(f"block {height}: {error}", height) from error
                if scanned.trade_id is not None:
                    trades[scanned.trade_id] = height
                    order_append(scanned.trade_id)
                    order_heights_append(height)
                if scanned.next_key_id is not None:
                    key_in_force = scanned.next_key_id
                    self._key_starts.append(height + 1)
                    self._key_history.append(None)
                previous_hash = scanned.block_hash
                leaf = leaf_hash(previous_hash)
                tree_append(leaf)
                leaves_extend(leaf)
                if scanned.timestamp_ns > last_timestamp_ns:
                    last_timestamp_ns = scanned.timestamp_ns
        except RecordLogCorruptError as error:
            raise LedgerCorruptError.from_record_log(error) from error
        if height >= 0 and not self._key_starts:
            raise LedgerCorruptError("block 0 is not a genesis block", 0)
        self._last_hash = previous_hash
        self._last_timestamp_ns = last_timestamp_ns

    @staticmethod
    def _rebuild_key_block(record: bytes) -> _ScannedBlock:
        """Strictly decode a block the fast path does not handle (genesis, rotation, odd)."""
        signed = decode_signed_block(record)
        block = signed.block
        introduced = introduced_key(block)
        return _ScannedBlock(
            height=block.height,
            kind_code=blocks.KIND_CODES[block.kind],
            timestamp_ns=block.timestamp_ns,
            prev_hash=block.prev_hash,
            raw_key_id=bytes.fromhex(block.key_id),
            block_hash=signed.block_hash,
            deltas=[(delta.account, delta.asset, delta.amount) for delta in block.deltas],
            trade_id=block.payload.get("trade_id") if block.kind == "fill" else None,
            next_key_id=raw_key_id(introduced) if introduced is not None else None,
        )

    def _write_genesis(self, signing_key: Ed25519PrivateKey, venue: str) -> None:
        payload = {
            "venue": venue,
            "origin": self.origin,
            "public_key": public_key_to_text(signing_key),
            "params": {
                "checkpoint_every_blocks": self.checkpoint_every_blocks,
                "checkpoint_every_ms": self.checkpoint_every_ms,
            },
        }
        block = Block(
            0, blocks.GENESIS_PREV_HASH, time.time_ns(), "genesis", key_id(signing_key), payload, ()
        )
        blocks.validate_block(block)
        signed = blocks.Signer(signing_key).sign(block)
        self._blocks.append_and_wait(signed.to_bytes())
        self._tree.append(signed.leaf_hash)
        self._leaf_hashes += signed.leaf_hash
        self._last_hash = signed.block_hash
        self._last_timestamp_ns = block.timestamp_ns
        self._key_starts.append(1)
        self._key_history.append(signing_key)

    def _adopt_origin(self, requested: str | None) -> None:
        """Use the origin recorded in genesis; a different requested one is an error."""
        recorded = decode_signed_block(self._blocks.read(0)).block.payload["origin"]
        if requested is not None and requested != recorded:
            raise LedgerError(
                f"ledger origin is {recorded!r}, not {requested!r}", "ledger.origin_mismatch"
            )
        self.origin = recorded

    def _adopt_signing_key(self, signing_key: Ed25519PrivateKey) -> None:
        """Check ``signing_key`` is the key in force and remember it."""
        in_force = self._key_in_force_public_bytes()
        if public_key_bytes(signing_key) != in_force:
            raise LedgerError(
                f"signing key {key_id(signing_key)} is not the key in force {key_id(in_force)}",
                "ledger.wrong_signing_key",
            )
        self._key_history[-1] = signing_key
        self._signing_key = signing_key
        self._signing_key_id = key_id(signing_key)

    def _key_in_force_public_bytes(self) -> bytes:
        last_key_block = self._key_starts[-1] - 1
        block = decode_signed_block(self._blocks.read(last_key_block)).block
        introduced = introduced_key(block)
        if introduced is None:  # key_starts only ever follow genesis and rotations
            raise LedgerError(f"block {last_key_block} introduces no key", "ledger.internal")
        return introduced

    def _newest_checkpoint_size(self) -> int:
        """Tree size of the newest stored checkpoint (0 if none)."""
        count = self._checkpoints.durable_count
        if count == 0:
            return 0
        try:
            return parse_checkpoint(self._checkpoints.read(count - 1))[0].size
        except CheckpointError as error:
            raise LedgerCorruptError(
                f"newest checkpoint (record {count - 1}) unreadable: {error}",
                0,
                str(self.directory / CHECKPOINTS_DIRECTORY),
            ) from error

    def _load_latest_checkpoint(self) -> None:
        """Adopt the newest stored checkpoint; it must match the rebuilt tree."""
        count = self._checkpoints.durable_count
        if count == 0:
            return
        note = self._checkpoints.read(count - 1).decode("utf-8")
        try:
            checkpoint, _ = parse_checkpoint(note)
        except CheckpointError as error:
            raise LedgerCorruptError(f"latest checkpoint unreadable: {error}", count - 1) from error
        if checkpoint.size > self._tree.size:
            raise LedgerCorruptError(
                f"checkpoint covers {checkpoint.size} blocks but only {self._tree.size} remain: "
                "durable blocks were lost",
                self._tree.size,
            )
        if checkpoint.origin != self.origin:
            raise LedgerCorruptError(
                f"latest checkpoint names origin {checkpoint.origin!r}, genesis {self.origin!r}",
                checkpoint.size - 1,
            )
        if checkpoint.root_hash != self._tree.root(checkpoint.size):
            raise LedgerCorruptError(
                f"checkpoint of size {checkpoint.size} does not match the blocks",
                checkpoint.size - 1,
            )
        self._latest_checkpoint = note
        self._covered_size = checkpoint.size

    def _start_threads(self) -> None:
        if self._writer_process is not None:
            self._durable_reader = threading.Thread(
                target=self._durable_loop, name="ledger-durable", daemon=True
            )
            self._durable_reader.start()
        self._forwarder = threading.Thread(
            target=self._forward_loop, name="ledger-forwarder", daemon=True
        )
        self._forwarder.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="ledger-checkpointer", daemon=True
        )
        self._checkpointer.start()

    # ---- state --------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Height of the newest appended block (durable or not); genesis is 0."""
        return self._tree.size - 1

    @property
    def durable_count(self) -> int:
        """Number of blocks (heights ``0 .. durable_count - 1``) that are durable."""
        return self._blocks.durable_count

    @property
    def recovery(self) -> RecoveryReport:
        """What opening the block log had to do (torn-tail bytes truncated, if any)."""
        return self._blocks.recovery

    @property
    def writer_process_id(self) -> int | None:
        """Process id of the writer process (``signer="process"``), else None."""
        return self._writer_process.pid if self._writer_process is not None else None

    @property
    def signing_key_id(self) -> str:
        """Key id of the key that signs the next block."""
        return self._signing_key_id

    def balance(self, account: str, asset: str) -> int:
        """Balance of ``account`` in ``asset`` after every appended block (0 if never touched)."""
        return self._balances.get((account, asset), 0)

    def balances(self) -> dict[tuple[str, str], int]:
        """A copy of every non-zero-history balance, keyed by (account, asset)."""
        with self._lock:
            return dict(self._balances)

    def find_fill(self, trade_id: str) -> int | None:
        """Height of the fill block for ``trade_id``, or None."""
        return self._trade_heights.get(trade_id)

    def block(self, height: int) -> SignedBlock:
        """The durable block at ``height`` (decoded, signature not re-verified)."""
        try:
            record = self._blocks.read(height)
        except RecordLogError as error:
            message = f"no durable block at height {height}"
            raise LedgerError(message, "ledger.no_such_block") from error
        return decode_signed_block(record)

    # ---- appending ----------------------------------------------------------------------

    def append(
        self,
        kind: str,
        payload: Mapping[str, Any],
        deltas: Iterable[tuple[str, str, int] | Delta] | None = None,
    ) -> BlockHandle:
        """Check, sign and durably append one block; return its handle at once.

        ``deltas`` are (account, asset, amount) triples or ``Delta``s; ``None`` means "derived
        from the payload" for fills, deposits and withdrawals and "none" for other kinds.
        Genesis and key rotations are not appended here (see :meth:`rotate_key`).
        Raises :class:`LedgerRefusedError` (nothing changed), :class:`LedgerFailedError`,
        :class:`LedgerClosedError`.
        """
        if kind in ("genesis", "key_rotation"):
            raise LedgerRefusedError(
                f"{kind} blocks are written by the ledger itself", "ledger.bad_kind"
            )
        # The payload is encoded before append returns and not kept, so a plain dict needs no
        # defensive copy; any other mapping is copied (validation requires a dict).
        if type(payload) is not dict:
            payload = dict(payload)
        with self._lock:
            return self._append_locked(kind, payload, deltas)

    def append_many(
        self, entries: Iterable[tuple[str, Mapping[str, Any], Iterable[Any] | None]]
    ) -> int:
        """Append ``(kind, payload, deltas)`` blocks in order under one lock hold, as
        :meth:`append` does each, without handing back a handle per block; returns the tree
        size after the last one (pass it to :meth:`when_durable`).

        A refusal raises :class:`LedgerRefusedError` with the blocks before it accepted and the
        rest not: callers append only blocks their own state machine has already checked, so
        for them a refusal is a bug, not an input error.
        """
        with self._lock:
            for kind, payload, deltas in entries:
                if kind in ("genesis", "key_rotation"):
                    raise LedgerRefusedError(
                        f"{kind} blocks are written by the ledger itself", "ledger.bad_kind"
                    )
                if type(payload) is not dict:
                    payload = dict(payload)
                self._append_locked(kind, payload, deltas)
            return self._tree.size

    def when_durable(self, size: int, callback: DurableCallback) -> None:
        """Call ``callback(None)`` once blocks ``0 .. size - 1`` are durable, or
        ``callback(failure)`` if the ledger fails first: one notification for a whole batch of
        blocks instead of a handle each.

        Successive calls must not decrease ``size`` (callbacks are released in call order). The
        callback runs in the ledger's durability thread, or at once in the caller's if the
        blocks are durable already; it must be quick and must not append.
        """
        with self._waiters_lock:
            failure = self._failure
            if failure is None and self.durable_count < size:
                self._durable_waiters.append((size, callback))
                return
        callback(failure if failure is not None and self.durable_count < size else None)

    def _release_waiters(self) -> None:
        """Run the :meth:`when_durable` callbacks that the durable count (or a failure)
        now answers, in order."""
        ready = []
        with self._waiters_lock:
            waiters = self._durable_waiters
            durable = self.durable_count
            failure = self._failure
            while waiters and (failure is not None or waiters[0][0] <= durable):
                ready.append(waiters.popleft())
        for size, callback in ready:
            try:
                callback(failure if size > durable else None)
            except Exception:  # a caller's bug must not stop durability for everyone else
                logger.exception("ledger durability callback failed")

    def _append_locked(
        self,
        kind: str,
        payload: dict[str, Any],
        deltas: Iterable[tuple[str, str, int] | Delta] | None,
    ) -> BlockHandle:
        if self._failure is not None or self._closed:
            self._check_open()
        balances = self._balances
        try:
            canonical = self._canonical_deltas(kind, payload, deltas)
            height = self._tree.size
            timestamp_ns = time.time_ns()
            if timestamp_ns < self._last_timestamp_ns:  # the wall clock stepped back
                timestamp_ns = self._last_timestamp_ns
            block = Block(
                height,
                self._last_hash,
                timestamp_ns,
                kind,
                self._signing_key_id,
                payload,
                canonical,
            )
            # block.py's one-pass validate + encode: schema, conservation, DvP, canonical form.
            encoded = blocks.validate_and_encode(block)
            trade_id = payload["trade_id"] if kind == "fill" else None
            if trade_id is not None and trade_id in self._trade_heights:
                raise LedgerRefusedError(
                    f"trade {trade_id} is already in block {self._trade_heights[trade_id]}",
                    "ledger.duplicate_trade",
                )
            # The last check: no balance outside external: may go negative. Every delta is
            # checked before any is applied, so a refusal changes nothing.
            check_non_negative(balances, canonical)
        except BlockError as error:
            raise LedgerRefusedError.from_block_error(error) from None
        # Accepted: from here on nothing can refuse the block.
        for account, asset, amount in canonical:
            key = (account, asset)
            balances[key] = balances.get(key, 0) + amount
        block_hash = sha256(encoded).digest()
        if trade_id is not None:
            self._trade_heights[trade_id] = height
            self._trade_order.append(trade_id)
            self._trade_order_heights.append(height)
        leaf = leaf_hash(block_hash)
        self._tree.append(leaf)
        self._leaf_hashes += leaf
        self._last_hash = block_hash
        self._last_timestamp_ns = timestamp_ns
        return self._enqueue(height, encoded, block_hash)

    def _enqueue(self, height: int, encoded: bytes, block_hash: bytes) -> BlockHandle:
        """Queue an accepted block for the forwarder (caller holds ``_lock``).

        The forwarder is only notified when it is waiting: at full speed it is busy and a
        ``notify`` per block would be wasted work on the caller's thread.
        """
        handle = BlockHandle(height)
        with self._forward_ready:
            if self._failure is None:
                self._to_sign.append((handle, encoded, block_hash, self._signing_key))
                if self._forwarder_waiting:
                    self._forward_ready.notify()
            else:  # the forwarder has stopped: never leave a handle hanging
                handle.set_exception(self._failure)
        self._last_handle = handle
        return handle

    @staticmethod
    def _canonical_deltas(
        kind: str,
        payload: dict[str, Any],
        deltas: Iterable[tuple[str, str, int] | Delta] | None,
    ) -> tuple[Delta, ...]:
        if deltas is None:
            try:
                if kind == "fill":
                    return fill_deltas(payload)
                if kind == "deposit":
                    return blocks.deposit_deltas(
                        payload["account"], payload["asset"], payload["amount"], payload["source"]
                    )
                if kind == "withdrawal":
                    return blocks.withdrawal_deltas(
                        payload["account"],
                        payload["asset"],
                        payload["amount"],
                        payload["destination"],
                    )
            except (KeyError, TypeError):
                pass  # malformed payload: validate_block names the bad field
            return ()
        triples = []
        for delta in deltas:
            if isinstance(delta, Delta):
                triples.append((delta.account, delta.asset, delta.amount))
            else:
                try:
                    account, asset, amount = delta
                except (TypeError, ValueError):
                    raise BlockError(
                        "block.bad_field", f"a delta is (account, asset, amount), not {delta!r}"
                    ) from None
                if type(amount) is not int:
                    raise BlockError("block.bad_field", f"delta amount {amount!r} is not an int")
                triples.append((account, asset, amount))
        if kind == "fill":
            exact = Ledger._given_fill_deltas(payload, triples)
            if exact is not None:
                return exact
        try:
            return blocks.make_deltas(triples)
        except TypeError as error:
            raise BlockError("block.bad_field", f"bad delta: {error}") from None

    @staticmethod
    def _given_fill_deltas(
        payload: dict[str, Any], triples: list[tuple[str, str, int]]
    ) -> tuple[Delta, ...] | None:
        """The fill's DvP deltas if the caller's ``triples`` are exactly those (the venue's
        normal case), else None for the general merge-and-sort path.

        Without duplicate keys -- which the sorted comparison with the unique DvP keys rules
        out -- merging changes nothing, so when every amount is an exact ``int`` (as the
        general path requires) and the non-zero triples in order equal the DvP set, they
        canonicalise to it.
        """
        if any(type(triple[2]) is not int for triple in triples):
            return None  # even a zero 0.0 would make the merged amount a float
        try:
            expected = fill_deltas(payload)
            given = sorted([triple for triple in triples if triple[2]])
        except (KeyError, TypeError):
            return None
        return expected if given == list(expected) else None

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise LedgerClosedError(f"ledger {self.directory} is closed")

    def rotate_key(self, new_key: Ed25519PrivateKey, reason: str | None = None) -> BlockHandle:
        """Append a key rotation signed by the current key; later blocks use ``new_key``.

        Returns once the rotation block is durable (its handle is already complete).
        """
        payload: dict[str, Any] = {"new_public_key": public_key_to_text(new_key)}
        if reason is not None:
            payload["reason"] = reason
        with self._lock:
            self._check_open()
            height = self._tree.size
            block = Block(
                height,
                self._last_hash,
                max(time.time_ns(), self._last_timestamp_ns),
                "key_rotation",
                self._signing_key_id,
                payload,
                (),
            )
            try:
                blocks.validate_block(block)
                check_key_rotation(public_key_bytes(new_key), public_key_bytes(self._signing_key))
            except BlockError as error:
                raise LedgerRefusedError.from_block_error(error) from None
            encoded = blocks.encode_block(block)
            block_hash = sha256(encoded).digest()
            leaf = leaf_hash(block_hash)
            self._tree.append(leaf)
            self._leaf_hashes += leaf
            self._last_hash = block_hash
            self._last_timestamp_ns = block.timestamp_ns
            handle = self._enqueue(height, encoded, block_hash)
            self._key_starts.append(height + 1)
            self._key_history.append(new_key)
            self._signing_key = new_key
            self._signing_key_id = key_id(new_key)
        self._wait_handle(handle)
        return handle

    def _wait_handle(self, handle: BlockHandle) -> None:
        error = handle.exception()
        if error is not None:
            raise error

    def flush(self, timeout: float | None = None) -> None:
        """Block until every block appended so far is durable (or raise the failure).

        Handles complete in height order, so waiting for the newest one is enough.
        """
        with self._lock:
            handle = self._last_handle
        if handle is not None:
            error = handle.exception(timeout)
            if error is not None:
                raise error

    # ---- the forwarding stage: sign, then hand to the record log ---------------------------

    def _forward_loop(self) -> None:
        """Take batches of accepted blocks and pass them on: down the writer process's pipe,
        or (``signer="thread"``) sign them here and queue them on the block log."""
        batch: list[tuple[BlockHandle, bytes, bytes, Ed25519PrivateKey]] = []
        writer = self._writer_process
        try:
            while True:
                with self._forward_ready:
                    while not self._to_sign and not self._closed:
                        self._forwarder_waiting = True
                        self._forward_ready.wait()
                        self._forwarder_waiting = False
                    if not self._to_sign:
                        return
                    batch = self._take_sign_batch()
                if writer is not None:
                    with self._awaiting_lock:
                        self._awaiting.extend(entry[0] for entry in batch)
                    writer.send(
                        batch[0][3], [entry[2] for entry in batch], [entry[1] for entry in batch]
                    )
                else:
                    sign = batch[0][3].sign
                    self._hand_to_log(batch, [sign(entry[2]) for entry in batch])
                batch = []
        except BaseException as error:
            self._fail(error)
            self._fail_pending(entry[0] for entry in batch)
        finally:
            if writer is not None:
                writer.finish_input()  # the child commits what it holds and exits

    def _durable_loop(self) -> None:
        """Read the writer process's reports: index the new records, complete their handles.

        The child's output ends when it exits: after ``close`` (the forwarder ended its input)
        that is the normal end; at any other time, or with blocks still awaited, it is fatal.
        """
        writer = self._writer_process
        if writer is None:
            raise LedgerError("durable reader without a writer process", "ledger.internal")
        try:
            while (runs := writer.read_report()) is not None:
                for run in runs:
                    self._blocks.note_written(run)
                    with self._awaiting_lock:
                        awaiting = self._awaiting
                        handles = [awaiting.popleft() for _ in range(len(run.offsets))]
                    self._on_durable(handles, None)
            with self._awaiting_lock:
                unreported = len(self._awaiting)
            if unreported or not self._closed:
                raise WriterProcessError(f"{writer.ended()} with {unreported} blocks unreported")
        except BaseException as error:
            self._fail(self._blocks.fail_detached(error))
            self._fail_pending(())

    def _fail_pending(self, taken: Iterable[BlockHandle]) -> None:
        """After a failure: fail ``taken`` (handles the caller holds) and every handle still
        queued or awaited, so that none is left hanging; ``_enqueue`` fails new ones at once."""
        with self._forward_ready:
            queued = [entry[0] for entry in self._to_sign]
            self._to_sign = []
        with self._awaiting_lock:
            awaited = list(self._awaiting)
            self._awaiting.clear()
        for handle in (*taken, *queued, *awaited):
            if not handle.done():
                handle.set_exception(self._failure)
        self._release_waiters()

    def _take_sign_batch(self) -> list[tuple[BlockHandle, bytes, bytes, Ed25519PrivateKey]]:
        """Up to ``SIGN_BATCH_LIMIT`` queued blocks that share one signing key."""
        queue = self._to_sign
        if not queue:
            return []
        key = queue[0][3]
        end = 1
        limit = min(len(queue), SIGN_BATCH_LIMIT)
        while end < limit and queue[end][3] is key:
            end += 1
        batch = queue[:end]
        del queue[:end]
        return batch

    def _hand_to_log(
        self,
        batch: list[tuple[BlockHandle, bytes, bytes, Ed25519PrivateKey]],
        signatures: list[bytes],
    ) -> None:
        records = [entry[1] + signature for entry, signature in zip(batch, signatures, strict=True)]
        handles = [entry[0] for entry in batch]
        first = self._blocks.append_batch(
            records, lambda _first, _count, error: self._on_durable(handles, error)
        )
        if first != handles[0].height:
            raise LedgerError("record numbers and heights diverged", "ledger.internal")

    def _on_durable(self, handles: list[BlockHandle], error: BaseException | None) -> None:
        """Runs in the record log's writer thread once a signed batch is durable (or failed)."""
        if error is not None:
            self._fail(error)
            for handle in handles:
                handle.set_exception(self._failure)
            self._release_waiters()
            return
        now = time.perf_counter()
        for handle in handles:
            handle.durable_at = now
            handle.set_result(handle.record_number)
        if self._durable_waiters:
            self._release_waiters()
        with self._checkpoint_wakeup:
            if self._oldest_uncovered_ns is None:  # start the T ms clock now
                self._oldest_uncovered_ns = time.monotonic_ns()
                self._checkpoint_wakeup.notify()
            elif self._blocks.durable_count - self._covered_size >= self.checkpoint_every_blocks:
                self._checkpoint_wakeup.notify()

    def _fail(self, cause: BaseException) -> None:
        """Enter the failed state (once): every later append raises ``LedgerFailedError``."""
        if self._failure is None:
            failure = LedgerFailedError(f"ledger {self.directory} failed: {cause!r}")
            failure.__cause__ = cause
            self._failure = failure
            logger.error("%s", failure)

    # ---- checkpoints --------------------------------------------------------------------

    def _checkpoint_loop(self) -> None:
        interval_ns = self.checkpoint_every_ms * 1_000_000
        while True:
            with self._checkpoint_wakeup:
                oldest = self._oldest_uncovered_ns
                if oldest is None:
                    timeout = self.checkpoint_every_ms / 1000
                else:
                    timeout = max(0.0, (oldest + interval_ns - time.monotonic_ns()) / 1e9)
                due_by_count = (
                    self._blocks.durable_count - self._covered_size >= self.checkpoint_every_blocks
                )
                if not due_by_count and not self._closed:
                    self._checkpoint_wakeup.wait(timeout)
                if self._closed:
                    return
                oldest = self._oldest_uncovered_ns
                due_by_time = oldest is not None and time.monotonic_ns() >= oldest + interval_ns
                due_by_count = (
                    self._blocks.durable_count - self._covered_size >= self.checkpoint_every_blocks
                )
            if (due_by_time or due_by_count) and self._failure is None:
                try:
                    self._issue_checkpoint_now()
                except BaseException as error:
                    self._fail(error)
                    return
                if self._covered_size - self._state_size >= self.state_every_blocks:
                    self._save_state()

    def _issue_checkpoint_now(self) -> str | None:
        """Sign and durably store a checkpoint covering every durable block; return it."""
        with self._checkpoint_lock:
            with self._lock:
                size = self._blocks.durable_count
                if size <= self._covered_size:
                    return self._latest_checkpoint
                root = self._tree.root(size)
                key = self._key_history[bisect_right(self._key_starts, size) - 1]
            if key is None:  # only possible for sizes older than the key we were opened with
                raise LedgerError(f"no private key for tree size {size}", "ledger.internal")
            checkpoint = make_checkpoint(self.origin, size, root, time.time_ns())
            note = sign_checkpoint(checkpoint, key)
            self._checkpoints.append_and_wait(note.encode("utf-8"))
            with self._checkpoint_wakeup:
                self._latest_checkpoint = note
                self._covered_size = size
                if self._blocks.durable_count > size:
                    self._oldest_uncovered_ns = time.monotonic_ns()
                else:
                    self._oldest_uncovered_ns = None
            return note

    def _save_state(self) -> None:
        """Save the state file at the current height, once that is durable and checkpointed.

        Runs in the checkpointer thread (or in ``close``), as a background task that keeps out
        of the appends' way (measured here: a save written in one go at 50,000 blocks took
        about 35 ms under load and was the worst stall in append-to-durable latency):

        - the lock is held only to note the height, the balances and how many trades there
          are; the trade list and leaf hashes below that are append-only, so their prefixes
          are read piece by piece after, without it and without copying them whole;
        - the file is written in pieces of ``_STATE_PIECE_BYTES``, each flushed with
          ``fdatasync`` (one flush of megabytes would make the block log's next fsync wait for
          all of it: one journal on ext4), with a pause of ``_STATE_PAUSE_SECONDS`` after
          each, so the GIL and the disk go to the block pipeline in between. (Measured against
          two alternatives -- write-back started per piece with ``posix_fadvise`` and one
          fsync at the end, or no per-piece flush at all -- this had the lowest p99, though the
          differences were within the machine's noise.)

        Written to a temporary file, fsynced, renamed over the old one and the directory
        fsynced: a crash leaves the old file or the new one. A failure is logged, not fatal:
        the file only speeds up opening.
        """
        with self._lock:
            size = self._tree.size
            last_hash, last_timestamp_ns = self._last_hash, self._last_timestamp_ns
            key_in_force = bytes.fromhex(self._signing_key_id)
            mac_key = _state_mac_key(self._signing_key)
            key_starts = list(self._key_starts)
            balances = dict(self._balances)
            trade_count = len(self._trade_order)
        try:
            self._blocks.wait_durable(size)
            if self._covered_size < size:
                self._issue_checkpoint_now()  # the state may only claim checkpointed blocks
            if self._covered_size < size:
                return  # appends failed in between; nothing consistent to save
            state = _LedgerState(
                size=size,
                last_hash=last_hash,
                last_timestamp_ns=last_timestamp_ns,
                key_in_force=key_in_force,
                key_starts=key_starts,
                balances=balances,
                trade_ids=self._trade_order,  # live and append-only: see _state_pieces
                trade_heights=self._trade_order_heights,
                leaf_hashes=self._leaf_hashes,
            )
            temporary = self.directory / (STATE_FILE_NAME + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for piece in _state_pieces(state, mac_key, trade_count):
                    if piece:
                        write_all(fd, piece)
                        os.fdatasync(fd)
                    time.sleep(_STATE_PAUSE_SECONDS)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.directory / STATE_FILE_NAME)
            fsync_directory(self.directory)
        except (OSError, RecordLogError, LedgerError) as error:
            logger.warning("ledger state file not saved: %s", error)
            return
        self._state_size = size

    def checkpoint(self) -> str | None:
        """The newest durable signed checkpoint note (C2SP text), or None before the first."""
        return self._latest_checkpoint

    def issue_checkpoint(self) -> str:
        """Make every appended block durable, then sign and store a checkpoint covering them."""
        self._check_open()
        self.flush()
        note = self._issue_checkpoint_now()
        if note is None:  # every appended block is durable and the ledger holds genesis
            raise LedgerError("no checkpoint after a flush", "ledger.internal")
        return note

    # ---- proofs and receipts ------------------------------------------------------------

    def _check_tree_size(self, tree_size: int) -> None:
        if not 0 < tree_size <= self._blocks.durable_count:
            raise LedgerError(
                f"tree size {tree_size} is not in [1, {self._blocks.durable_count}] durable",
                "ledger.bad_tree_size",
            )

    def inclusion_proof(self, height: int, tree_size: int) -> list[bytes]:
        """Audit path proving block ``height`` is in the tree of ``tree_size`` durable blocks."""
        self._check_tree_size(tree_size)
        try:
            return self._tree.inclusion_proof(height, tree_size)
        except ProofError as error:
            raise LedgerError(str(error), "ledger.bad_height") from error

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """Proof that the tree of ``old_size`` blocks is a prefix of the one of ``new_size``."""
        self._check_tree_size(new_size)
        try:
            return self._tree.consistency_proof(old_size, new_size)
        except ProofError as error:
            raise LedgerError(str(error), "ledger.bad_tree_size") from error

    def root(self, tree_size: int) -> bytes:
        """RFC 6962 root hash of the first ``tree_size`` durable blocks."""
        self._check_tree_size(tree_size)
        return self._tree.root(tree_size)

    def receipt(self, trade_id: str) -> dict[str, Any]:
        """A receipt for a fill: its block, inclusion proof and a signed checkpoint covering it.

        The JSON-able document ``ledger.receipt.verify_receipt`` checks with only the venue's
        public key. Uses the newest checkpoint; if that does not cover the fill yet, issues one
        (which first waits for the fill to be durable). ``LedgerError`` with code
        ``ledger.no_such_trade`` if there is no such fill.
        """
        height = self.find_fill(trade_id)
        if height is None:
            raise LedgerError(f"no fill with trade id {trade_id!r}", "ledger.no_such_trade")
        note = self._latest_checkpoint
        if note is None or parse_checkpoint(note)[0].size <= height:
            note = self.issue_checkpoint()
        size = parse_checkpoint(note)[0].size
        record = self._blocks.read(height)
        return build_receipt(record, height, size, self.inclusion_proof(height, size), note)

    # ---- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Make everything appended durable, checkpoint it, stop the threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._forward_ready:
            self._forward_ready.notify_all()
        if self._forwarder is not None:
            self._forwarder.join()
        if self._durable_reader is not None:
            self._durable_reader.join()
        if self._writer_process is not None:
            self._writer_process.close()
        self._blocks.close()
        with self._checkpoint_wakeup:
            self._checkpoint_wakeup.notify_all()
        if self._checkpointer is not None:
            self._checkpointer.join()
        if self._failure is None:
            try:
                self._issue_checkpoint_now()
            except (RecordLogError, LedgerError) as error:
                logger.error("final checkpoint failed: %s", error)
            else:
                self._save_state()
        self._checkpoints.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
