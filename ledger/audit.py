"""``venue-audit``: the settlement clerk's tool to verify and read the venue's ledger.

Reads ``<data_dir>/ledger`` (``blocks/`` and ``checkpoints/`` record logs, see docs/LEDGER.md)
strictly and read-only, without the ``Ledger`` facade: it must be able to *report* damage (the
first bad height and what was wrong) rather than refuse to open. Data goes to stdout,
diagnostics to stderr. Exit status: 0 verified / done, 1 verification failed (or the thing asked
for is not there), 2 usage error (argparse errors, a missing data directory).

Subcommands: ``verify``, ``show``, ``balances``, ``receipt``, ``verify-receipt``,
``consistency``, ``export``, ``report``; ``--data-dir`` (default ``./data``) and ``--json``
everywhere.

Library API (for the benchmark and tests):

- ``verify_ledger(data_dir, *, workers=None, executor="process", pinned_key=None,
  progress=None, chunk_records=1024) -> VerifyResult``: every check of docs/LEDGER.md section
  10. Block decoding, validation and Ed25519 signature checks run in ``workers`` processes
  (default: all cores); ``workers=1`` checks inline; ``executor="thread"`` uses threads.
- ``read_blocks(data_dir) -> Iterator[SignedBlock]``; ``compute_balances(data_dir, at=None)``.

How verify spends its time. Ed25519 verification is the floor (~105 us per block on the
reference 2-core box); everything else is overhead against it. The main process reads records
through the strict scanner and cuts them into chunks of consecutive records (ending at every
checkpoint size). A worker checks a whole chunk (``_check_chunk``): fills through
``block.check_fill_record`` (decode + rules in one pass, ~5 us), other kinds through the
reference decoder; heights, links, keys in force, signatures, trade ids within the chunk, the
Merkle subtrees of its leaves and a per-account balance summary (net and lowest running change).
It sends back one small ``_ChunkReport``. The main process applies a clean report in one step
(``_Verifier.apply_chunk``: the links and keys at the chunk edges, trade ids seen before, no
balance below zero, checkpoint roots) and replays any chunk with a problem block by block through
the reference path (``_check_records`` + ``_Verifier.block``), so the first bad height and its
message are those of the plain sequential check. Measured on 8,192 fills, one process: 9.9 us
of non-signature CPU per block in the worker task (it was 30.8 us when workers decoded every
block with the reference decoder and sent back per-block tuples); in a 2-worker run the main
process adds ~4 us per block, 2.3 us of it the scanner's.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import sys
import threading
import time
import warnings
from bisect import bisect_right
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.block import (
    KEY_KIND_CODES,
    KIND_OFFSET,
    BlockError,
    SignedBlock,
    check_block_rules,
    check_fill_record,
    check_key_rotation,
    check_non_negative,
    decode_signed_block,
    introduced_key,
)
from ledger.checkpoint import Checkpoint, CheckpointError, parse_checkpoint, verify_checkpoint
from ledger.errors import LedgerError
from ledger.hasher import EMPTY_ROOT, LEAF_PREFIX, leaf_hash, node_hash
from ledger.keys import KeyFileError, key_id, load_public_key, public_key_from_text, raw_key_id
from ledger.ledger import BLOCKS_DIRECTORY, CHECKPOINTS_DIRECTORY
from ledger.proof import MerkleTree, ProofError, verify_consistency
from ledger.receipt import ReceiptError, build_receipt, receipt_to_json, verify_receipt
from ledger.recordlog import LogScanner

CHUNK_RECORDS = 1024  # records per task sent to a worker: big enough to amortise pickling
YIELD_EVERY = 32  # thread mode: the main thread releases the GIL this often (in records)


class AuditUsageError(Exception):
    """The command line or the data directory is unusable (exit status 2)."""


class AuditFailure(Exception):
    """What was asked for is missing or does not check out (exit status 1)."""


# --------------------------------------------------------------------------- locating data


def ledger_directory(data_dir: str | os.PathLike[str]) -> Path:
    """The ledger directory of a venue data directory.

    ``data_dir/ledger`` normally; ``data_dir`` itself if it already is a ledger directory
    (holds ``blocks/``), so a benchmark can point at a bare ledger.
    """
    base = Path(data_dir)
    if not base.is_dir():
        raise AuditUsageError(f"data directory {base} does not exist")
    if (base / BLOCKS_DIRECTORY).is_dir():
        return base
    if (base / "ledger" / BLOCKS_DIRECTORY).is_dir():
        return base / "ledger"
    raise AuditUsageError(f"no ledger in {base} (expected {base / 'ledger' / BLOCKS_DIRECTORY})")


class IncompleteTailWarning(UserWarning):
    """The last record is incomplete: a write in progress, or a crash not yet recovered."""


def read_checkpoint_notes(directory: Path) -> tuple[list[str], str | None]:
    """Every stored checkpoint note in order, and a description of a storage problem if any.

    An incomplete last checkpoint record (a torn tail) is skipped with an
    ``IncompleteTailWarning``: it was never durable, so it was never published.
    """
    notes: list[str] = []
    scanner = LogScanner(directory / CHECKPOINTS_DIRECTORY)
    if not (directory / CHECKPOINTS_DIRECTORY).is_dir():
        return notes, None
    for record in scanner:
        notes.append(record.payload.decode("utf-8", errors="replace"))
    problem = scanner.problem
    if problem is not None and problem.is_torn_tail:
        warnings.warn(
            f"ignored an incomplete checkpoint at the end: {problem.describe()}",
            IncompleteTailWarning,
            stacklevel=2,
        )
    elif problem is not None:
        return notes, f"checkpoint store: {problem.describe()}"
    return notes, None


def read_blocks(data_dir: str | os.PathLike[str]) -> Iterator[SignedBlock]:
    """Every block in height order, strictly decoded; ``AuditFailure`` at the first problem.

    An incomplete last record (torn tail) ends the iteration with an ``IncompleteTailWarning``
    instead: the ledger itself truncates it on open. No signature checks: use
    ``verify_ledger`` for those.
    """
    scanner = LogScanner(ledger_directory(data_dir) / BLOCKS_DIRECTORY)
    for record in scanner:
        try:
            signed = decode_signed_block(record.payload)
        except BlockError as error:
            raise AuditFailure(f"height {record.record_number}: {error}") from error
        if signed.block.height != record.record_number:
            raise AuditFailure(
                f"height {record.record_number}: record holds block {signed.block.height}"
            )
        yield signed
    problem = scanner.problem
    if problem is not None and problem.is_torn_tail:
        warnings.warn(
            f"ignored an incomplete record at the end: {problem.describe()}",
            IncompleteTailWarning,
            stacklevel=2,
        )
    elif problem is not None:
        raise AuditFailure(f"height {problem.record_number}: {problem.describe()}")


# --------------------------------------------------------------------------- verification


@dataclass(slots=True)
class VerifyResult:
    """Outcome of ``verify_ledger``. ``ok`` is False exactly when ``problem`` is set."""

    ok: bool
    blocks: int
    checkpoints: int
    tree_size: int
    root_hash: str
    genesis_key_id: str | None
    current_key_id: str | None
    first_bad_height: int | None = None
    problem_code: str | None = None
    problem: str | None = None
    seconds: float = 0.0
    workers: int = 1
    executor: str = "inline"
    warnings: list[str] = field(default_factory=list)
    balances: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (balances left out)."""
        data = asdict(self)
        del data["balances"]
        return data


