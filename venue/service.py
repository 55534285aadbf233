"""The venue as one service object: open a data directory, recover, run commands, close.

``Venue.open(config)`` lays out (or reopens) the data directory::

    DATA_DIR/                 0700
      keys/ledger_ed25519.key the ledger signing key (0600)
      ledger/                 signed blocks + checkpoints (ledger.Ledger)
      journal/                every accepted command (ledger.recordlog.RecordLog)
      snapshots/              periodic state snapshots (venue.core.snapshots)
      credentials.json        demo participants' API keys (0600), written on first start

Recovery (``venue/core/recovery.py``): the newest snapshot, then the journal replayed after it;
anything that does not line up is refused (:class:`RecoveryError`), never patched over.
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
from venue.core.exchange import CHINA_STANDARD_TIME, Exchange, trade_date
from venue.core.recovery import RecoveryError, recover
from venue.core.sequencer import Sequencer
from venue.domain import demo
from venue.domain.participants import DEFAULT_SCOPES, Role, issue_api_key
from venue.errors import VenueError

log = logging.getLogger(__name__)

LEDGER_ORIGIN = "abs-venue.example/ledger"
# The cyclic collector's thresholds while the venue runs (CPython's default is 700, 10, 10).
# Every command allocates dozens of short-lived dicts and tuples that reference counting frees;
# the default first threshold runs a young-generation collection every ~10 commands, and each
# one also ages the long-lived orders. Measured with load_tests/bench_pipeline.py: about 10 %
# less CPU per command. Nothing on the order path forms reference cycles that must be freed
# promptly.
COLLECTOR_THRESHOLDS = (20_000, 20, 100)
DAY_NS = 86_400 * 1_000_000_000


class VenueStartupError(RuntimeError):
    """The venue refuses to start (e.g. the compiled engine is missing and not allowed)."""


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
        gc.set_threshold(*COLLECTOR_THRESHOLDS)
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
                    recover, data_dir, journal, ledger
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
        """What ``GET /healthz`` answers. Counts are counts (``ledger_blocks`` is what
        ``venue-audit verify`` reports as "N blocks"); the one height is named as such (heights
        count from 0, the genesis block, so it is ``ledger_blocks - 1``)."""
        return {
            "status": "failed" if self.sequencer.failed.is_set() else "ok",
            "engine": matching.IMPLEMENTATION,
            "ledger_blocks": self.ledger.height + 1,  # appended, durable or about to be
            "ledger_durable_blocks": self.ledger.durable_count,
            "ledger_newest_height": self.ledger.height,
            "journal_commands": self.journal.appended_count,
            "journal_durable_commands": self.journal.durable_count,
            "last_seq": self.exchange.seq,  # the newest command's sequence number (from 1)
        }

    async def close(self) -> None:
        """Stop intake, drain, snapshot, close the logs."""
        if self._housekeeping_task is not None:
            self._housekeeping_task.cancel()
        await self.sequencer.stop()
        await asyncio.to_thread(self.journal.close)
        await asyncio.to_thread(self.ledger.close)


__all__ = ["RecoveryError", "Venue", "VenueStartupError", "last_session_end"]
