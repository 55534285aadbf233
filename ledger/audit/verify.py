"""``venue-audit verify``: every check of docs/LEDGER.md section 10, reporting the first problem.

What and why
------------
:func:`verify_ledger` reads every block record through the strict scanner and reports the
**first bad height** and what was wrong (a :class:`VerifyResult`), instead of stopping at an
exception. It splits the work in two, so that signature checks use all cores while the result
is exactly that of a plain block-by-block check:

- workers check chunks of consecutive records on their own (``audit.chunks.check_chunk``:
  decoding, rules, links and keys inside the chunk, signatures, Merkle subtrees, a balance
  summary);
- this process, in height order (:class:`Verifier`), applies a clean chunk in one step (the
  links and keys at its edges, trade ids seen before, no negative balance by
  ``block.check_non_negative``, checkpoint roots) and *replays* any chunk with a problem block
  by block through the reference path (``audit.chunks.check_records`` + ``Verifier.block``).

The reading loop (:func:`run_pipeline`) notes the key each chunk starts under from the rare
genesis and key-rotation records (``block.introduced_key``), so workers need not wait for
earlier chunks; chunks end at every stored checkpoint's size, so each checkpoint is checked
when its tree is complete. In a 2-worker run this process adds ~4 us per block, 2.3 us of it
the scanner's.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.audit.chunks import (
    CheckedRecord,
    ChunkReport,
    ChunkTask,
    RecordProblem,
    check_chunk,
    check_records,
)
from ledger.audit.reading import IncompleteTailWarning, ledger_directory, read_checkpoint_notes
from ledger.block import (
    KEY_KIND_CODES,
    KIND_OFFSET,
    BlockError,
    check_key_rotation,
    check_non_negative,
    decode_signed_block,
    introduced_key,
)
from ledger.checkpoint import CheckpointError, parse_checkpoint, verify_checkpoint
from ledger.errors import LedgerError
from ledger.hasher import EMPTY_ROOT, leaf_hash, node_hash
from ledger.keys import (
    KEYS_DIRECTORY,
    PUBLIC_KEY_FILE_NAME,
    KeyFileError,
    key_id,
    load_public_key,
    public_key_bytes,
)
from ledger.ledger import BLOCKS_DIRECTORY
from ledger.recordlog import LogScanner

__all__ = [
    "CHUNK_RECORDS",
    "PARALLEL_FROM_BYTES",
    "MerkleAccumulator",
    "Verifier",
    "VerifyResult",
    "default_workers",
    "verify_ledger",
]

CHUNK_RECORDS = 1024  # records per task sent to a worker: big enough to amortise pickling
# Below this many bytes of block log, verify runs inline by default: starting worker processes
# costs more than a second core gains (load_tests/bench_verify_workers.py; docs/LEDGER.md 10).
PARALLEL_FROM_BYTES = 2_000_000
YIELD_EVERY = 32  # thread mode: the main thread releases the GIL this often (in records)


@dataclass(slots=True)
class VerifyResult:
    """Outcome of ``verify_ledger``. ``ok`` is False exactly when ``problem`` is set.

    Trust: ``trusted_key_id`` is the genesis key the chain of keys was followed from, and
    ``trusted_key_source`` says where that trust came from (a pinned key, or only the ledger's
    own genesis block). ``public_key_file`` is the data directory's public key file that was
    compared with the key in force at the end (None if there is none).
    """

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
    trusted_key_id: str | None = None
    trusted_key_source: str = ""
    public_key_file: str | None = None
    balances: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def trust_line(self) -> str:
        """One sentence: which key was trusted, from where, and what the key file said."""
        line = f"trusted key {self.trusted_key_id}: {self.trusted_key_source}"
        if self.public_key_file is None:
            return line + "; no public key file to compare"
        if self.ok:
            return line + f"; {self.public_key_file} holds the key in force {self.current_key_id}"
        return line

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


class _StoredNote(NamedTuple):
    """A stored checkpoint as the verifier checks it: its size, text and record number."""

    size: int
    note: str
    number: int


class _Chunk(NamedTuple):
    """A chunk on its way: the worker's task, and the key table (key id -> raw key of every
    key introduced up to its end) that a replay of it needs."""

    task: ChunkTask
    keys: dict[str, bytes]


class MerkleAccumulator:
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


class Verifier:
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
        self.tree = MerkleAccumulator()
        self.notes = notes
        self.parsed: list[_StoredNote] = []  # by size, then by number
        for number, note in enumerate(notes):
            try:
                checkpoint, _ = parse_checkpoint(note)
            except CheckpointError as error:
                raise _Stop(None, "audit.bad_checkpoint", f"checkpoint {number}: {error}") from None
            self.parsed.append(_StoredNote(checkpoint.size, note, number))
        self.parsed.sort(key=lambda entry: (entry.size, entry.number))
        self.next_checkpoint = 0

    def checkpoint_sizes(self) -> list[int]:
        """Where chunks must end: each stored checkpoint's size, ascending, without repeats.

        A checkpoint of size 0 (always wrong: the tree starts with genesis) is checked after
        block 0, as when blocks are checked one by one, so it counts as 1 here.
        """
        return sorted({max(entry.size, 1) for entry in self.parsed})

    def apply_chunk(
        self, report: ChunkReport, records: list[bytes], keys: dict[str, bytes]
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
        for balance_key, change in report.balance_changes.items():
            balances[balance_key] = balances.get(balance_key, 0) + change.net
        self.trade_ids.update(report.trade_ids)
        if report.genesis is not None:
            self.genesis_key, self.origin = report.genesis.public_key, report.genesis.origin
        if report.end_key != self.current_key:
            if report.end_key is None:  # a clean chunk always ends under a key
                raise LedgerError("a clean chunk ends with no key in force", "ledger.internal")
            self.current_key = report.end_key
            self.current_key_id = key_id(report.end_key)
        self.previous_hash = report.last_hash
        for subtree in report.subtrees:
            self.tree.append_subtree(subtree.level, subtree.root)
        self.count += report.count
        self._check_checkpoints_at(self.count)

    def _fits(self, report: ChunkReport) -> bool:
        """Whether a chunk summary can be applied as a whole (see ``apply_chunk``)."""
        if not (
            report.clean
            and report.start == self.count
            and report.start_key == self.current_key
            and (report.start == 0 or report.first_prev_hash == self.previous_hash)
            and self.trade_ids.isdisjoint(report.trade_ids)
        ):
            return False
        if report.genesis is not None and self.pinned_key not in (None, report.genesis.public_key):
            return False
        # The lowest each balance reaches inside the chunk must pass the no-negative rule.
        try:
            check_non_negative(
                self.balances,
                (
                    (account, asset, change.lowest)
                    for (account, asset), change in report.balance_changes.items()
                ),
            )
        except BlockError:
            return False
        return True

    def replay(self, records: list[bytes], keys: dict[str, bytes]) -> None:
        """Check records one by one with the reference path (``check_records``)."""
        for result in check_records(records, keys):
            self.block(result)

    def block(self, result: CheckedRecord | RecordProblem) -> None:
        """Apply the next block's reference check in height order; ``_Stop`` at a problem."""
        height = self.count
        if isinstance(result, RecordProblem):
            raise _Stop(height, result.code, result.message)
        kind, kid, introduced = result.kind, result.key_id, result.introduced_key
        if result.height != height:
            raise _Stop(height, "block.bad_height", f"record {height} holds block {result.height}")
        if height == 0:
            if kind != "genesis":
                raise _Stop(0, "block.bad_kind", "the first block is not genesis")
            self.genesis_key = introduced
            self.origin = result.genesis_origin
            if self.pinned_key is not None and self.genesis_key != self.pinned_key:
                raise _Stop(0, "audit.untrusted_key", "genesis key is not the pinned public key")
            self.current_key = self.genesis_key
            self.current_key_id = key_id(self.genesis_key)
        else:
            if kind == "genesis":
                raise _Stop(height, "block.bad_kind", "a second genesis block")
            if result.prev_hash != self.previous_hash:
                raise _Stop(height, "block.bad_link", "prev_hash is not the previous block's hash")
        if kid != self.current_key_id:
            raise _Stop(
                height,
                "block.wrong_key",
                f"signed by key {kid}, key in force is {self.current_key_id}",
            )
        if not result.signature_ok:
            raise _Stop(height, "block.bad_signature", "Ed25519 signature does not verify")
        balances = self.balances
        try:
            check_non_negative(balances, result.deltas)
        except BlockError as error:
            raise _Stop(height, error.code, error.message) from None
        for account, asset, amount in result.deltas:
            balances[account, asset] = balances.get((account, asset), 0) + amount
        trade_id = result.trade_id
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
        self.previous_hash = result.block_hash
        self.tree.append(leaf_hash(result.block_hash))
        self.count += 1
        self._check_checkpoints_at(self.count)

    def _check_checkpoints_at(self, size: int) -> None:
        parsed = self.parsed
        while self.next_checkpoint < len(parsed) and parsed[self.next_checkpoint].size <= size:
            checkpoint_size, note, number = parsed[self.next_checkpoint]
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
        """After the last block: the ledger is not empty, and no checkpoint is left over."""
        if self.count == 0:
            raise _Stop(0, "audit.empty", "the ledger holds no blocks")
        if self.next_checkpoint < len(self.parsed):
            size, _, number = self.parsed[self.next_checkpoint]
            raise _Stop(
                self.count,
                "audit.missing_blocks",
                f"checkpoint {number} covers {size} blocks but only {self.count} exist",
            )


