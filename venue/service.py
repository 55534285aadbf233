"""The venue as one service object: open a data directory, recover, run commands, close.

``Venue.open(config)`` lays out (or reopens) the data directory::

    DATA_DIR/                 0700
      keys/ledger_ed25519.key the ledger signing key (0600)
      ledger/                 signed blocks + checkpoints (ledger.Ledger)
      journal/                every accepted command (ledger.recordlog.RecordLog)
      snapshots/              periodic state snapshots (venue.core.snapshots)
      credentials.json        demo participants' API keys (0600), written on first start

Recovery: load the newest snapshot (if any), then replay every journal record after it through
the same deterministic :class:`Exchange`. Ledger blocks are only ever written after their command
is durable in the journal, so the ledger can only be *behind* the journal: the replay re-creates
the blocks of the trailing commands, checks each one the ledger already holds against the one it
recomputes, and appends the missing ones. Anything that does not line up is refused loudly
(:class:`RecoveryError`), never patched over.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matching
from ledger.block import make_deltas
from ledger.keys import (
    generate_private_key,
    load_private_key,
    save_private_key,
    save_public_key,
)
from ledger.ledger import Ledger
from ledger.recordlog import RecordLog
from venue.config import Config
from venue.core.commands import (
    AdmitParticipant,
    Command,
    Deposit,
    ExpireDay,
    ListInstrument,
    RollCouponPeriod,
)
from venue.core.exchange import CHINA_STANDARD_TIME, Exchange, LedgerEntry, trade_date
from venue.core.journal import JournalRecordError, decode_record
from venue.core.sequencer import Sequencer
from venue.core.snapshots import load_latest_snapshot
from venue.domain import demo
from venue.domain.participants import DEFAULT_SCOPES, Role, issue_api_key
from venue.domain.pricing import FeeSchedule
from venue.errors import VenueError

log = logging.getLogger(__name__)

LEDGER_ORIGIN = "abs-venue.example/ledger"
DAY_NS = 86_400 * 1_000_000_000


class VenueStartupError(RuntimeError):
    """The venue refuses to start (e.g. the compiled engine is missing and not allowed)."""


class RecoveryError(RuntimeError):
    """The journal, snapshots and ledger do not line up; nothing was repaired."""


def _ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _load_or_create_signing_key(keys_dir: Path):
    """The ledger signing key (0600), created on first start with its public half beside it
    (``ledger_ed25519.pub``, hex, 0644): the key participants check receipts against."""
    path = keys_dir / "ledger_ed25519.key"
    if path.exists():
        key = load_private_key(path)
    else:
        key = generate_private_key()
        save_private_key(key, path)
    public_path = keys_dir / "ledger_ed25519.pub"
    if not public_path.exists():
        save_public_key(key.public_key(), public_path)
    return key


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while recovery builds millions of objects.

    Recovery allocates hundreds of thousands of containers (orders, snapshot rows, index
    entries) and keeps nearly all of them: left on, the collector re-scans that growing heap over
    and over, which measured at more than half the restart time. None of these objects form
    cycles that need collecting. Afterwards ``gc.freeze()`` moves them to the permanent
    generation, so later collections in the running venue do not keep walking them either.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def last_session_end(now_ns: int, session_end_minutes: int) -> int:
    """The most recent moment (ns) at or before ``now_ns`` when the local (China Standard Time)
    clock read ``session_end_minutes`` past midnight; 0 minutes gives the last midnight."""
    now = datetime.fromtimestamp(now_ns / 1e9, CHINA_STANDARD_TIME)
    end = now.replace(
        hour=session_end_minutes // 60, minute=session_end_minutes % 60, second=0, microsecond=0
    )
    if end > now:
        end -= timedelta(days=1)
    return int(end.timestamp()) * 1_000_000_000


def _check_block_matches(
    ledger: Ledger, height: int, entry: LedgerEntry, ledger_blocks: int
) -> None:
    """The block already at ``height`` must be the one replay recomputes, or recovery stops.

    A fill is checked through the ledger's trade index (its trade id must sit at exactly this
    height): decoding every block again would double the restart time of a busy venue, and the
    full content of every block is what ``venue-audit verify`` checks. Every other block, and
    the newest one, is decoded and compared field by field.
    """
    if entry.kind == "fill" and height < ledger_blocks - 1:
        if ledger.find_fill(entry.payload["trade_id"]) != height:
            raise RecoveryError(
                f"ledger block {height} is not fill {entry.payload['trade_id']}, which the "
                "journal replay produces there"
            )
        return
    block = ledger.block(height).block
    if (
        block.kind != entry.kind
        or dict(block.payload) != entry.payload
        or tuple(block.deltas) != make_deltas(entry.deltas)
    ):
        raise RecoveryError(
            f"ledger block {height} ({block.kind}) differs from the one the journal replay "
            f"produces ({entry.kind}); refusing to guess which is right"
        )


class Venue:
    """The running venue: exchange state, journal, ledger and the sequencer that ties them."""

    def __init__(
        self,
        config: Config,
        exchange: Exchange,
        journal: RecordLog,
        ledger: Ledger,
        sequencer: Sequencer,
        recovery: dict[str, Any],
    ) -> None:
        self.config = config
        self.exchange = exchange
        self.journal = journal
        self.ledger = ledger
        self.sequencer = sequencer
        self.recovery = recovery
        self._housekeeping_task: asyncio.Task | None = None

    # ================================================================== opening
    @classmethod
    async def open(cls, config: Config) -> Venue:
        """Open (creating and seeding if empty) the venue in ``config.data_dir`` and recover."""
        if matching.IMPLEMENTATION != "c":
            if not config.allow_reference_engine:
                raise VenueStartupError(
                    "the compiled matching engine is not built "
                    f"({matching.COMPILED_IMPORT_ERROR}); rebuild with `pip install -e .` or "
                    "start with --allow-reference-engine to accept the slow fallback"
                )
            log.warning("running on the pure-Python reference matching engine")
        log.info("matching engine loaded", extra={"implementation": matching.IMPLEMENTATION})
        started = time.perf_counter()
        data_dir = _ensure_private_dir(Path(config.data_dir))
        key = _load_or_create_signing_key(_ensure_private_dir(data_dir / "keys"))
        with _collector_paused():
            ledger = await asyncio.to_thread(
                Ledger.open,
                data_dir / "ledger",
                key,
                origin=LEDGER_ORIGIN,
                checkpoint_every_blocks=config.checkpoint_every_blocks,
                checkpoint_every_ms=config.checkpoint_every_ms,
            )
            journal = await asyncio.to_thread(RecordLog.open, data_dir / "journal")
            try:
                exchange, recovery = await asyncio.to_thread(
                    cls._recover, data_dir, journal, ledger
                )
            except BaseException:
                journal.close()
                ledger.close()
                raise
        recovery["seconds"] = round(time.perf_counter() - started, 3)
        log.info("venue recovered", extra=recovery)
        sequencer = Sequencer(
            exchange,
            journal,
            ledger,
            snapshot_dir=data_dir / "snapshots",
            snapshot_every=config.snapshot_every_commands,
        )
        sequencer.start()
        venue = cls(config, exchange, journal, ledger, sequencer, recovery)
        if exchange.seq == 0 and config.seed_demo:
            await venue._seed_demo(data_dir)
        await venue._housekeeping()
        venue._housekeeping_task = asyncio.create_task(venue._housekeeping_at_day_boundaries())
        return venue

    @staticmethod
    def _recover(data_dir: Path, journal: RecordLog, ledger: Ledger) -> tuple[Exchange, dict]:
        """Snapshot + journal replay; re-create the ledger blocks the crash cut off."""
        snapshot = load_latest_snapshot(data_dir / "snapshots")
        if snapshot is None:
            exchange = Exchange(FeeSchedule.from_wire(demo.FEE_SCHEDULE))
            expected_blocks = 1  # the genesis block the ledger writes itself
        else:
            _seq, state = snapshot
            exchange = Exchange.restore(state)
            expected_blocks = state["ledger_blocks"]
        if journal.durable_count < exchange.seq:
            raise RecoveryError(
                f"snapshot is at seq {exchange.seq} but the journal holds only "
                f"{journal.durable_count} records"
            )
        ledger_blocks = ledger.height + 1
        if ledger_blocks < expected_blocks:
            raise RecoveryError(
                f"the ledger holds {ledger_blocks} blocks, fewer than the {expected_blocks} the "
                "snapshot had made durable"
            )
        next_height = expected_blocks
        replayed = appended = 0
        exchange.emit_events = False
        handles = []
        for number, data in journal.records(start=exchange.seq):
            try:
                seq, ts, command = decode_record(data)
            except JournalRecordError as exc:
                raise RecoveryError(f"journal record {number}: {exc}") from None
            if seq != number + 1 or seq != exchange.seq + 1:
                raise RecoveryError(f"journal record {number} has seq {seq}")
            try:
                outcome = exchange.apply(command, ts)
            except VenueError as exc:
                raise RecoveryError(f"journal seq {seq} no longer applies: {exc}") from exc
            replayed += 1
            for entry in outcome.ledger_entries:
                if next_height < ledger_blocks:
                    _check_block_matches(ledger, next_height, entry, ledger_blocks)
                else:
                    handles.append(ledger.append(entry.kind, entry.payload, entry.deltas))
                    appended += 1
                next_height += 1
        for handle in handles:
            handle.result()
        if next_height != ledger.height + 1:
            raise RecoveryError(
                f"the ledger holds {ledger.height + 1} blocks but the journal accounts for "
                f"{next_height}: the ledger is ahead of the journal"
            )
        exchange.emit_events = True
        exchange.validate()
        return exchange, {
            "snapshot_seq": None if snapshot is None else snapshot[0],
            "replayed_commands": replayed,
            "reappended_blocks": appended,
            "seq": exchange.seq,
            "ledger_height": ledger.height,
            # bytes of a torn tail (a crash mid-write) that opening cut from each log
            "journal_truncated_bytes": journal.recovery.truncated_bytes,
            "ledger_truncated_bytes": ledger.recovery.truncated_bytes,
        }

    async def _seed_demo(self, data_dir: Path) -> None:
        """First start: list the demo deal, admit and fund the demo participants."""
        credentials = []
        for instrument in demo.INSTRUMENTS:
            await self.submit(ListInstrument(instrument))
        for participant in demo.PARTICIPANTS:
            credentials.append(
                await self.admit(
                    participant["participant_id"],
                    participant["name"],
                    participant["segment"],
                    participant["role"],
                )
            )
        for participant_id, asset, amount in demo.FUNDING:
            await self.submit(Deposit(participant_id, asset, amount))
        path = data_dir / "credentials.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "base_url": f"http://{self.config.host}:{self.config.port}/v1",
                    "participants": credentials,
                },
                handle,
                indent=2,
            )
        log.info("seeded demo data", extra={"credentials_file": str(path)})

    # ================================================================== day boundaries
    async def _housekeeping(self) -> None:
        """Issue what the calendar makes due: DAY expiry after a session end, coupon rolls.

        Idempotent: it looks at the state, so running it at start-up catches up on whatever
        passed while the venue was down.
        """
        now = time.time_ns()
        end = last_session_end(now, self.config.session_end_minutes)
        if any(
            order.time_in_force == "day" and order.created_ts < end
            for order in self.exchange.open_orders.values()
        ):
            await self.submit(ExpireDay())
        today = trade_date(now)
        for symbol, instrument in sorted(self.exchange.instruments.items()):
            if instrument.next_coupon_date <= today < instrument.maturity_date:
                await self.submit(RollCouponPeriod(symbol))

    async def _housekeeping_at_day_boundaries(self) -> None:
        """Wake at every session end and every local midnight, then do what is due."""
        while True:
            now = time.time_ns()
            boundaries = (
                last_session_end(now, self.config.session_end_minutes) + DAY_NS,
                last_session_end(now, 0) + DAY_NS,
            )
            await asyncio.sleep((min(boundaries) - now) / 1e9 + 0.001)
            try:
                await self._housekeeping()
            except VenueError:
                log.exception("day-boundary housekeeping failed")

    # ================================================================== running
    async def submit(self, command: Command) -> Any:
        """Run one command through the sequencer; the result once it is durable."""
        return await self.sequencer.submit(command)

    async def admit(
        self, participant_id: str, name: str, segment: str | None, role: str
    ) -> dict[str, Any]:
        """Operator action: admit a participant and issue its first API credentials.

        Returns the participant with ``key_id``, ``secret`` and ``scopes``; the secret is shown
        this once (it is kept in the journal and snapshots inside the 0700 data directory, since
        request signatures are HMACs that the venue must recompute).
        """
        key_id, secret = issue_api_key()
        result = await self.submit(
            AdmitParticipant(participant_id, name, segment, role, key_id, secret)
        )
        scopes = sorted(scope.value for scope in DEFAULT_SCOPES[Role(role)])
        return {**result, "key_id": key_id, "secret": secret, "scopes": scopes}

    def health(self) -> dict[str, Any]:
        return {
            "status": "failed" if self.sequencer.failed.is_set() else "ok",
            "engine": matching.IMPLEMENTATION,
            "ledger_height": self.ledger.height,
            "journal_seq": self.exchange.seq,
            "journal_durable": self.journal.durable_count,
        }

    async def close(self) -> None:
        """Stop intake, drain, snapshot, close the logs."""
        if self._housekeeping_task is not None:
            self._housekeeping_task.cancel()
        await self.sequencer.stop()
        await asyncio.to_thread(self.journal.close)
        await asyncio.to_thread(self.ledger.close)


__all__ = ["RecoveryError", "Venue", "VenueStartupError", "last_session_end"]