class _Stop(Exception):
    """Internal: the first problem, with its height."""

    def __init__(self, height: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.height = height
        self.code = code
        self.message = message


def _check_records(task: tuple[list[bytes], dict[str, bytes]]) -> list[tuple[Any, ...]]:
    """The reference per-block check of a run of records, for ``_Verifier.block``.

    ``task`` is (records, {key id: raw public key} of every key the chain introduced up to the
    end of the run). Returns one tuple per record: either ``("error", code, message)`` or
    ``("ok", height, prev_hash, block_hash, kind, key_id, deltas, introduced_key, trade_id,
    signature_ok, genesis_origin)``. The signature is checked against the key the block
    *names*; whether that key is the one in force is decided by the sequential pass.

    Only replays use it (``_Verifier.replay``): a chunk in which the fast pass found anything
    wrong is re-checked block by block, so the first bad height and its message come from
    this plain, obviously-ordered code.
    """
    records, raw_keys = task
    keys = {kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in raw_keys.items()}
    results: list[tuple[Any, ...]] = []
    for record in records:
        try:
            signed = decode_signed_block(record)
            block = signed.block
            check_block_rules(block)
            introduced = introduced_key(block)
        except BlockError as error:
            results.append(("error", error.code, error.message))
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
            (
                "ok",
                block.height,
                block.prev_hash,
                signed.block_hash,
                block.kind,
                block.key_id,
                block.deltas,
                introduced,
                payload["trade_id"] if block.kind == "fill" else None,
                signature_ok,
                payload["origin"] if block.kind == "genesis" else None,
            )
        )
    return results


class _ChunkReport(NamedTuple):
    """A worker's summary of one chunk of consecutive records, checked as a whole.

    ``clean`` is False if any record broke a rule the worker can see (then the rest is not
    meaningful and the chunk is replayed). Otherwise every record decoded strictly, passed its
    kind's rules, sits at its height, links to the one before, names the key in force (starting
    from ``start_key``, following rotations) and carries a valid signature; and the trade ids
    are distinct. What needs the state before the chunk is left to ``_Verifier.apply_chunk``:
    the first link, the start key, trade ids seen earlier and the balances, given here per
    (account, asset) as ``[net change, lowest running change]``. ``subtrees`` are the Merkle
    subtrees (level, root) that cover the chunk's leaves, left to right.
    """

    clean: bool
    start: int
    count: int
    start_key: bytes | None
    end_key: bytes | None
    first_prev_hash: bytes
    last_hash: bytes
    genesis: tuple[bytes, str] | None  # (public key, origin) if the chunk starts the chain
    trade_ids: list[str]
    balance_changes: dict[tuple[str, str], list[int]]
    subtrees: list[tuple[int, bytes]]


def _unclean(start: int) -> _ChunkReport:
    return _ChunkReport(False, start, 0, None, None, b"", b"", None, [], {}, [])