def key_table_update(record: bytes, table: dict[str, bytes]) -> bytes | None:
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
    pinned_key_source: str = "pinned by the caller",
) -> VerifyResult:
    """Verify the whole ledger of ``data_dir`` and report the first problem, never raising one.

    ``workers`` defaults to ``default_workers`` (by the block log's size); 1 means inline;
    ``executor`` is ``"process"`` or ``"thread"``. ``pinned_key`` (the venue's public key from
    an independent source) must equal the genesis key; without it the genesis
    key is trusted and reported. ``pinned_key_source`` says where the pinned key came from,
    for the result's ``trusted_key_source``. When the data directory holds a public key file
    (``keys/ledger_ed25519.pub``, beside ``ledger/``) it must hold the key in force at the end
    (``audit.public_key_mismatch``): it is what participants check receipts against.
    ``progress`` is called with the number of blocks checked.
    ``chunk_records`` is the most records a worker checks as one task. Raises only
    ``AuditUsageError`` (no ledger there).
    """
    if executor not in ("thread", "process"):
        raise ValueError(f"executor must be 'thread' or 'process', not {executor!r}")
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be at least 1, not {chunk_records}")
    directory = ledger_directory(data_dir)
    started = time.perf_counter()
    workers = workers or default_workers(directory)
    pinned_raw = None
    if pinned_key is not None:
        pinned_raw = pinned_key if isinstance(pinned_key, bytes) else pinned_key.public_bytes_raw()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteTailWarning)
        notes, checkpoint_problem = read_checkpoint_notes(directory)
    mode = "inline" if workers == 1 else executor
    result = VerifyResult(False, 0, len(notes), 0, "", None, None, workers=workers, executor=mode)
    result.warnings.extend(str(warning.message) for warning in caught)
    verifier: Verifier | None = None
    try:
        verifier = Verifier(notes, pinned_raw)
        if checkpoint_problem is not None:
            raise _Stop(None, "audit.bad_checkpoint", checkpoint_problem)
        scanner = LogScanner(directory / BLOCKS_DIRECTORY)
        run_pipeline(scanner, verifier, workers, mode, progress, chunk_records)
        problem = scanner.problem
        if problem is not None and not problem.is_torn_tail:
            raise _Stop(problem.record_number, "audit.bad_record", problem.explain())
        if problem is not None:
            # An incomplete last record: a write in progress or a crash (the ledger truncates it
            # on open). Nothing durable is lost unless a checkpoint covered it, which finish()
            # reports as a failure; so this alone is a warning.
            result.warnings.append(f"ignored an incomplete record at the end: {problem.describe()}")
        verifier.finish()
        result.public_key_file = _check_public_key_file(directory, verifier.current_key)
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
    result.trusted_key_id = result.genesis_key_id
    result.trusted_key_source = (
        pinned_key_source
        if pinned_raw is not None
        else "the ledger's own genesis block, not pinned (give --pubkey to pin the venue's key "
        "from an independent source)"
    )
    result.seconds = time.perf_counter() - started
    return result


