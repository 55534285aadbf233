"""The single writer: every command passes through here, in one order, exactly once.

Pipeline for one command (the picture in the README):

1. ``exchange.apply`` (synchronous, on the event loop): validation, risk, matching and settlement
   computed against the in-memory state. A refusal raises ``VenueError`` and changes nothing; it
   is not journaled.
2. The command, stamped with its sequence number and time, is appended to the journal. Appends from
   many concurrent callers are group-committed by the journal's writer thread (one write, one
   fsync).
3. Stage one waits, in sequence order, for the journal record to be durable, then appends the
   command's ledger blocks (fills, deposits, ...). Blocks are therefore only ever written for
   commands that are already in the journal: after a crash the journal is never behind the ledger.
4. Stage two waits for those blocks to be durable, then publishes the command's events and
   acknowledges the caller. Nothing is reported to anyone before it is durable in both logs.

Snapshots are taken at a quiet point: intake pauses, the pipeline drains (so the snapshot state,
the journal and the ledger all describe the same seq), an independent copy of the state is taken,
intake resumes, and a worker thread serialises and writes the file.

A failure of the journal or the ledger (e.g. a failed fsync) is fatal: every pending and later
command fails with ``state.venue_unavailable`` and ``failed`` is set so the server can stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from venue.core.commands import Command
from venue.core.exchange import Exchange, Outcome
from venue.core.snapshots import write_snapshot
from venue.errors import VenueError

log = logging.getLogger(__name__)

EventListener = Callable[[list[dict[str, Any]]], None]


def encode_journal_record(seq: int, ts: int, command: Command) -> bytes:
    record = command.to_record()
    record["seq"] = seq
    record["ts"] = ts
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


class Sequencer:
    """Orders commands, makes them durable, then acknowledges and publishes them."""

    def __init__(
        self,
        exchange: Exchange,
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
        self._intake = asyncio.Lock()
        self._journaled: asyncio.Queue = asyncio.Queue()
        self._settled: asyncio.Queue = asyncio.Queue()
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._since_snapshot = 0
        self._last_ts = 0
        self._tasks: list[asyncio.Task] = []
        self._snapshot_task: asyncio.Task | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._journal_stage(), name="sequencer-journal-stage"),
            asyncio.create_task(self._ledger_stage(), name="sequencer-ledger-stage"),
        ]

    async def stop(self, *, snapshot: bool = True) -> None:
        """Drain what is in flight, optionally snapshot, and stop the stages."""
        async with self._intake:
            await self._drained.wait()
            if self._snapshot_task is not None:
                await self._snapshot_task  # one snapshot writer at a time
            if snapshot and not self.failed.is_set() and self._since_snapshot:
                self._start_snapshot()
        if self._snapshot_task is not None:
            await self._snapshot_task
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def subscribe(self, listener: EventListener) -> None:
        """Call ``listener(events)`` for each command's events once they are durable."""
        self._listeners.append(listener)

    @property
    def seq(self) -> int:
        return self.exchange.seq

    # -- intake ------------------------------------------------------------------------------
    async def submit(self, command: Command) -> Any:
        """Run ``command``; return its result once durable, or raise ``VenueError``."""
        if self.failed.is_set():
            raise VenueError("state.venue_unavailable", "the venue has stopped after a failure")
        async with self._intake:
            # Timestamps never go backwards, so replay and trade dates are monotonic.
            ts = max(self.clock(), self._last_ts + 1)
            outcome = self.exchange.apply(command, ts)
            if not outcome.journaled:
                return outcome.result
            self._last_ts = ts
            acknowledged = asyncio.get_running_loop().create_future()
            try:
                durable = self.journal.append(encode_journal_record(outcome.seq, ts, command))
            except BaseException as exc:
                # The state already moved; without its journal record it must not go on.
                self._fail(exc)
                raise VenueError("state.venue_unavailable", "journal append failed") from exc
            self._in_flight += 1
            self._drained.clear()
            self._journaled.put_nowait((durable, outcome, acknowledged))
            self._since_snapshot += 1
            if self._since_snapshot >= self.snapshot_every and (
                self._snapshot_task is None or self._snapshot_task.done()
            ):
                await self._drained.wait()
                self._start_snapshot()
        return await acknowledged

    # -- pipeline stages ---------------------------------------------------------------------
    async def _journal_stage(self) -> None:
        while True:
            durable, outcome, acknowledged = await self._journaled.get()
            try:
                await asyncio.wrap_future(durable)
                handles = [
                    self.ledger.append(entry.kind, entry.payload, entry.deltas)
                    for entry in outcome.ledger_entries
                ]
            except BaseException as exc:
                self._fail(exc)
                handles = []
            self._settled.put_nowait((handles, outcome, acknowledged))

    async def _ledger_stage(self) -> None:
        while True:
            handles, outcome, acknowledged = await self._settled.get()
            try:
                if self.failure is not None:
                    raise self.failure
                for handle in handles:
                    await asyncio.wrap_future(handle)
            except BaseException as exc:
                self._fail(exc)
                if not acknowledged.done():
                    acknowledged.set_exception(
                        VenueError("state.venue_unavailable", "the venue failed before durability")
                    )
            else:
                self._publish(outcome)
                if not acknowledged.done():
                    acknowledged.set_result(outcome.result)
            finally:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._drained.set()

    def _publish(self, outcome: Outcome) -> None:
        if not outcome.events:
            return
        for listener in self._listeners:
            try:
                listener(outcome.events)
            except Exception:  # a broken subscriber must never stall the venue
                log.exception("event listener failed")

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            log.critical("venue failed; refusing further commands: %r", exc)
            self.failed.set()

    # -- snapshots ---------------------------------------------------------------------------
    def _start_snapshot(self) -> None:
        """Capture the state at a drained point, then write it without holding up intake.

        The caller holds the intake lock and has waited for the pipeline to drain, so the state,
        the journal and the ledger all stand at the same seq. ``exchange.snapshot()`` returns an
        independent copy (new lists and dicts throughout), so commands may run again while a
        worker thread serialises and fsyncs it.
        """
        if self.failed.is_set():
            return
        state = self.exchange.snapshot()
        state["ledger_blocks"] = self.ledger.height + 1
        seq = self.exchange.seq
        self._since_snapshot = 0
        self._snapshot_task = asyncio.create_task(self._write_snapshot(seq, state))

    async def _write_snapshot(self, seq: int, state: dict) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(write_snapshot, self.snapshot_dir, seq, state)
        except Exception:  # a snapshot only shortens recovery: a failed one is not fatal
            log.exception("snapshot at seq %d failed; recovery replays from the previous one", seq)
            return
        log.info("snapshot at seq %d written in %.3fs", seq, time.perf_counter() - started)