def _check_chunk(task: tuple[int, list[bytes], bytes | None]) -> _ChunkReport:
    """Check a chunk of consecutive block records on its own (runs in a worker).

    ``task`` is (height of the first record, the records, the raw public key in force before
    the first one, or None at height 0). Fill records take ``check_fill_record``; other kinds
    and anything it declines take the reference decode + rules. Per block the only Python
    work left besides that is a few comparisons, one signature check, a leaf hash and the
    balance summary; the result is one small object per chunk, so inter-process traffic is
    the records going out and almost nothing coming back. Worker processes by default: in
    threads, this Python part holds the GIL while the signature checks of other threads wait.
    """
    start, records, start_key = task
    key_raw = start_key
    key = Ed25519PublicKey.from_public_bytes(key_raw) if key_raw is not None else None
    key_id_raw = raw_key_id(key_raw) if key_raw is not None else None
    trade_ids: list[str] = []
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
            genesis = (key_raw, payload["origin"])
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
    return _ChunkReport(
        True,
        start,
        len(records),
        start_key,
        key_raw,
        first_prev_hash,
        previous_hash,
        genesis,
        trade_ids,
        changes,
        _aligned_subtrees(start, leaves),
    )


def _aligned_subtrees(start: int, leaves: list[bytes]) -> list[tuple[int, bytes]]:
    """Cover leaves ``[start, start + len(leaves))`` with the fewest aligned complete subtrees.

    Returns (level, root) left to right; a subtree of level ``k`` holds ``2**k`` leaves and
    starts at a multiple of ``2**k``, so ``_MerkleAccumulator.append_subtree`` can take them.
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
        subtrees.append((size.bit_length() - 1, level_nodes[0]))
        position += size
    return subtrees


class _MerkleAccumulator:
    """``proof.CompactRange`` that can also append a whole aligned complete subtree at once.

    Holds (level, root) of the complete subtrees given by the binary digits of ``size``, largest
    first. Appending a subtree of level ``k`` requires ``size`` to be a multiple of ``2**k``
    (then every held subtree is at least as large) and merges equal neighbours, exactly as
    appending its ``2**k`` leaves one by one would. Tested against ``proof.merkle_root``.
    """

    __slots__ = ("_nodes", "size")

    def __init__(self) -> None:
        self._nodes: list[tuple[int, bytes]] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash."""
        self.append_subtree(0, leaf)

    def append_subtree(self, level: int, root: bytes) -> None:
        """Append the complete subtree of ``2**level`` leaves with root hash ``root``."""
        if self.size % (1 << level):
            raise ValueError(f"a level-{level} subtree cannot start at leaf {self.size}")
        self.size += 1 << level
        nodes = self._nodes
        while nodes and nodes[-1][0] == level:
            root = node_hash(nodes.pop()[1], root)
            level += 1
        nodes.append((level, root))

    def root(self) -> bytes:
        """Root hash of all leaves so far (``EMPTY_ROOT`` when empty)."""
        if not self._nodes:
            return EMPTY_ROOT
        root = self._nodes[-1][1]
        for _, left in reversed(self._nodes[:-1]):
            root = node_hash(left, root)
        return root