def default_workers(directory: Path) -> int:
    """How many workers verify uses unless told: 1 (inline) for a block log smaller than
    ``PARALLEL_FROM_BYTES``, else one per core."""
    size = sum(path.stat().st_size for path in (directory / BLOCKS_DIRECTORY).glob("*.seg"))
    return 1 if size < PARALLEL_FROM_BYTES else os.cpu_count() or 1


def _check_public_key_file(directory: Path, key_in_force: bytes | None) -> str | None:
    """The data directory's public key file (``DATA_DIR/keys/ledger_ed25519.pub`` beside the
    ledger directory), if there is one, after checking it holds ``key_in_force``; ``_Stop``
    with ``audit.public_key_mismatch`` if it does not or cannot be read."""
    path = directory.parent / KEYS_DIRECTORY / PUBLIC_KEY_FILE_NAME
    if not path.exists():
        return None
    try:
        stored = public_key_bytes(load_public_key(path))
    except KeyFileError as error:
        raise _Stop(None, "audit.public_key_mismatch", f"{path}: {error}") from None
    if stored != key_in_force:
        in_force = key_id(key_in_force) if key_in_force is not None else "none"
        raise _Stop(
            None,
            "audit.public_key_mismatch",
            f"{path} holds key {key_id(stored)}, but the key in force is {in_force}: "
            "participants checking receipts against it would be misled",
        )
    return str(path)


