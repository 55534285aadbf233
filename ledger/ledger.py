"""The Ledger: the venue's tamper-evident book of record, one signed block per event.

What it does
------------
``Ledger.append(kind, payload, deltas)`` builds the next block (height, previous block hash,
timestamp, signing key id), checks it completely *before* anything is written -- payload schema,
conservation and DvP (``ledger.block.validate_and_encode``), no duplicate trade id, no balance going
negative (``ledger.block.check_non_negative``) -- and refuses a bad block with
:class:`LedgerRefusedError` (a stable ``code``), changing nothing. An accepted block is encoded,
hashed, appended to the Merkle tree, applied to the balances, and handed to the durable path,
which signs it and writes it to a group-committed :class:`~ledger.recordlog.RecordLog`. The
returned :class:`BlockHandle` completes only once the block is durable: report a fill to anyone
only after that. ``append_many`` + ``when_durable`` do the same for a batch, with one
notification instead of a handle per block.

On disk, inside ``directory`` (the venue uses ``<data_dir>/ledger``)::

    blocks/        record log: record number == block height; record == encoding || signature
    checkpoints/   record log: one signed C2SP checkpoint note (UTF-8) per record, sizes rising
    state.bin      the state file (ledger.state_file): a cache that speeds up opening

The stages, each in its own module
----------------------------------
This module is the facade: it owns the lock, the in-memory index of the chain
(:class:`~ledger.recovery.ChainIndex`) and the signing keys, validates and accepts blocks, and
wires the stages together::

    append -> validate + encode + hash (caller's thread, ledger.block)
           -> durable path: sign, write, fsync, complete handles    (ledger.durable,
              in the writer process by default: ledger.writer_process)
           -> checkpointer: signed checkpoints of what is durable    (ledger.checkpointer)
              -> state file every state_every_blocks                 (ledger.state_file)
    open   -> state file, then one pass over the blocks after it     (ledger.recovery)
           -> the newest checkpoint must match the rebuilt tree       (ledger.checkpointer)

Errors are ``ledger.errors``' (every code registered there). ``signer`` chooses where the
durable path runs: ``"process"`` (default; the writer process, a child on the second core) or
``"thread"`` (in this process; fast to open, for tests and small tools). See ``ledger.durable``
for why there is a process and what it costs.

Where the time goes (fills, 2 cores, ``load_tests/bench_ledger.py``)
-------------------------------------------------------------------
The writer process costs one raw Ed25519 signature a block (about 32 us here) plus framing and
its share of the writes (about 35 us in all), so the ledger process must stay below that for
the pair to run near the raw sign rate. Measured CPU per fill block in the ledger process, all
threads: about 23-26 us -- block.py's one-pass ``validate_and_encode`` about 12 us of it; the
rest is the fill deltas (``block.fill_deltas``, the one DvP rule, itself written for this path),
the balance check (``block.check_non_negative``), two SHA-256s and the Merkle append, the
handle, and the forwarder and durable threads (``ledger.durable`` on the handles' cost). A plain
``dict`` payload is not copied (it is encoded before ``append`` returns and not kept).

Opening
-------
Opening rebuilds the index: from the state file and the blocks after it if the state file is
usable, else from every block (``ledger.recovery``: checksums, header, height, hash link, key
id, exact length and deltas, non-negative balances; no payload-schema checks, which
``venue-audit verify`` does on all cores). The newest stored checkpoint must be validly signed
and match the rebuilt tree, which also checks every leaf hash the state file supplied against
the signed root, and the blocks after it must carry valid signatures (docs/LEDGER.md section 9
lists what opening checks and what only verify does); if that fails with the state file,
opening logs why and scans every block, so damage in the blocks is still named by the full
scan. If crash recovery cut blocks a checkpoint covered,
the ledger refuses to open. Blocks the state file covers are checked only by their record
checksums on open; ``venue-audit verify`` checks them all.

A failed write, fsync or signer is fatal: the ledger refuses every later append (reopen it).
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
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
from ledger.checkpoint import parse_checkpoint
from ledger.checkpointer import (
    Checkpointer,
    CheckpointMaterial,
    StoredCheckpoint,
    newest_checkpoint_size,
    verified_newest_checkpoint,
)
from ledger.durable import BlockHandle, DurableCallback, DurablePath
from ledger.errors import (
    LedgerClosedError,
    LedgerCorruptError,
    LedgerError,
    LedgerFailedError,
    LedgerRefusedError,
)
from ledger.hasher import leaf_hash
from ledger.keys import key_id, public_key_bytes, public_key_to_text
from ledger.proof import ProofError
from ledger.receipt import build_receipt
from ledger.recordlog import (
    DEFAULT_SEGMENT_MAX_BYTES,
    RecordLog,
    RecordLogCorruptError,
    RecordLogError,
    RecoveryReport,
    fsync_directory,
)
from ledger.recovery import ChainIndex, rebuild
from ledger.state_file import (
    STATE_FILE_NAME,
    STATE_MAX_RECORDS,
    LedgerState,
    StateFileTail,
    append_state_file,
    read_state_file,
    state_mac_key,
    write_state_file,
)
from ledger.writer_process import WriterProcess

__all__ = [
    "BLOCKS_DIRECTORY",
    "CHECKPOINTS_DIRECTORY",
    "DEFAULT_ORIGIN",
    "STATE_FILE_NAME",
    "BlockHandle",
    "DurableCallback",
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
# After a crash of the venue, its writer process commits what it holds and exits once it sees
# its input end; opening the ledger meanwhile waits up to this long for the block log's lock.
WRITER_EXIT_WAIT_SECONDS = 5.0
WRITER_START_SECONDS = 60.0  # how long opening waits for the writer process to start
# Blocks that bring in a signing key are the ledger's own to write (open, rotate_key).
_WRITTEN_BY_THE_LEDGER = blocks.KEY_KINDS


class Ledger:
    """An open ledger. Create with :meth:`Ledger.open`; thread-safe."""

    def __init__(self) -> None:
        """Private: use :meth:`Ledger.open`."""
        self._lock = threading.RLock()
        self._blocks: RecordLog
        self._checkpoints: RecordLog
        self._durable: DurablePath
        self._checkpointer: Checkpointer
        self.directory = Path()
        self.origin = DEFAULT_ORIGIN
        self.checkpoint_every_blocks = 0
        self.checkpoint_every_ms = 0
        self.state_every_blocks = 0
        # How many blocks opening took from the state file rather than scanning (0: none).
        self.opened_from_state = 0
        self._state_size = 0  # blocks covered by the newest state file this process saved
        # Where the next save appends (None: rewrite the state file whole): ledger.state_file.
        self._state_tail: StateFileTail | None = None
        self._chain = ChainIndex()  # guarded by _lock
        # In height order, parallel to _chain.key_starts: each key's private key (None for keys
        # retired before this process opened the ledger).
        self._key_history: list[Ed25519PrivateKey | None] = []
        self._signing_key: Ed25519PrivateKey
        self._signing_key_id = ""
        self._closed = False

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
        ``"process"`` (the writer process signs, writes and fsyncs: see ``ledger.durable``) or
        ``"thread"``. A checkpoint is issued once ``checkpoint_every_blocks`` blocks are
        durable and uncovered, or ``checkpoint_every_ms`` after the oldest of them.
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
            covered = newest_checkpoint_size(
                ledger._checkpoints, str(ledger.directory / CHECKPOINTS_DIRECTORY)
            )
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
            latest = ledger._recover(signing_key, venue, origin, covered)
            ledger._adopt_signing_key(signing_key)
            writer = None
            if signer == "process":
                writer = WriterProcess(ledger._blocks.detach_writer())
        except BaseException:
            ledger._blocks.close()
            ledger._checkpoints.close()
            raise
        ledger._start_stages(writer, latest)
        try:
            # The child's interpreter takes ~80 ms to start: wait for it here, so that the
            # ledger is ready when open returns (and the first block does not wait for it).
            ledger._durable.wait_started(WRITER_START_SECONDS)
        except BaseException:
            ledger.close()
            raise
        return ledger

    def _recover(
        self, signing_key: Ed25519PrivateKey, venue: str, origin: str | None, covered: int
    ) -> StoredCheckpoint | None:
        """Rebuild the index from the state file and the blocks after it, or else from every
        block; write genesis into a new ledger; return the newest checkpoint, checked.

        The newest checkpoint's root must equal the rebuilt tree's and the state file never
        claims more than that checkpoint covers, so every leaf hash the file supplied is
        checked against the signed root. If that check fails with the state file, the file is
        set aside and the ledger rebuilt from every block, so damage in the blocks is still
        named by the full scan.
        """
        found = read_state_file(self.directory, state_mac_key(signing_key), covered, self._blocks)
        if found is not None:
            state, tail = found
            try:
                self._adopt_chain(rebuild(self._blocks, state))
                self._adopt_origin(origin)
                latest = self._newest_checkpoint()
                self.opened_from_state = state.size
                self._state_tail = tail
                return latest
            except LedgerCorruptError as error:
                logger.warning("ledger state file not used, scanning every block: %s", error)
        self._adopt_chain(rebuild(self._blocks, None))
        if self._chain.tree.size == 0:
            self._write_genesis(signing_key, venue)
        self._adopt_origin(origin)
        return self._newest_checkpoint()

    def _newest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest stored checkpoint, checked (signature, origin, root), and the signatures
        of the blocks after it (``verified_newest_checkpoint``); else corrupt."""
        return verified_newest_checkpoint(self._checkpoints, self._chain, self._blocks, self.origin)

    def _adopt_chain(self, chain: ChainIndex) -> None:
        """Take a rebuilt index; the private keys of the keys it names are not known yet."""
        self._chain = chain
        self._key_history = [None] * len(chain.key_starts)

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
        chain = self._chain
        chain.tree.append(signed.leaf_hash)
        chain.leaf_hashes += signed.leaf_hash
        chain.last_hash = signed.block_hash
        chain.last_timestamp_ns = block.timestamp_ns
        chain.key_starts.append(1)
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
        last_key_block = self._chain.key_starts[-1] - 1
        block = decode_signed_block(self._blocks.read(last_key_block)).block
        introduced = introduced_key(block)
        if introduced is None:  # key_starts only ever follow genesis and rotations
            raise LedgerError(f"block {last_key_block} introduces no key", "ledger.internal")
        return introduced

    def _start_stages(self, writer: WriterProcess | None, latest: StoredCheckpoint | None) -> None:
        """Wire and start the durable path and the checkpointer."""
        self._checkpointer = Checkpointer(
            self._checkpoints,
            self.origin,
            self.checkpoint_every_blocks,
            self.checkpoint_every_ms,
            latest,
            durable_count=lambda: self._blocks.durable_count,
            material=self._checkpoint_material,
            failed=lambda: self._durable.failure is not None,
            fail=lambda error: self._durable.fail(error),
            after_issue=self._after_checkpoint,
        )
        self._durable = DurablePath(
            self._blocks, writer, self._checkpointer.note_durable, str(self.directory)
        )
        self._durable.start()
        self._checkpointer.start()

    # ---- state --------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Height of the newest appended block (durable or not); genesis is 0."""
        return self._chain.tree.size - 1

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
        return self._durable.writer_process_id

    @property
    def signing_key_id(self) -> str:
        """Key id of the key that signs the next block."""
        return self._signing_key_id

    def balance(self, account: str, asset: str) -> int:
        """Balance of ``account`` in ``asset`` after every appended block (0 if never touched)."""
        return self._chain.balances.get((account, asset), 0)

    def balances(self) -> dict[tuple[str, str], int]:
        """A copy of every non-zero-history balance, keyed by (account, asset)."""
        with self._lock:
            return dict(self._chain.balances)

    def find_fill(self, trade_id: str) -> int | None:
        """Height of the fill block for ``trade_id``, or None."""
        return self._chain.trade_heights.get(trade_id)

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
        if kind in _WRITTEN_BY_THE_LEDGER:
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
        self,
        entries: Iterable[tuple[str, Mapping[str, Any], Iterable[Any] | None]],
        hold: bool = False,
    ) -> int:
        """Append ``(kind, payload, deltas)`` blocks in order under one lock hold, as
        :meth:`append` does each, without handing back a handle per block; returns the tree
        size after the last one (pass it to :meth:`when_durable`).

        With ``hold``, the blocks are accepted and signed but not written until
        :meth:`release` lets them through: a caller that must not have a block on disk before
        its own log holds the command behind it (the venue's journal) appends at once, so that
        signing overlaps its own fsync, and releases once that is durable. Blocks still held at
        :meth:`close` are never written and the ledger closes failed (no final checkpoint or
        state file claims them). An append without ``hold`` releases every block before it.

        A refusal raises :class:`LedgerRefusedError` with the blocks before it accepted and the
        rest not: callers append only blocks their own state machine has already checked, so
        for them a refusal is a bug, not an input error.
        """
        with self._lock:
            for kind, payload, deltas in entries:
                if kind in _WRITTEN_BY_THE_LEDGER:
                    raise LedgerRefusedError(
                        f"{kind} blocks are written by the ledger itself", "ledger.bad_kind"
                    )
                if type(payload) is not dict:
                    payload = dict(payload)
                self._append_locked(kind, payload, deltas, hold)
            return self._chain.tree.size

    def release(self, size: int) -> None:
        """Let held blocks ``.. size - 1`` be written (see :meth:`append_many`)."""
        self._durable.release(size)

    def when_durable(self, size: int, callback: DurableCallback) -> None:
        """Call ``callback(None)`` once blocks ``0 .. size - 1`` are durable, or
        ``callback(failure)`` if the ledger fails first: one notification for a whole batch of
        blocks instead of a handle each.

        Successive calls must not decrease ``size`` (callbacks are released in call order). The
        callback runs in the ledger's durability thread, or at once in the caller's if the
        blocks are durable already; it must be quick and must not append.
        """
        self._durable.when_durable(size, callback)

    def _append_locked(
        self,
        kind: str,
        payload: dict[str, Any],
        deltas: Iterable[tuple[str, str, int] | Delta] | None,
        hold: bool = False,
    ) -> BlockHandle:
        if self._durable.failure is not None or self._closed:
            self._check_open()
        chain = self._chain
        balances = chain.balances
        try:
            canonical = self._canonical_deltas(kind, payload, deltas)
            height = chain.tree.size
            timestamp_ns = time.time_ns()
            if timestamp_ns < chain.last_timestamp_ns:  # the wall clock stepped back
                timestamp_ns = chain.last_timestamp_ns
            block = Block(
                height,
                chain.last_hash,
                timestamp_ns,
                kind,
                self._signing_key_id,
                payload,
                canonical,
            )
            # block.py's one-pass validate + encode: schema, conservation, DvP, canonical form.
            encoded = blocks.validate_and_encode(block)
            trade_id = payload["trade_id"] if kind == "fill" else None
            if trade_id is not None and trade_id in chain.trade_heights:
                raise LedgerRefusedError(
                    f"trade {trade_id} is already in block {chain.trade_heights[trade_id]}",
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
            chain.trade_heights[trade_id] = height
            chain.trade_order.append(trade_id)
            chain.trade_order_heights.append(height)
        self._extend_chain(block_hash, timestamp_ns)
        return self._durable.enqueue(height, encoded, block_hash, self._signing_key, hold)

    def _extend_chain(self, block_hash: bytes, timestamp_ns: int) -> None:
        """The accepted block is the chain's newest: its leaf, hash and time (under _lock)."""
        chain = self._chain
        leaf = leaf_hash(block_hash)
        chain.tree.append(leaf)
        chain.leaf_hashes += leaf
        chain.last_hash = block_hash
        chain.last_timestamp_ns = timestamp_ns

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
        if self._durable.failure is not None:
            raise self._durable.failure
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
            chain = self._chain
            height = chain.tree.size
            block = Block(
                height,
                chain.last_hash,
                max(time.time_ns(), chain.last_timestamp_ns),
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
            self._extend_chain(block_hash, block.timestamp_ns)
            handle = self._durable.enqueue(height, encoded, block_hash, self._signing_key)
            chain.key_starts.append(height + 1)
            self._key_history.append(new_key)
            self._signing_key = new_key
            self._signing_key_id = key_id(new_key)
        error = handle.exception()
        if error is not None:
            raise error
        return handle

    def flush(self, timeout: float | None = None) -> None:
        """Block until every block appended so far is durable (or raise the failure).

        Handles complete in height order, so waiting for the newest one is enough.
        """
        with self._lock:
            handle = self._durable.last_handle
        if handle is not None:
            error = handle.exception(timeout)
            if error is not None:
                raise error

    # ---- checkpoints and the state file ---------------------------------------------------

    def checkpoint(self) -> str | None:
        """The newest durable signed checkpoint note (C2SP text), or None before the first."""
        return self._checkpointer.latest

    def issue_checkpoint(self) -> str:
        """Make every appended block durable, then sign and store a checkpoint covering them."""
        self._check_open()
        self.flush()
        note = self._checkpointer.issue()
        if note is None:  # every appended block is durable and the ledger holds genesis
            raise LedgerError("no checkpoint after a flush", "ledger.internal")
        return note

    def _checkpoint_material(self) -> CheckpointMaterial:
        """For the checkpointer: the size, root and signing key of every durable block."""
        with self._lock:
            size = self._blocks.durable_count
            key = self._key_history[bisect_right(self._chain.key_starts, size) - 1]
            return CheckpointMaterial(size, self._chain.tree.root(size), key)

    def _after_checkpoint(self, covered: int) -> None:
        """After the checkpointer issued one: save the state file if it is far enough behind."""
        if covered - self._state_size >= self.state_every_blocks:
            self._save_state()

    def _save_state(self) -> None:
        """Save the state file at the current height, once that is durable and checkpointed.

        Runs in the checkpointer thread (or in ``close``), as a background task that keeps out
        of the appends' way: the lock is held only to note the height, the balances and how
        many trades there are; the trade list and leaf hashes below that are append-only, so
        ``write_state_file`` reads their prefixes piece by piece after, without the lock and
        without copying them whole, pausing between pieces. Appends what changed since the last
        save (``append_state_file``) when it can, so a save costs the blocks since the last one,
        not the whole ledger; rewrites the file whole otherwise (see ``ledger.state_file``). A
        failure is logged, not fatal: the file only speeds up opening.
        """
        with self._lock:
            chain = self._chain
            size = chain.tree.size
            last_hash, last_timestamp_ns = chain.last_hash, chain.last_timestamp_ns
            key_in_force = bytes.fromhex(self._signing_key_id)
            mac_key = state_mac_key(self._signing_key)
            key_starts = list(chain.key_starts)
            balances = dict(chain.balances)
            trade_count = len(chain.trade_order)
        try:
            self._blocks.wait_durable(size)
            if self._checkpointer.covered_size < size:
                self._checkpointer.issue()  # the state may only claim checkpointed blocks
            if self._checkpointer.covered_size < size:
                return  # appends failed in between; nothing consistent to save
            state = LedgerState(
                size=size,
                last_hash=last_hash,
                last_timestamp_ns=last_timestamp_ns,
                key_in_force=key_in_force,
                key_starts=key_starts,
                balances=balances,
                trade_ids=chain.trade_order,  # live and append-only: see state_pieces
                trade_heights=chain.trade_order_heights,
                leaf_hashes=chain.leaf_hashes,
            )
            tail = self._state_tail
            if tail is not None and tail.size == size and tail.mac_key == mac_key:
                pass  # nothing new since the last save
            elif (
                tail is not None
                and tail.mac_key == mac_key
                and tail.size < size
                and tail.records < STATE_MAX_RECORDS
            ):
                self._state_tail = append_state_file(
                    self.directory, tail, state, mac_key, trade_count
                )
            else:
                self._state_tail = write_state_file(self.directory, state, mac_key, trade_count)
        except (OSError, RecordLogError, LedgerError) as error:
            self._state_tail = None  # the file is in doubt: the next save rewrites it whole
            logger.warning("ledger state file not saved: %s", error)
            return
        self._state_size = size

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
            return self._chain.tree.inclusion_proof(height, tree_size)
        except ProofError as error:
            raise LedgerError(str(error), "ledger.bad_height") from error

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """Proof that the tree of ``old_size`` blocks is a prefix of the one of ``new_size``."""
        self._check_tree_size(new_size)
        try:
            return self._chain.tree.consistency_proof(old_size, new_size)
        except ProofError as error:
            raise LedgerError(str(error), "ledger.bad_tree_size") from error

    def root(self, tree_size: int) -> bytes:
        """RFC 6962 root hash of the first ``tree_size`` durable blocks."""
        self._check_tree_size(tree_size)
        return self._chain.tree.root(tree_size)

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
        note = self._checkpointer.latest
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
        self._checkpointer.stop()
        self._durable.close()
        self._blocks.close()
        self._checkpointer.join()
        if self._durable.failure is None:
            try:
                self._checkpointer.issue()
            except (RecordLogError, LedgerError) as error:
                logger.error("final checkpoint failed: %s", error)
            else:
                self._save_state()
        self._checkpoints.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
