"""The ledger's durable path: from "block accepted" to "block durable", and who is told.

What and why
------------
The ledger's caller thread builds, validates, encodes and hashes each block (it must: the next
block needs this block's hash, and refusals must be synchronous), then hands it here with
:meth:`DurablePath.enqueue` and gets a :class:`BlockHandle` back at once. Everything after
that -- the Ed25519 signature, framing, ``write`` and ``fsync`` -- is this stage, and where it
runs depends on the ledger's ``signer``:

- with a :class:`~ledger.writer_process.WriterProcess` (``signer="process"``, the default), a
  child with its own interpreter on the second core signs, appends to the block log and
  fsyncs, with group commit; the parent's block log is detached
  (:meth:`~ledger.recordlog.RecordLog.detach_writer`) and keeps the index. Two threads here:
  the *forwarder* sends each batch of accepted blocks down the child's pipe, and the *durable
  reader* reads the child's reports, indexes the new records and completes their handles. So
  the parent takes the GIL twice a batch on the way to durable (five times in an earlier
  design with signing alone in the child, whose p99 at half load was 9-60 ms; see the writer
  process's docstring for why that matters). Sending each block from the caller's thread
  instead of a forwarder was tried and was worse: every pipe write hands the GIL to the other
  threads, and the caller's schedule slipped (p50 1.4-2.2 ms).
- without one (``signer="thread"``), the forwarder signs (``sign`` releases the GIL) and the
  block log's own writer thread writes and fsyncs; no child process (fast to open, for tests
  and small tools).

The write gate: a block enqueued with ``hold=True`` is signed at once but written only once
:meth:`DurablePath.release` lets it through (a block enqueued without ``hold`` releases itself
and every block before it). The venue holds a batch's blocks while its journal records are
being fsynced, so signing them overlaps that fsync instead of following it, and releases them
when the journal says durable: no block reaches the disk before the command that made it. A
block still held when the ledger closes is never written; the path then fails (the blocks are
lost, which is right: their commands never reached the journal, and replay makes them again).

Once blocks are durable their handles complete (in height order), the :meth:`when_durable`
callbacks whose size is reached run (one notification per batch instead of a handle each), and
``on_durable`` tells the checkpointer. A failed write, fsync or signer is fatal: the path enters
the failed state (:attr:`DurablePath.failure`, a ``LedgerFailedError``), fails every handle
still queued or awaited and every waiting callback, and fails new handles at once.

Cost notes: a handle is an :class:`~ledger.recordlog.AppendHandle`, whose ``Future`` internals
(a ``Condition`` and lists: ten GC-tracked objects) are created only on first use -- thousands
are in flight at full speed, and this cut garbage collection from about 6 to under 1 us a block.
The queue entries are plain tuples ``(handle, encoding, block_hash, private_key)`` for the same
reason: one is made per block on the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import LedgerError, LedgerFailedError
from ledger.recordlog import AppendHandle, RecordLog
from ledger.writer_process import WriterProcess, WriterProcessError

__all__ = ["SIGN_BATCH_LIMIT", "BlockHandle", "DurableCallback", "DurablePath"]

logger = logging.getLogger(__name__)

DurableCallback = Callable[["BaseException | None"], None]

# At most this many blocks per batch the forwarder takes (one message to the writer process, or
# one group signed in the forwarder): bounds the latency a large backlog adds to its first block.
SIGN_BATCH_LIMIT = 512


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


# (handle, encoding, block hash, private key that signs it): one per accepted block.
_Queued = tuple[BlockHandle, bytes, bytes, Ed25519PrivateKey]


class DurablePath:
    """Signs, writes and fsyncs accepted blocks (see the module docstring); thread-safe.

    ``blocks`` is the open block log (detached from its writer if ``writer`` is given);
    ``on_durable()`` runs, in the thread that learnt it, after each durable batch; ``name``
    names the ledger in the failure message. Call :meth:`start` once, :meth:`close` once.
    """

    def __init__(
        self,
        blocks: RecordLog,
        writer: WriterProcess | None,
        on_durable: Callable[[], None],
        name: str,
    ) -> None:
        self._blocks = blocks
        self._writer = writer
        self._on_durable_batch = on_durable
        self._name = name
        self.failure: LedgerFailedError | None = None
        """The failed state: set once, after which every handle and waiter fails with it."""
        self._closing = False
        self.last_handle: BlockHandle | None = None
        """The newest handle :meth:`enqueue` returned (its caller's lock guards it)."""
        # when_durable: (size, callback) in non-decreasing size order, released in that order
        self._durable_waiters: deque[tuple[int, DurableCallback]] = deque()
        self._waiters_lock = threading.Lock()
        # forwarding stage
        self._forward_ready = threading.Condition(threading.Lock())
        self._to_sign: list[_Queued] = []
        self._forwarder_waiting = False  # guarded by _forward_ready
        # the write gate (guarded by _forward_ready): blocks numbered below this may be written
        self._release_limit = blocks.appended_count
        self._forwarder: threading.Thread | None = None
        # with a writer process: handles of blocks sent to it and not yet reported durable
        # (in height order), and the thread reading its reports
        self._awaiting: deque[BlockHandle] = deque()
        self._awaiting_lock = threading.Lock()
        self._durable_reader: threading.Thread | None = None

    @property
    def writer_process_id(self) -> int | None:
        """Process id of the writer process, or None without one."""
        return self._writer.pid if self._writer is not None else None

    def start(self) -> None:
        """Start the forwarder (and, with a writer process, the durable reader)."""
        if self._writer is not None:
            self._durable_reader = threading.Thread(
                target=self._durable_loop, name="ledger-durable", daemon=True
            )
            self._durable_reader.start()
        self._forwarder = threading.Thread(
            target=self._forward_loop, name="ledger-forwarder", daemon=True
        )
        self._forwarder.start()

    def close(self) -> None:
        """Send on what is queued, wait until it is durable (or failed), stop the threads and
        the writer process. The block log itself is the caller's to close."""
        with self._forward_ready:
            self._closing = True
            self._forward_ready.notify_all()
        if self._forwarder is not None:
            self._forwarder.join()
        if self._durable_reader is not None:
            self._durable_reader.join()
        if self._writer is not None:
            self._writer.close()

    # ---- entering the path ------------------------------------------------------------------

    def enqueue(
        self,
        height: int,
        encoded: bytes,
        block_hash: bytes,
        key: Ed25519PrivateKey,
        hold: bool = False,
    ) -> BlockHandle:
        """Queue an accepted block (its encoding and hash) to be signed by ``key``; its handle.
        With ``hold``, it is written only once :meth:`release` lets it through; without, it
        releases itself and every block before it.

        Callers serialise (the ledger holds its lock), so queue order is height order. The
        forwarder is only notified when it is waiting: at full speed it is busy and a
        ``notify`` per block would be wasted work on the caller's thread.
        """
        handle = BlockHandle(height)
        with self._forward_ready:
            if self.failure is None:
                self._to_sign.append((handle, encoded, block_hash, key))
                if not hold and height >= self._release_limit:
                    self._release_limit = height + 1
                if self._forwarder_waiting:
                    self._forward_ready.notify()
            else:  # the forwarder has stopped: never leave a handle hanging
                handle.set_exception(self.failure)
        self.last_handle = handle
        return handle

    def release(self, size: int) -> None:
        """Open the write gate: blocks numbered below ``size`` may be written."""
        with self._forward_ready:
            if size > self._release_limit:
                self._release_limit = size
                if self._forwarder_waiting:
                    self._forward_ready.notify()

    def when_durable(self, size: int, callback: DurableCallback) -> None:
        """``callback(None)`` once blocks ``0 .. size - 1`` are durable, or ``callback(failure)``
        if the path fails first (see ``Ledger.when_durable``)."""
        with self._waiters_lock:
            failure = self.failure
            if failure is None and self._blocks.durable_count < size:
                self._durable_waiters.append((size, callback))
                return
        callback(failure if failure is not None and self._blocks.durable_count < size else None)

    def fail(self, cause: BaseException) -> None:
        """Enter the failed state (once): every later append fails with ``LedgerFailedError``.

        Also for the other stages (the checkpointer): a ledger that cannot store a checkpoint
        stops accepting blocks as one that cannot store blocks does.
        """
        if self.failure is None:
            failure = LedgerFailedError(f"ledger {self._name} failed: {cause!r}")
            failure.__cause__ = cause
            self.failure = failure
            logger.error("%s", failure)

    # ---- the forwarding stage: sign, then hand to the record log ---------------------------

    def _forward_loop(self) -> None:
        """Take batches of accepted blocks and pass them on as the gate allows: down the writer
        process's pipe (signed there at once, written once released), or (no writer process)
        signed here, then queued on the block log once released."""
        batch: list[_Queued] = []
        writer = self._writer
        sent_limit = self._release_limit  # what the writer process / block log was allowed
        signed_held: deque[tuple[BlockHandle, bytes]] = deque()  # no writer process: signed
        try:
            while True:
                with self._forward_ready:
                    while (
                        not self._to_sign
                        and self._release_limit == sent_limit
                        and not self._closing
                    ):
                        self._forwarder_waiting = True
                        self._forward_ready.wait()
                        self._forwarder_waiting = False
                    if not self._to_sign and self._release_limit == sent_limit:
                        break  # closing, and nothing more can be sent or released
                    batch = self._take_sign_batch()
                    limit = self._release_limit
                if writer is not None:
                    if batch:
                        with self._awaiting_lock:
                            self._awaiting.extend(entry[0] for entry in batch)
                    writer.send(
                        batch[0][3] if batch else None,
                        [entry[2] for entry in batch],
                        [entry[1] for entry in batch],
                        release=limit,
                    )
                else:
                    if batch:
                        sign = batch[0][3].sign
                        signed_held.extend((entry[0], entry[1] + sign(entry[2])) for entry in batch)
                    self._hand_to_log(signed_held, limit)
                sent_limit = limit
                batch = []
            held = len(signed_held)
            if held:  # no writer process: what was never released is never written
                self._fail_held(held)
                self._fail_pending(handle for handle, _record in signed_held)
        except BaseException as error:
            self.fail(error)
            self._fail_pending(entry[0] for entry in batch)
        finally:
            if writer is not None:
                writer.finish_input()  # the child commits what it holds and exits

    def _take_sign_batch(self) -> list[_Queued]:
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

    def _hand_to_log(self, signed: deque[tuple[BlockHandle, bytes]], limit: int) -> None:
        """Queue on the block log the signed blocks at the head of ``signed`` that the gate
        lets through (numbered below ``limit``); the rest stay."""
        records, handles = [], []
        while signed and signed[0][0].record_number < limit:
            handle, record = signed.popleft()
            handles.append(handle)
            records.append(record)
        if not records:
            return
        first = self._blocks.append_batch(
            records, lambda _first, _count, error: self._on_durable(handles, error)
        )
        if first != handles[0].record_number:
            raise LedgerError("record numbers and heights diverged", "ledger.internal")

    def _fail_held(self, count: int) -> None:
        """The path closed with ``count`` blocks never released: they are not written, so the
        ledger must not claim them (no final checkpoint or state file covers them)."""
        self.fail(
            LedgerError(
                f"{count} blocks were still held back when the ledger closed and were not "
                "written (their commands never became durable in the caller's journal)",
                "ledger.held_back",
            )
        )
        self._blocks.fail_detached(self.failure)  # wake anyone waiting for them

    # ---- becoming durable -------------------------------------------------------------------

    def _durable_loop(self) -> None:
        """Read the writer process's reports: index the new records, complete their handles.

        The child's output ends when it exits: after ``close`` (the forwarder ended its input)
        that is the normal end; at any other time, or with blocks still awaited, it is fatal.
        """
        writer = self._writer
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
                held = unreported and self._awaiting[0].record_number >= self._release_limit
            if self._closing and held:  # the child dropped exactly the blocks never released
                writer.ended()
                self._fail_held(unreported)
                self._fail_pending(())
                return
            if unreported or not self._closing:
                raise WriterProcessError(f"{writer.ended()} with {unreported} blocks unreported")
        except BaseException as error:
            self.fail(self._blocks.fail_detached(error))
            self._fail_pending(())
        finally:
            writer.started.set()  # nobody waits for a child that has ended

    def wait_started(self, timeout: float) -> None:
        """With a writer process: wait until it has started (its interpreter is up and it can
        sign and write), so that the first block after opening does not wait for it; raise the
        path's failure if it ended instead."""
        if self._writer is None:
            return
        if not self._writer.started.wait(timeout):
            self.fail(WriterProcessError(f"the writer process did not start within {timeout} s"))
        if self.failure is not None:
            raise self.failure

    def _on_durable(self, handles: list[BlockHandle], error: BaseException | None) -> None:
        """Runs in the thread that learnt a batch is durable (or failed): the durable reader,
        or the block log's writer thread."""
        if error is not None:
            self.fail(error)
            for handle in handles:
                handle.set_exception(self.failure)
            self._release_waiters()
            return
        now = time.perf_counter()
        for handle in handles:
            handle.durable_at = now
            handle.set_result(handle.record_number)
        if self._durable_waiters:
            self._release_waiters()
        self._on_durable_batch()

    def _release_waiters(self) -> None:
        """Run the :meth:`when_durable` callbacks that the durable count (or a failure)
        now answers, in order."""
        ready = []
        with self._waiters_lock:
            waiters = self._durable_waiters
            durable = self._blocks.durable_count
            failure = self.failure
            while waiters and (failure is not None or waiters[0][0] <= durable):
                ready.append(waiters.popleft())
        for size, callback in ready:
            try:
                callback(failure if size > durable else None)
            except Exception:  # a caller's bug must not stop durability for everyone else
                logger.exception("ledger durability callback failed")

    def _fail_pending(self, taken: Iterable[BlockHandle]) -> None:
        """After a failure: fail ``taken`` (handles the caller holds) and every handle still
        queued or awaited, so that none is left hanging; ``enqueue`` fails new ones at once."""
        with self._forward_ready:
            queued = [entry[0] for entry in self._to_sign]
            self._to_sign = []
        with self._awaiting_lock:
            awaited = list(self._awaiting)
            self._awaiting.clear()
        for handle in (*taken, *queued, *awaited):
            if not handle.done():
                handle.set_exception(self.failure)
        self._release_waiters()