class _Verifier:
    """The sequential part of verification: chain, keys, balances, tree, checkpoints."""

    def __init__(self, notes: list[str], pinned_key: bytes | None) -> None:
        self.pinned_key = pinned_key
        self.count = 0
        self.previous_hash: bytes | None = None
        self.current_key: bytes | None = None
        self.current_key_id = ""
        self.genesis_key: bytes | None = None
        self.origin: str | None = None
        self.balances: dict[tuple[str, str], int] = {}
        self.trade_ids: set[str] = set()
        self.tree = _MerkleAccumulator()
        self.notes = notes
        self.parsed: list[tuple[int, str, int]] = []  # (size, note, checkpoint number)
        for number, note in enumerate(notes):
            try:
                checkpoint, _ = parse_checkpoint(note)
            except CheckpointError as error:
                raise _Stop(None, "audit.bad_checkpoint", f"checkpoint {number}: {error}") from None
            self.parsed.append((checkpoint.size, note, number))
        self.parsed.sort(key=lambda entry: (entry[0], entry[2]))
        self.next_checkpoint = 0

    def checkpoint_sizes(self) -> list[int]:
        """Where chunks must end: each stored checkpoint's size, ascending, without repeats.

        A checkpoint of size 0 (always wrong: the tree starts with genesis) is checked after
        block 0, as when blocks are checked one by one, so it counts as 1 here.
        """
        return sorted({max(size, 1) for size, _, _ in self.parsed})

    def apply_chunk(
        self, report: _ChunkReport, records: list[bytes], keys: dict[str, bytes]
    ) -> None:
        """Apply a worker's chunk summary, or replay the chunk if anything does not fit.

        A clean report that continues the chain (start height, link, key in force), settles no
        trade id twice and leaves no non-``external:`` balance negative is applied in one step:
        balances by their net change, the Merkle subtrees, then the checkpoints the chunk
        completes (chunks end at checkpoint sizes). Anything else is replayed block by block
        through the reference path, which raises ``_Stop`` at the first bad height.
        """
        if not self._fits(report):
            self.replay(records, keys)
            return
        balances = self.balances
        for balance_key, (net, _) in report.balance_changes.items():
            balances[balance_key] = balances.get(balance_key, 0) + net
        self.trade_ids.update(report.trade_ids)
        if report.genesis is not None:
            self.genesis_key, self.origin = report.genesis
        if report.end_key != self.current_key:
            if report.end_key is None:  # a clean chunk always ends under a key
                raise LedgerError("a clean chunk ends with no key in force", "ledger.internal")
            self.current_key = report.end_key
            self.current_key_id = key_id(report.end_key)
        self.previous_hash = report.last_hash
        for level, root in report.subtrees:
            self.tree.append_subtree(level, root)
        self.count += report.count
        self._check_checkpoints_at(self.count)

    def _fits(self, report: _ChunkReport) -> bool:
        """Whether a chunk summary can be applied as a whole (see ``apply_chunk``)."""
        if not (
            report.clean
            and report.start == self.count
            and report.start_key == self.current_key
            and (report.start == 0 or report.first_prev_hash == self.previous_hash)
            and self.trade_ids.isdisjoint(report.trade_ids)
        ):
            return False
        if report.genesis is not None and self.pinned_key not in (None, report.genesis[0]):
            return False
        # The lowest each balance reaches inside the chunk must pass the no-negative rule.
        try:
            check_non_negative(
                self.balances,
                (
                    (account, asset, lowest)
                    for (account, asset), (_, lowest) in report.balance_changes.items()
                ),
            )
        except BlockError:
            return False
        return True

    def replay(self, records: list[bytes], keys: dict[str, bytes]) -> None:
        """Check records one by one with the reference path (``_check_records``)."""
        for entry in _check_records((records, keys)):
            self.block(entry)

    def block(self, result: tuple[Any, ...]) -> None:
        height = self.count
        if result[0] == "error":
            raise _Stop(height, result[1], result[2])
        (_, block_height, prev_hash, block_hash, kind, kid, deltas, introduced, trade_id, sig_ok,
         origin) = result  # fmt: skip
        if block_height != height:
            raise _Stop(height, "block.bad_height", f"record {height} holds block {block_height}")
        if height == 0:
            if kind != "genesis":
                raise _Stop(0, "block.bad_kind", "the first block is not genesis")
            self.genesis_key = introduced
            self.origin = origin
            if self.pinned_key is not None and self.genesis_key != self.pinned_key:
                raise _Stop(0, "audit.untrusted_key", "genesis key is not the pinned public key")
            self.current_key = self.genesis_key
            self.current_key_id = key_id(self.genesis_key)
        else:
            if kind == "genesis":
                raise _Stop(height, "block.bad_kind", "a second genesis block")
            if prev_hash != self.previous_hash:
                raise _Stop(height, "block.bad_link", "prev_hash is not the previous block's hash")
        if kid != self.current_key_id:
            raise _Stop(
                height,
                "block.wrong_key",
                f"signed by key {kid}, key in force is {self.current_key_id}",
            )
        if not sig_ok:
            raise _Stop(height, "block.bad_signature", "Ed25519 signature does not verify")
        balances = self.balances
        try:
            check_non_negative(balances, deltas)
        except BlockError as error:
            raise _Stop(height, error.code, error.message) from None
        for account, asset, amount in deltas:
            balances[account, asset] = balances.get((account, asset), 0) + amount
        if trade_id is not None:
            if trade_id in self.trade_ids:
                raise _Stop(height, "audit.duplicate_trade", f"trade {trade_id} settled twice")
            self.trade_ids.add(trade_id)
        if kind == "key_rotation":
            new_key = introduced
            try:
                check_key_rotation(new_key, self.current_key)
            except BlockError as error:
                raise _Stop(height, error.code, error.message) from None
            self.current_key = new_key
            self.current_key_id = key_id(new_key)
        self.previous_hash = block_hash
        self.tree.append(leaf_hash(block_hash))
        self.count += 1
        self._check_checkpoints_at(self.count)

    def _check_checkpoints_at(self, size: int) -> None:
        while (
            self.next_checkpoint < len(self.parsed) and self.parsed[self.next_checkpoint][0] <= size
        ):
            checkpoint_size, note, number = self.parsed[self.next_checkpoint]
            self.next_checkpoint += 1
            height = max(checkpoint_size - 1, 0)
            if self.current_key is None:  # checkpoints are checked after genesis, never before
                raise LedgerError("checkpoint check before any key", "ledger.internal")
            try:
                key = Ed25519PublicKey.from_public_bytes(self.current_key)
                checkpoint = verify_checkpoint(note, key, origin=self.origin)
            except CheckpointError as error:
                raise _Stop(
                    height,
                    "audit.bad_checkpoint",
                    f"checkpoint {number} (size {checkpoint_size}): {error}",
                ) from None
            if checkpoint.root_hash != self.tree.root() or checkpoint_size != size:
                raise _Stop(
                    height,
                    "audit.checkpoint_mismatch",
                    f"checkpoint {number} (size {checkpoint_size}) root does not match the blocks",
                )

    def finish(self) -> None:
        if self.count == 0:
            raise _Stop(0, "audit.empty", "the ledger holds no blocks")
        if self.next_checkpoint < len(self.parsed):
            size, _, number = self.parsed[self.next_checkpoint]
            raise _Stop(
                self.count,
                "audit.missing_blocks",
                f"checkpoint {number} covers {size} blocks but only {self.count} exist",
            )