def run_pipeline(
    scanner: LogScanner,
    verifier: Verifier,
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
    chunks; ``Verifier.apply_chunk`` confirms that key against the verified chain. At most
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

    def chunks() -> Iterator[_Chunk]:
        start, start_key, key_in_force = 0, None, None
        limit = chunk_size(0)
        chunk: list[bytes] = []
        for record in scanner:
            payload = record.payload
            if len(payload) > KIND_OFFSET and payload[KIND_OFFSET] in KEY_KIND_CODES:
                key_in_force = key_table_update(payload, key_table) or key_in_force
            chunk.append(payload)
            if yield_gil and len(chunk) % YIELD_EVERY == 0:
                time.sleep(0)  # let worker threads back in (they wait on the GIL otherwise)
            if len(chunk) == limit:
                yield _Chunk(ChunkTask(start, chunk, start_key), dict(key_table))
                start += limit
                start_key, chunk, limit = key_in_force, [], chunk_size(start)
        if chunk:
            yield _Chunk(ChunkTask(start, chunk, start_key), dict(key_table))

    def apply(report: ChunkReport, chunk: _Chunk) -> None:
        verifier.apply_chunk(report, chunk.task.records, chunk.keys)
        if progress is not None:
            progress(verifier.count)

    if mode == "inline":
        for chunk in chunks():
            apply(check_chunk(chunk.task), chunk)
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
    pending: deque[tuple[Future[ChunkReport], _Chunk]] = deque()  # in height order
    try:
        for chunk in chunks():
            pending.append((pool.submit(check_chunk, chunk.task), chunk))
            while len(pending) > 2 * workers:
                future, done = pending.popleft()
                apply(future.result(), done)
        while pending:
            future, done = pending.popleft()
            apply(future.result(), done)
    finally:
        for future, _ in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
