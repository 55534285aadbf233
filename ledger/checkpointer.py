"""The ledger's checkpointer: signed checkpoints of the block tree, issued and stored.

What and why
------------
A checkpoint (C2SP signed note, ``ledger.checkpoint``) commits the venue to the Merkle root of
the first ``size`` blocks; participants verify receipts and consistency proofs against one.
The :class:`Checkpointer`'s thread issues one when ``every_blocks`` new blocks are durable, or
``every_ms`` after the oldest uncovered durable block, whichever is first. A checkpoint only
ever covers blocks that are already durable, and is itself durable in the checkpoint log before
:meth:`Checkpointer.issue` returns it. A checkpoint of size ``n`` is signed by the key in force
for block ``n`` (the key that signs the block after the last one it covers).

The checkpointer sees the ledger only through the callables it is given: how many blocks are
durable, the material to sign (size, root, key) read under the ledger's lock, whether the
ledger has failed, how to fail it, and what to do after each checkpoint (the ledger saves its
state file then: ``ledger.state_file``).

For opening, :func:`newest_checkpoint_size` (the blocks the block log must not lose as a torn
tail) and :func:`verified_newest_checkpoint` (the newest stored checkpoint, which must be signed
by the key in force at its size, name the ledger's origin and match the rebuilt tree; and the
blocks after it, which this checkpointer will sign over next, must carry valid signatures; or
the ledger is refused as corrupt).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.checkpoint import (
    CheckpointError,
    make_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from ledger.errors import LedgerCorruptError, LedgerError
from ledger.recordlog import RecordLog
from ledger.recovery import ChainIndex, check_signatures, public_key_in_force

__all__ = [
    "CheckpointMaterial",
    "Checkpointer",
    "StoredCheckpoint",
    "newest_checkpoint_size",
    "verified_newest_checkpoint",
]


class CheckpointMaterial(NamedTuple):
    """What a checkpoint of the first ``size`` blocks signs, and with which key (None: a key
    retired before the ledger was opened, which only sizes older than that could need)."""

    size: int
    root: bytes
    key: Ed25519PrivateKey | None


class StoredCheckpoint(NamedTuple):
    """A stored checkpoint note and the tree size it covers."""

    note: str
    size: int


class Checkpointer:
    """Issues and stores the ledger's checkpoints; thread-safe (see the module docstring).

    ``log`` is the checkpoint record log; ``latest`` the newest stored checkpoint (from
    :func:`verified_newest_checkpoint`). ``durable_count()`` is how many blocks are durable;
    ``material()`` reads, under the ledger's lock, what a checkpoint of every durable block
    would sign; ``failed()`` whether the ledger has failed, ``fail(error)`` makes it fail;
    ``after_issue(size)`` runs in the checkpointer's thread after each checkpoint it issued.
    """

    def __init__(
        self,
        log: RecordLog,
        origin: str,
        every_blocks: int,
        every_ms: int,
        latest: StoredCheckpoint | None,
        *,
        durable_count: Callable[[], int],
        material: Callable[[], CheckpointMaterial],
        failed: Callable[[], bool],
        fail: Callable[[BaseException], None],
        after_issue: Callable[[int], None],
    ) -> None:
        self._log = log
        self._origin = origin
        self._every_blocks = every_blocks
        self._every_ms = every_ms
        self._durable_count = durable_count
        self._material = material
        self._failed = failed
        self._fail = fail
        self._after_issue = after_issue
        self._issue_lock = threading.Lock()  # one checkpoint at a time
        self._wakeup = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._latest = latest.note if latest is not None else None
        self._covered = latest.size if latest is not None else 0
        # monotonic time when the oldest durable block no checkpoint covers became durable
        self._oldest_uncovered_ns: int | None = None

    @property
    def latest(self) -> str | None:
        """The newest durable signed checkpoint note (C2SP text), or None before the first."""
        return self._latest

    @property
    def covered_size(self) -> int:
        """How many blocks the newest checkpoint covers (0 before the first)."""
        return self._covered

    def start(self) -> None:
        """Start the checkpointer's thread."""
        self._thread = threading.Thread(target=self._loop, name="ledger-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (it issues nothing more); :meth:`join` waits for it."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()

    def join(self) -> None:
        """Wait for the thread to end (after :meth:`stop`)."""
        self.stop()
        if self._thread is not None:
            self._thread.join()

    def note_durable(self) -> None:
        """More blocks are durable: start the ``every_ms`` clock, or wake the thread when
        ``every_blocks`` are uncovered. Called by the durable path after each batch."""
        with self._wakeup:
            if self._oldest_uncovered_ns is None:  # start the T ms clock now
                self._oldest_uncovered_ns = time.monotonic_ns()
                self._wakeup.notify()
            elif self._durable_count() - self._covered >= self._every_blocks:
                self._wakeup.notify()

    def issue(self) -> str | None:
        """Sign and durably store a checkpoint covering every durable block; return it (the
        newest one if nothing new is durable; None if there is none at all)."""
        with self._issue_lock:
            if self._durable_count() <= self._covered:
                return self._latest
            size, root, key = self._material()
            if size <= self._covered:
                return self._latest
            if key is None:  # only possible for sizes older than the key we were opened with
                raise LedgerError(f"no private key for tree size {size}", "ledger.internal")
            note = sign_checkpoint(make_checkpoint(self._origin, size, root, time.time_ns()), key)
            self._log.append_and_wait(note.encode("utf-8"))
            with self._wakeup:
                self._latest = note
                self._covered = size
                if self._durable_count() > size:
                    self._oldest_uncovered_ns = time.monotonic_ns()
                else:
                    self._oldest_uncovered_ns = None
            return note

    def _loop(self) -> None:
        interval_ns = self._every_ms * 1_000_000
        while True:
            with self._wakeup:
                oldest = self._oldest_uncovered_ns
                if oldest is None:
                    timeout = self._every_ms / 1000
                else:
                    timeout = max(0.0, (oldest + interval_ns - time.monotonic_ns()) / 1e9)
                due_by_count = self._durable_count() - self._covered >= self._every_blocks
                if not due_by_count and not self._stopping:
                    self._wakeup.wait(timeout)
                if self._stopping:
                    return
                oldest = self._oldest_uncovered_ns
                due_by_time = oldest is not None and time.monotonic_ns() >= oldest + interval_ns
                due_by_count = self._durable_count() - self._covered >= self._every_blocks
            if (due_by_time or due_by_count) and not self._failed():
                try:
                    self.issue()
                except BaseException as error:
                    self._fail(error)
                    return
                self._after_issue(self._covered)


def newest_checkpoint_size(log: RecordLog, where: str) -> int:
    """Tree size of the newest checkpoint stored in ``log`` (0 if none); ``where`` names the
    log's directory in a ``LedgerCorruptError`` if that checkpoint is unreadable."""
    count = log.durable_count
    if count == 0:
        return 0
    try:
        return parse_checkpoint(log.read(count - 1))[0].size
    except CheckpointError as error:
        raise LedgerCorruptError(
            f"newest checkpoint (record {count - 1}) unreadable: {error}", 0, where
        ) from error


def verified_newest_checkpoint(
    log: RecordLog, chain: ChainIndex, blocks: RecordLog, origin: str
) -> StoredCheckpoint | None:
    """The newest stored checkpoint, checked as opening checks it; None if there is none.

    ``chain`` is the index rebuilt from ``blocks``. The checkpoint must parse, cover no more
    blocks than remain (else durable blocks were lost), name ``origin``, carry a valid
    signature by the key in force at its size (``recovery.public_key_in_force``) and have the
    root of the rebuilt tree at its size. Then every block after it must carry a valid
    signature (``recovery.check_signatures``): the next checkpoint signs over them. Anything
    else is a ``LedgerCorruptError`` naming the checkpoint record or the block.
    """
    tree = chain.tree
    count = log.durable_count
    if count == 0:
        check_signatures(blocks, chain, 0)
        return None
    where = f"newest checkpoint (record {count - 1} in {log.directory})"
    raw_note = log.read(count - 1)
    try:
        checkpoint, _ = parse_checkpoint(raw_note)
    except CheckpointError as error:
        raise LedgerCorruptError(f"{where} unreadable: {error}", count - 1) from error
    if checkpoint.size > tree.size:
        raise LedgerCorruptError(
            f"{where} covers {checkpoint.size} blocks but only {tree.size} remain: "
            "durable blocks were lost",
            tree.size,
        )
    if checkpoint.origin != origin:
        raise LedgerCorruptError(
            f"{where} names origin {checkpoint.origin!r}, genesis {origin!r}",
            checkpoint.size - 1,
        )
    key = Ed25519PublicKey.from_public_bytes(public_key_in_force(blocks, chain, checkpoint.size))
    try:
        verify_checkpoint(raw_note, key, origin=origin)
    except CheckpointError as error:
        raise LedgerCorruptError(
            f"{where} is not validly signed by the key in force at size {checkpoint.size}: {error}",
            max(checkpoint.size - 1, 0),
        ) from error
    if checkpoint.root_hash != tree.root(checkpoint.size):
        raise LedgerCorruptError(
            f"{where}: the checkpoint of size {checkpoint.size} does not match the blocks",
            checkpoint.size - 1,
        )
    check_signatures(blocks, chain, checkpoint.size)
    return StoredCheckpoint(raw_note.decode("utf-8"), checkpoint.size)