def _key_table_update(record: bytes, table: dict[str, bytes]) -> bytes | None:
    """Add the key a genesis or key-rotation record introduces to ``table`` and return it.

    Best effort, in the reading loop, on the rare key blocks only (spotted by the kind byte): a
    damaged record is skipped here (None) and reported by the check that decodes it.
    """
    try:
        raw = introduced_key(decode_signed_block(record).block)
    except BlockError:
        return None
    if raw is None:
        return None
    table[key_id(raw)] = raw
    return raw


def verify_ledger(
    data_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    executor: str = "process",
    pinned_key: Ed25519PublicKey | bytes | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_records: int = CHUNK_RECORDS,
) -> VerifyResult:
    """Verify the whole ledger of ``data_dir`` and report the first problem, never raising one.

    ``workers`` defaults to ``os.cpu_count()``; 1 means inline; ``executor`` is ``"process"``
    or ``"thread"``. ``pinned_key`` (the venue's
    public key from an independent source) must equal the genesis key; without it the genesis
    key is trusted and reported. ``progress`` is called with the number of blocks checked.
    ``chunk_records`` is the most records a worker checks as one task. Raises only
    ``AuditUsageError`` (no ledger there).
    """
    if executor not in ("thread", "process"):
        raise ValueError(f"executor must be 'thread' or 'process', not {executor!r}")
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be at least 1, not {chunk_records}")
    directory = ledger_directory(data_dir)
    started = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    pinned_raw = None
    if pinned_key is not None:
        pinned_raw = pinned_key if isinstance(pinned_key, bytes) else pinned_key.public_bytes_raw()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteTailWarning)
        notes, checkpoint_problem = read_checkpoint_notes(directory)
    mode = "inline" if workers == 1 else executor
    result = VerifyResult(False, 0, len(notes), 0, "", None, None, workers=workers, executor=mode)
    result.warnings.extend(str(warning.message) for warning in caught)
    verifier: _Verifier | None = None
    try:
        verifier = _Verifier(notes, pinned_raw)
        if checkpoint_problem is not None:
            raise _Stop(None, "audit.bad_checkpoint", checkpoint_problem)
        scanner = LogScanner(directory / BLOCKS_DIRECTORY)
        _run_pipeline(scanner, verifier, workers, mode, progress, chunk_records)
        problem = scanner.problem
        if problem is not None and not problem.is_torn_tail:
            raise _Stop(problem.record_number, "audit.bad_record", problem.describe())
        if problem is not None:
            # An incomplete last record: a write in progress or a crash (the ledger truncates it
            # on open). Nothing durable is lost unless a checkpoint covered it, which finish()
            # reports as a failure; so this alone is a warning.
            result.warnings.append(f"ignored an incomplete record at the end: {problem.describe()}")
        verifier.finish()
        result.ok = True
    except _Stop as stop:
        result.first_bad_height = stop.height
        result.problem_code = stop.code
        result.problem = stop.message
    if verifier is not None:
        result.blocks = verifier.count
        result.tree_size = verifier.tree.size
        result.root_hash = verifier.tree.root().hex()
        result.genesis_key_id = key_id(verifier.genesis_key) if verifier.genesis_key else None
        result.current_key_id = key_id(verifier.current_key) if verifier.current_key else None
        result.balances = verifier.balances
    result.seconds = time.perf_counter() - started
    return result


