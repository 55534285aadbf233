"""The single writer: every command passes through here, in one order, exactly once.

Commands are taken in **batches**, as the LMAX and exchange-core sequencers do: whatever is
waiting at intake when the sequencer comes round is one batch (the picture in the README).

1. ``exchange.apply`` for each command of the batch in turn, on the event loop (validation,
   risk, matching and settlement against the in-memory state). A refusal raises ``VenueError``
   having changed nothing and is not journaled.
2. The batch's ledger blocks are handed to the ledger in one call, *held*: accepted (checked,
   hashed, in the tree) and signed by the ledger's writer process at once, but not written. Then
   the batch's journal records (each command stamped with its sequence number and time) are
   handed to the journal in one call: one write and one fsync, group-committed with any other
   batch queued behind it. So the signing overlaps the journal's fsync instead of following it.
3. In the journal's writer thread, once those records are durable, the ledger is told to
   release the batch's blocks (so a block is only ever written for a command already in the
   journal: after a crash the journal is never behind the ledger) and asked for one
   notification when the last of them is durable.
4. That notification comes back to the event loop with one thread-safe call; the batch's events
   are published and every caller answered in one pass. Batches complete strictly in sequence
   order, so nothing is reported to anyone before it -- and everything before it -- is durable
   in both logs. Refusals and idempotent repeats are answered in that same pass, in order.

So the event loop crosses threads twice per batch (into the journal's writer thread, and back),
not several times per command; nothing per command is a thread-safe future. The journal's writer
thread does no Python work beyond two calls per batch, so it does not compete with the event
loop for the GIL.

Snapshots never pause intake: an independent copy of the live state is taken between two
batches, and written by a worker thread once the batch it follows is answered, that is once the
journal and the ledger hold everything it describes (with the ledger's size as of that batch).

A failure of the journal or the ledger (e.g. a failed fsync) is fatal: every pending and later
command fails with ``state.venue_unavailable`` and ``failed`` is set so the server can stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from venue.core.commands import Command
from venue.core.journal import encode_record
from venue.core.orders import ROW_ENCODER
from venue.core.snapshots import write_order_archive, write_snapshot
from venue.errors import VenueError

log = logging.getLogger(__name__)

EventListener = Callable[[list[tuple]], None]  # events: see venue/core/reports.py

# Commands journaled but not yet answered beyond which intake waits for the pipeline to drain:
# memory stays bounded however fast callers submit.
MAX_IN_FLIGHT = 32_768
# The most commands one batch takes. A bound keeps the stages overlapping: the journal can make
# the first batch durable while the next is being applied, instead of every caller waiting for
# one long batch to be applied, then journaled, then settled in lock step.
MAX_BATCH = 64


@dataclass(slots=True)
class _Batch:
    """One pass of the sequencer: the answers owed, and what it journals and settles."""

    answers: list[tuple[asyncio.Future, Any]]  # (caller's future, result or VenueError)
    events: list[tuple] = field(default_factory=list)
    ledger_entries: list[tuple[str, dict, Any]] = field(default_factory=list)
    journaled: int = 0
    durable: bool = False
    # the ledger's size once this batch's blocks are appended (None: it appends none)
    ledger_size: int | None = None
    # a snapshot captured right after this batch was applied, written once it is answered
    snapshot: tuple[int, dict, list] | None = None


def _unavailable(message: str) -> VenueError:
    return VenueError("state.venue_unavailable", message)


class Sequencer:
    """Orders commands, makes them durable in batches, then acknowledges and publishes them."""

    def __init__(
        self,
        exchange: Any,
        journal: Any,
        ledger: Any,
        *,
        snapshot_dir: Path,
        snapshot_every: int,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self.ledger = ledger
        self.snapshot_dir = snapshot_dir
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None
        self._listeners: list[EventListener] = []
        self._intake: list[tuple[Command, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._batches: deque[_Batch] = deque()  # journaled, not yet answered, in seq order
        self._in_flight = 0  # journaled commands not yet answered
        self._drained = asyncio.Event()
        self._drained.set()
        self._stopping = False
        self._since_snapshot = 0
        self._ledger_size = 0  # the ledger's size after the last answered batch
        self._last_ts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._snapshot_task: asyncio.Task | None = None
        self.batches_run = 0  # how many batches have been applied (for tests and metrics)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ledger_size = self.ledger.height + 1
        self._task = asyncio.create_task(self._run(), name="sequencer")

    async def stop(self, *, snapshot: bool = True) -> None:
        """Refuse new commands, finish those already taken in, optionally snapshot, stop."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drained.wait()
        if self._snapshot_task is not None:
            await self._snapshot_task  # one snapshot writer at a time
        if snapshot and not self.failed.is_set() and self._since_snapshot:
            self._capture_snapshot()
        if self._snapshot_task is not None:
            await self._snapshot_task

    def subscribe(self, listener: EventListener) -> None:
        """Call ``listener(events)`` once events are durable: the events of one or more
        consecutive commands, in sequence order."""
        self._listeners.append(listener)

    @property
    def seq(self) -> int:
        return self.exchange.seq

    # -- intake ------------------------------------------------------------------------------
    async def submit(self, command: Command) -> Any:
        """Run ``command``; return its result once durable, or raise ``VenueError``."""
        if self.failed.is_set():
            raise _unavailable("the venue has stopped after a failure")
        if self._stopping:
            raise _unavailable("the venue is shutting down")
        future = self._loop.create_future()
        self._intake.append((command, future))
        self._wakeup.set()
        try:
            return await future
        finally:
            # A refusal raised here would otherwise keep a cycle alive (its traceback holds
            # this frame, which holds the future, which holds the refusal).
            del future

    async def _run(self) -> None:
        """Take whatever waits at intake as one batch, again and again."""
        while True:
            if not self._intake:
                if self._stopping or self.failed.is_set():
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._in_flight >= MAX_IN_FLIGHT:
                await self._drained.wait()
            if len(self._intake) <= MAX_BATCH:
                batch, self._intake = self._intake, []
            else:
                batch, self._intake = self._intake[:MAX_BATCH], self._intake[MAX_BATCH:]
            if self.failed.is_set():
                self._refuse(batch)
                continue
            self._run_batch(batch)
            if self._since_snapshot >= self.snapshot_every and (
                self._snapshot_task is None or self._snapshot_task.done()
            ):
                self._capture_snapshot()
            # Let callers and completions run before the next batch forms.
            await asyncio.sleep(0)

    def _run_batch(self, taken: list[tuple[Command, asyncio.Future]]) -> None:
        """Apply each command in order, then journal the batch with one append."""
        self.batches_run += 1
        exchange = self.exchange
        clock = self.clock
        batch = _Batch([])
        answers = batch.answers
        records = []
        for command, future in taken:
            # Timestamps never go backwards, so replay and trade dates are monotonic.
            ts = max(clock(), self._last_ts + 1)
            try:
                outcome = exchange.apply(command, ts)
            except VenueError as refusal:
                # Dropped: its traceback holds this frame, whose locals hold the batch, which
                # holds the refusal -- a reference cycle keeping the whole batch alive for the
                # cyclic collector. A business refusal needs no traceback.
                refusal.__traceback__ = None
                answers.append((future, refusal))
                continue
            except BaseException as exc:  # a bug: the state may have half moved
                self._fail(exc)
                self._refuse(taken)  # none of this batch is journaled: none may succeed
                return
            answers.append((future, outcome.result))
            if not outcome.journaled:
                continue
            self._last_ts = ts
            records.append(encode_record(outcome.seq, ts, command))
            batch.ledger_entries.extend(outcome.ledger_entries)
            batch.events.extend(outcome.events)
        batch.journaled = len(records)
        self._batches.append(batch)
        if not records:
            batch.durable = True
            self._answer_ready()
            return
        self._in_flight += len(records)
        self._since_snapshot += len(records)
        self._drained.clear()
        try:
            # Blocks first (held): the journal's callback may run before append_batch returns,
            # and it releases exactly what this batch appended.
            if batch.ledger_entries:
                batch.ledger_size = self.ledger.append_many(batch.ledger_entries, hold=True)
            self.journal.append_batch(records, partial(self._on_journaled, batch))
        except BaseException as exc:
            # The state already moved; without its journal records it must not go on.
            self._fail(exc)

    # -- completion (journal writer thread, ledger durability thread, then the event loop) ---
    def _on_journaled(self, batch: _Batch, _first: int, _count: int, error: Any) -> None:
        """Journal writer thread: the batch's records are durable (or failed)."""
        if error is not None or self.failure is not None:
            # Its held blocks are never released: a failed venue writes no more blocks.
            self._loop.call_soon_threadsafe(self._on_settled, batch, error or self.failure)
            return
        try:
            if batch.ledger_entries:
                self.ledger.release(batch.ledger_size)
                self.ledger.when_durable(
                    batch.ledger_size, partial(self._settled_from_thread, batch)
                )
                return
        except BaseException as exc:
            self._loop.call_soon_threadsafe(self._on_settled, batch, exc)
            return
        self._loop.call_soon_threadsafe(self._on_settled, batch, None)

    def _settled_from_thread(self, batch: _Batch, error: BaseException | None) -> None:
        self._loop.call_soon_threadsafe(self._on_settled, batch, error)

    def _on_settled(self, batch: _Batch, error: BaseException | None) -> None:
        """Event loop: the batch is durable in both logs (or the venue failed)."""
        if error is not None:
            self._fail(error)
            return
        batch.durable = True
        self._answer_ready()

    def _answer_ready(self) -> None:
        """Publish and answer every durable batch at the head of the queue, in order."""
        batches = self._batches
        while batches and batches[0].durable:
            batch = batches.popleft()
            if batch.events:
                self._publish(batch.events)
            for future, answer in batch.answers:
                if future.done():  # the caller gave up waiting
                    continue
                if isinstance(answer, VenueError):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
            self._in_flight -= batch.journaled
            if batch.ledger_size is not None:
                self._ledger_size = batch.ledger_size
            if batch.snapshot is not None:
                self._write_snapshot_when_free(*batch.snapshot)
        if self._in_flight == 0:
            self._drained.set()

    def _publish(self, events: list[tuple]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:  # a broken subscriber must never stall the venue
                log.exception("event listener failed")

    def _refuse(self, taken: list[tuple[Command, asyncio.Future]]) -> None:
        for _command, future in taken:
            if not future.done():
                future.set_exception(_unavailable("the venue has stopped after a failure"))

    def _fail(self, exc: BaseException) -> None:
        """Enter the failed state: nothing pending is answered with success, ever."""
        if self.failure is None:
            self.failure = exc
            log.critical("venue failed; refusing further commands: %r", exc)
            self.failed.set()
        while self._batches:
            batch = self._batches.popleft()
            for future, _answer in batch.answers:
                if not future.done():
                    future.set_exception(_unavailable("the venue failed before durability"))
        self._refuse(self._intake)
        self._intake = []
        self._in_flight = 0
        self._drained.set()
        self._wakeup.set()

    # -- snapshots ---------------------------------------------------------------------------
    def _capture_snapshot(self) -> None:
        """Capture the state as it stands after the batch just applied, without draining.

        ``exchange.snapshot_parts()`` returns an independent copy of the live state (new lists
        and dicts throughout) and the orders closed since the last snapshot (which never change
        again), so commands go on at once. The file may only be written once everything it
        describes is durable, with the ledger's size as of that batch: so the capture rides on
        the newest unanswered batch and is written when that batch is answered (or at once if
        nothing is in flight). A worker thread writes the order archive, then the snapshot.
        """
        if self.failed.is_set():
            return
        state, closed = self.exchange.snapshot_parts()
        capture = (self.exchange.seq, state, closed)
        self._since_snapshot = 0
        if self._batches:
            self._batches[-1].snapshot = capture
        else:
            self._write_snapshot_when_free(*capture)

    def _write_snapshot_when_free(self, seq: int, state: dict, closed: list) -> None:
        """Everything up to ``seq`` is durable in both logs: write the snapshot."""
        state["ledger_blocks"] = self._ledger_size
        previous = self._snapshot_task
        self._snapshot_task = asyncio.create_task(
            self._write_snapshot(seq, state, closed, previous)
        )

    async def _write_snapshot(
        self, seq: int, state: dict, closed: list, previous: asyncio.Task | None
    ) -> None:
        if previous is not None:  # one writer at a time, in order
            await asyncio.gather(previous, return_exceptions=True)
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._write_snapshot_files, seq, state, closed)
        except Exception:  # a snapshot only shortens recovery: a failed one is not fatal
            self.exchange.unarchive(closed)  # the next snapshot archives them
            log.exception("snapshot at seq %d failed; recovery replays from the previous one", seq)
            return
        log.info(
            "snapshot at seq %d written in %.3fs (%d orders newly archived)",
            seq, time.perf_counter() - started, len(closed),
        )  # fmt: skip

    def _write_snapshot_files(self, seq: int, state: dict, closed: list) -> None:
        """Worker thread: the order archive, then the snapshot that relies on it."""
        if closed:
            # Closed orders never change: encode them here, in pieces, letting the event loop
            # have the GIL between pieces.
            pieces = []
            for start in range(0, len(closed), 1_000):
                pieces.append(ROW_ENCODER.encode(closed[start : start + 1_000])[1:-1])
                time.sleep(0)
            rows = msgspec.Raw(b"[" + b",".join(pieces) + b"]")
            write_order_archive(self.snapshot_dir, seq, state["order_fields"], rows)
        write_snapshot(self.snapshot_dir, seq, state)