def _run_pipeline(
    scanner: LogScanner,
    verifier: _Verifier,
    workers: int,
    mode: str,
    progress: Callable[[int], None] | None,
    chunk_records: int,
) -> None:
    """Feed record chunks to workers in order and apply their summaries sequentially.

    Chunks hold up to ``chunk_records`` records and also end at every stored checkpoint's size,
    so each checkpoint is checked against the tree exactly when it is complete. The reading
    loop notes the key each chunk starts under from the rare genesis and key-rotation records
    (spotted by their kind byte), so workers can check signatures without waiting for earlier
    chunks; ``_Verifier.apply_chunk`` confirms that key against the verified chain. At most
    ``2 * workers + 1`` chunks are in flight, so memory stays bounded for any size. Stops at
    the first problem (``_Stop``), cancelling what is still queued.
    """
    key_table: dict[str, bytes] = {}
    yield_gil = mode == "thread"
    boundaries = verifier.checkpoint_sizes()

    def chunk_size(start: int) -> int:
        """Records in the chunk starting at height ``start``: up to the next checkpoint size."""
        following = bisect_right(boundaries, start)
        if following == len(boundaries):
            return chunk_records
        return min(chunk_records, boundaries[following] - start)

    def chunks() -> Iterator[tuple[tuple[int, list[bytes], bytes | None], dict[str, bytes]]]:
        start, start_key, key_in_force = 0, None, None
        limit = chunk_size(0)
        chunk: list[bytes] = []
        for record in scanner:
            payload = record.payload
            if len(payload) > KIND_OFFSET and payload[KIND_OFFSET] in KEY_KIND_CODES:
                key_in_force = _key_table_update(payload, key_table) or key_in_force
            chunk.append(payload)
            if yield_gil and len(chunk) % YIELD_EVERY == 0:
                time.sleep(0)  # let worker threads back in (they wait on the GIL otherwise)
            if len(chunk) == limit:
                yield (start, chunk, start_key), dict(key_table)
                start += limit
                start_key, chunk, limit = key_in_force, [], chunk_size(start)
        if chunk:
            yield (start, chunk, start_key), dict(key_table)

    def apply(
        report: _ChunkReport, task: tuple[int, list[bytes], bytes | None], keys: dict[str, bytes]
    ) -> None:
        verifier.apply_chunk(report, task[1], keys)
        if progress is not None:
            progress(verifier.count)

    if mode == "inline":
        for task, keys in chunks():
            apply(_check_chunk(task), task, keys)
        return
    pool: Executor
    if mode == "process":
        # fork is fastest to start, but forking a process that runs other threads can copy a
        # held lock; then start workers from a clean fork server instead.
        method = "fork" if threading.active_count() == 1 else "forkserver"
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(method)
        )
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
    pending: deque[
        tuple[Future[_ChunkReport], tuple[int, list[bytes], bytes | None], dict[str, bytes]]
    ] = deque()
    try:
        for task, keys in chunks():
            pending.append((pool.submit(_check_chunk, task), task, keys))
            while len(pending) > 2 * workers:
                future, done_task, done_keys = pending.popleft()
                apply(future.result(), done_task, done_keys)
        while pending:
            future, done_task, done_keys = pending.popleft()
            apply(future.result(), done_task, done_keys)
    finally:
        for future, _, _ in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- other reads


def compute_balances(
    data_dir: str | os.PathLike[str], at: int | None = None
) -> dict[tuple[str, str], int]:
    """Balances after applying blocks ``0..at`` inclusive (all blocks when ``at`` is None)."""
    balances: dict[tuple[str, str], int] = defaultdict(int)
    last_height = -1
    for signed in read_blocks(data_dir):
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


def _trusted_keys(data_dir: str | os.PathLike[str]) -> list[Ed25519PublicKey]:
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
    covering = []
    for note in notes:
        checkpoint, _ = parse_checkpoint(note)
        if height < checkpoint.size <= tree.size:
            covering.append((checkpoint.size, note, checkpoint.root_hash))
    if not covering:
        raise AuditFailure(f"no stored checkpoint covers height {height} yet")
    size, note, root = max(covering, key=lambda entry: entry[0])
    if tree.root(size) != root:
        raise AuditFailure(f"the checkpoint of size {size} does not match the blocks")
    return build_receipt(record, height, size, tree.inclusion_proof(height, size), note)


def segment_pair(buyer_segment: str, seller_segment: str) -> str:
    """Order-free segment pair name: interbank-interbank, interbank-exchange, exchange-exchange."""
    if buyer_segment == seller_segment:
        return f"{buyer_segment}-{seller_segment}"
    return "interbank-exchange"


def volume_report(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Fill count, quantity and settlement amount by instrument and by segment pair."""
    by_instrument: dict[str, dict[str, int]] = {}
    by_pair: dict[str, dict[str, int]] = {
        pair: {"count": 0, "qty": 0, "settlement_amount": 0}
        for pair in ("interbank-interbank", "interbank-exchange", "exchange-exchange")
    }
    totals = {"count": 0, "qty": 0, "settlement_amount": 0}
    for signed in read_blocks(data_dir):
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


# --------------------------------------------------------------------------- command line


def _format_amount(asset: str, amount: int) -> str:
    """Cash in yuan with 2 decimals (fen inside); units as plain integers."""
    if asset != "CNY":
        return str(amount)
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def _format_time(timestamp_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, from integer nanoseconds (no float rounding)."""
    seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanoseconds:09d}Z"


def _emit_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, sort_keys=True) + "\n")


class _Progress:
    """A one-line progress display on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.perf_counter()
        self.last = 0.0

    def __call__(self, count: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last = now
        rate = count / max(now - self.started, 1e-9)
        self.stream.write(f"\rverifying: {count:,} blocks ({rate:,.0f}/s)")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _load_key_argument(text: str) -> Ed25519PublicKey:
    """``--pubkey``: a file holding a public key, or the key text itself."""
    path = Path(text)
    try:
        if path.is_file():
            return load_public_key(path)
        return public_key_from_text(text)
    except KeyFileError as error:
        raise AuditUsageError(f"--pubkey: {error}") from error


def _command_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    pinned = _load_key_argument(args.pubkey) if args.pubkey else None
    progress = _Progress(err)
    result = verify_ledger(
        args.data_dir,
        workers=args.workers,
        executor=args.executor,
        pinned_key=pinned,
        progress=progress,
    )
    progress.done()
    for warning in result.warnings:
        err.write(f"venue-audit: warning: {warning}\n")
    if args.json:
        _emit_json(out, result.to_json())
    elif result.ok:
        out.write(
            f"verified {result.blocks} blocks and {result.checkpoints} checkpoints "
            f"(root {result.root_hash}, genesis key {result.genesis_key_id}, "
            f"current key {result.current_key_id}) in {result.seconds:.2f} s\n"
        )
    if not result.ok:
        where = "" if result.first_bad_height is None else f"height {result.first_bad_height}: "
        err.write(f"venue-audit: verification failed at {where}{result.problem_code}: ")
        err.write(f"{result.problem}\n")
        return 1
    return 0


def _command_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.height is not None and (args.from_height is not None or args.to_height is not None):
        raise AuditUsageError("give HEIGHT or --from/--to, not both")
    low = args.height if args.height is not None else (args.from_height or 0)
    high = args.height if args.height is not None else args.to_height
    shown = 0
    for signed in read_blocks(args.data_dir):
        if signed.height < low:
            continue
        if high is not None and signed.height > high:
            break
        shown += 1
        view = block_to_json(signed)
        if args.json:
            _emit_json(out, view)
            continue
        out.write(
            f"#{view['height']} {view['kind']} {_format_time(view['timestamp_ns'])} "
            f"key={view['key_id']} "
            f"hash={view['block_hash'][:16]}\n"
            f"  payload {json.dumps(view['payload'], sort_keys=True)}\n"
        )
        for account, asset, amount in signed.block.deltas:
            out.write(f"  {account:<24} {asset:<20} {amount:+d}\n")
    if shown == 0:
        raise AuditFailure("no block in the requested range")
    return 0


def _command_balances(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    balances = compute_balances(args.data_dir, args.at)
    rows = sorted(
        (account, asset, amount)
        for (account, asset), amount in balances.items()
        if args.account is None or account == args.account
    )
    if args.json:
        _emit_json(out, [{"account": a, "asset": s, "balance": amount} for a, s, amount in rows])
        return 0
    for account, asset, amount in rows:
        out.write(f"{account:<24} {asset:<20} {_format_amount(asset, amount):>20}\n")
    return 0


def _command_receipt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    receipt = make_receipt(args.data_dir, args.trade_id)
    out.write(receipt_to_json(receipt) if not args.json else json.dumps(receipt) + "\n")
    return 0


def _command_verify_receipt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    keys = [_load_key_argument(text) for text in args.pubkey]
    try:
        text = Path(args.file).read_text()
    except OSError as error:
        raise AuditUsageError(f"cannot read {args.file}: {error}") from error
    try:
        verified = verify_receipt(text, keys)
    except ReceiptError as error:
        if args.json:
            _emit_json(out, {"ok": False, "code": error.code, "problem": error.message})
        err.write(f"venue-audit: receipt does not verify: {error}\n")
        return 1
    summary = {
        "ok": True,
        "height": verified.height,
        "trade_id": verified.trade_id,
        "block_hash": verified.block_hash.hex(),
        "origin": verified.origin,
        "tree_size": verified.tree_size,
        "root_hash": verified.root_hash.hex(),
        "fill": verified.fill,
    }
    if args.json:
        _emit_json(out, summary)
    else:
        out.write(
            f"receipt verified: trade {verified.trade_id} is block {verified.height} of "
            f"{verified.origin} at size {verified.tree_size}\n"
        )
    return 0


def _command_consistency(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        old_note = Path(args.old_checkpoint).read_text()
    except OSError as error:
        raise AuditUsageError(f"cannot read {args.old_checkpoint}: {error}") from error
    directory = ledger_directory(args.data_dir)
    notes, problem = read_checkpoint_notes(directory)
    if problem is not None:
        raise AuditFailure(problem)
    if not notes:
        raise AuditFailure("the ledger has no stored checkpoint yet")
    keys = _trusted_keys(args.data_dir)
    old = _verify_with_any(old_note, keys, "old checkpoint")
    new = _verify_with_any(notes[-1], keys, "newest checkpoint")
    tree = MerkleTree.from_leaf_hashes(signed.leaf_hash for signed in read_blocks(args.data_dir))
    if new.size > tree.size or tree.root(new.size) != new.root_hash:
        raise AuditFailure("the newest stored checkpoint does not match the blocks")
    if old.size > new.size or old.origin != new.origin:
        raise AuditFailure(f"old checkpoint (size {old.size}) is not an earlier state of this log")
    proof = tree.consistency_proof(old.size, new.size) if 0 < old.size < new.size else []
    try:
        if old.size == 0:
            if old.root_hash != MerkleTree().root():
                raise ProofError("an empty tree has the empty root")
        else:
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    except ProofError as error:
        if args.json:
            _emit_json(out, {"consistent": False, "problem": str(error)})
        err.write(f"venue-audit: NOT consistent: {error}\n")
        return 1
    result = {
        "consistent": True,
        "old_size": old.size,
        "new_size": new.size,
        "old_root": old.root_hash.hex(),
        "new_root": new.root_hash.hex(),
        "proof": [node.hex() for node in proof],
        "new_checkpoint": notes[-1],
    }
    if args.json:
        _emit_json(out, result)
    else:
        out.write(
            f"consistent: the log at size {old.size} is a prefix of the log at size {new.size} "
            f"({len(proof)} proof hashes)\n"
        )
    return 0


def _verify_with_any(note: str, keys: Sequence[Ed25519PublicKey], what: str) -> Checkpoint:
    last_error: CheckpointError | None = None
    for key in keys:
        try:
            return verify_checkpoint(note, key)
        except CheckpointError as error:
            last_error = error
    raise AuditFailure(f"{what} is not signed by any venue key: {last_error}")


def _command_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.format == "jsonl":
        for signed in read_blocks(args.data_dir):
            _emit_json(out, block_to_json(signed))
        return 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["height", "timestamp_ns", "kind", "key_id", "block_hash", "payload", "deltas"])
    for signed in read_blocks(args.data_dir):
        block = signed.block
        writer.writerow(
            [
                block.height,
                block.timestamp_ns,
                block.kind,
                block.key_id,
                signed.block_hash.hex(),
                json.dumps(block.payload, sort_keys=True, separators=(",", ":")),
                json.dumps([list(delta) for delta in block.deltas], separators=(",", ":")),
            ]
        )
    return 0


def _command_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = volume_report(args.data_dir)
    if args.json:
        _emit_json(out, report)
        return 0
    out.write(f"{'instrument':<24} {'fills':>8} {'qty':>14} {'amount (CNY)':>20}\n")
    for name, row in report["by_instrument"].items():
        out.write(
            f"{name:<24} {row['count']:>8} {row['qty']:>14} "
            f"{_format_amount('CNY', row['settlement_amount']):>20}\n"
        )
    out.write(f"\n{'segment pair':<24} {'fills':>8} {'qty':>14} {'amount (CNY)':>20}\n")
    for name, row in [*report["by_segment_pair"].items(), ("total", report["total"])]:
        out.write(
            f"{name:<24} {row['count']:>8} {row['qty']:>14} "
            f"{_format_amount('CNY', row['settlement_amount']):>20}\n"
        )
    return 0


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (``--data-dir`` and ``--json`` accepted before or after a command)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="venue data directory holding ledger/ (default: ./data)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="venue-audit",
        description="Verify and read the ABS Venue ledger. Exit 0 ok, 1 failed, 2 usage error.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = commands.add_parser(
        "verify", parents=[common], help="check checksums, links, signatures, checkpoints"
    )
    verify.add_argument("--pubkey", help="pin the venue public key (file or hex/base64 text)")
    verify.add_argument(
        "--workers", type=_non_negative, default=None, help="workers (default: all cores)"
    )
    verify.add_argument(
        "--executor",
        choices=["process", "thread"],
        default="process",
        help="run the checks in worker processes (default) or threads",
    )
    verify.set_defaults(handler=_command_verify)

    show = commands.add_parser("show", parents=[common], help="print blocks")
    show.add_argument("height", nargs="?", type=_non_negative, help="one block height")
    show.add_argument("--from", dest="from_height", type=_non_negative, help="first height")
    show.add_argument("--to", dest="to_height", type=_non_negative, help="last height")
    show.set_defaults(handler=_command_show)

    balances = commands.add_parser("balances", parents=[common], help="recompute balances")
    balances.add_argument("--at", type=_non_negative, help="after this height (default: all)")
    balances.add_argument("--account", help="only this account")
    balances.set_defaults(handler=_command_balances)

    receipt = commands.add_parser("receipt", parents=[common], help="receipt for a fill")
    receipt.add_argument("trade_id", metavar="TRADE_ID")
    receipt.set_defaults(handler=_command_receipt)

    check = commands.add_parser("verify-receipt", parents=[common], help="check a receipt")
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--pubkey",
        required=True,
        action="append",
        help="venue public key (file or text); repeat for a rotated key",
    )
    check.set_defaults(handler=_command_verify_receipt)

    consistency = commands.add_parser(
        "consistency", parents=[common], help="prove an old checkpoint is a prefix of the log"
    )
    consistency.add_argument("old_checkpoint", metavar="OLD_CHECKPOINT")
    consistency.set_defaults(handler=_command_consistency)

    export = commands.add_parser("export", parents=[common], help="dump every block")
    export.add_argument("--format", choices=["csv", "jsonl"], required=True)
    export.set_defaults(handler=_command_export)

    report = commands.add_parser("report", parents=[common], help="volume by instrument/segment")
    report.set_defaults(handler=_command_report)
    return parser


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Console entry point; returns the exit status (0 ok, 1 failed, 2 usage)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    args.data_dir = getattr(args, "data_dir", "./data")
    args.json = getattr(args, "json", False)
    try:
        if args.handler is not _command_verify_receipt:  # a receipt is checked offline
            ledger_directory(args.data_dir)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IncompleteTailWarning)
            code = args.handler(args, out, err)
        for warning in caught:
            err.write(f"venue-audit: warning: {warning.message}\n")
        return code
    except AuditUsageError as error:
        err.write(f"venue-audit: {error}\n")
        return 2
    except AuditFailure as error:
        if args.json:
            _emit_json(out, {"ok": False, "problem": str(error)})
        err.write(f"venue-audit: {error}\n")
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
