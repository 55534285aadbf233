"""The venue as one service object: open a data directory, recover, run commands, close.

``Venue.open(config)`` lays out (or reopens) the data directory::

    DATA_DIR/                 0700
      keys/ledger_ed25519.key the ledger signing key (0600)
      ledger/                 signed blocks + checkpoints (ledger.Ledger)
      journal/                every accepted command (ledger.recordlog.RecordLog)
      snapshots/              periodic state snapshots (venue.core.snapshots)
      journal-archive/        retired journal segments (journal_retention = "archive")
      credentials.json        demo participants' API keys (0600), written on first start

First start is all or nothing: the demo is seeded into ``DATA_DIR/.seeding/`` (a complete venue
of its own, closed and fsynced), a ``complete`` marker is written there last, and only then are
its entries renamed into ``DATA_DIR`` (each rename atomic, the directory fsynced). A start that
finds ``.seeding/`` without the marker was killed while seeding, before anything was served:
it is discarded and the seeding done again; with the marker, the renames are finished. So an
operator sees either no venue or a fully seeded one with its ``credentials.json``, never a half
seeded one. The demo is only seeded into an empty data directory (none of the entries above).

Recovery (``venue/core/recovery.py``): the newest snapshot, then the journal replayed after it;
anything that does not line up is refused (:class:`RecoveryError`), never patched over.

Journal retirement (``venue.core.journal.retire_journal``): segments wholly before the newest
durable snapshot are archived or deleted after recovery, every ``JOURNAL_RETIRE_EVERY_SECONDS``
while running, and at close (after the final snapshot). A crash at any point between a
snapshot and its retirement loses nothing: the journal is only ever shorter than recovery needs
once a durable snapshot covers what went.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import logging
import os
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matching
from ledger.keys import (
    PUBLIC_KEY_FILE_NAME,
    SIGNING_KEY_FILE_NAME,
    KeyFileError,
    ensure_public_key_file,
    generate_private_key,
    load_private_key,
    private_key_bytes,
    public_key_bytes,
    save_private_key,
)
from ledger.ledger import Ledger
from ledger.recordlog import (
    DEFAULT_SEGMENT_MAX_BYTES,
    LOCK_FILE_NAME,
    RecordLog,
    fsync_directory,
)
from venue.config import Config
from venue.core.commands import (
    AdmitParticipant,
    CancelAll,
    Command,
    Deposit,
    Distribute,
    ExpireDay,
    IssueApiKey,
    ListDeal,
    ListInstrument,
    PublishPoolReport,
    RevokeApiKey,
    RollCouponPeriod,
)
from venue.core.exchange import CHINA_STANDARD_TIME, Exchange, trade_date
from venue.core.journal import ARCHIVE_DIRECTORY, retire_journal
from venue.core.observed import ObservedJournal, ObservedLedger
from venue.core.recovery import RecoveryError, recover
from venue.core.sequencer import Sequencer
from venue.domain import demo
from venue.domain.participants import (
    DEFAULT_SCOPES,
    Role,
    credential_kind,
    ed25519_credential,
    issue_api_key,
)
from venue.errors import ErrorCode, VenueError

log = logging.getLogger(__name__)

LEDGER_ORIGIN = "abs-venue.example/ledger"
# The cyclic collector's thresholds while the venue runs (CPython's default is 700, 10, 10).
# With no reference cycles on the order path (refusals drop their tracebacks, orders are
# untracked msgspec structs) collections find little, and cost about 1 % of the CPU per command
# at any setting measured; this one runs the young generation about 3x less often than the
# default while keeping every pause near 2 ms (load_tests/bench_pipeline.py; 20,000 gave
# 6 ms pauses, which the paced p99 would feel).
COLLECTOR_THRESHOLDS = (2_000, 10, 100)
DAY_NS = 86_400 * 1_000_000_000
# The journal's segment size (a segment is the unit that retires; ~270,000 commands), and how
# often a running venue retires what a newer snapshot covers (a segment fills in minutes at
# the fastest).
JOURNAL_SEGMENT_MAX_BYTES = DEFAULT_SEGMENT_MAX_BYTES
JOURNAL_RETIRE_EVERY_SECONDS = 60.0


class VenueStartupError(RuntimeError):
    """The venue refuses to start (e.g. the compiled engine is missing and not allowed)."""


def _ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


# First-start staging (see the module docstring).
STAGING = ".seeding"
STAGING_COMPLETE = "complete"
# What the venue keeps in its data directory: a directory holding none of these is empty.
DATA_ENTRIES = ("keys", "ledger", "journal", ARCHIVE_DIRECTORY, "snapshots", "credentials.json")


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (and ``root``), deepest first."""
    for directory, _subdirectories, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(Path(directory) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(directory))


def _create_data_dir(data_dir: Path) -> None:
    """Create the data directory (0700), its creation durable in the parent directory."""
    existed = data_dir.is_dir()
    _ensure_private_dir(data_dir)
    if not existed:
        with contextlib.suppress(PermissionError):  # best effort: a parent we may not read
            fsync_directory(data_dir.resolve().parent)


@contextlib.contextmanager
def _first_start_lock(data_dir: Path):
    """An exclusive lock on the data directory while a first start resolves or builds its
    staging, so that a second venue started at the same moment cannot discard it."""
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VenueStartupError(
                f"another venue is starting in {data_dir}; refusing to start beside it"
            ) from None
        yield
    finally:
        os.close(fd)


def _is_empty_data_dir(data_dir: Path) -> bool:
    return not any((data_dir / name).exists() for name in DATA_ENTRIES)


def _publish_staging(staging: Path, data_dir: Path) -> None:
    """Move a complete staging directory's entries into ``data_dir``; idempotent, so a start
    that finds the ``complete`` marker finishes what a killed one began."""
    for entry in sorted(os.listdir(staging)):
        if entry == STAGING_COMPLETE:
            continue
        if (data_dir / entry).exists():
            raise VenueStartupError(
                f"cannot finish the first start: both {staging / entry} and {data_dir / entry} "
                "exist; refusing to guess which is right (move one away)"
            )
        os.rename(staging / entry, data_dir / entry)
    fsync_directory(data_dir)
    os.unlink(staging / STAGING_COMPLETE)
    os.rmdir(staging)
    fsync_directory(data_dir)


def _resolve_staging(data_dir: Path) -> None:
    """Finish (``complete`` marker) or discard (no marker) what a killed first start left."""
    staging = data_dir / STAGING
    if not staging.exists():
        return
    if (staging / STAGING_COMPLETE).exists():
        log.warning("finishing an interrupted first start", extra={"staging": str(staging)})
        _publish_staging(staging, data_dir)
        return
    if not any(staging.iterdir()):  # killed after the last rename, before the rmdir
        staging.rmdir()
        fsync_directory(data_dir)
        return
    log.warning(
        "discarding an unfinished first-start seeding (the venue was stopped while seeding; "
        "nothing in it was ever served); seeding again",
        extra={"staging": str(staging)},
    )
    held = _hold_log_locks(staging)
    try:
        shutil.rmtree(staging)
    finally:
        for fd in held:
            os.close(fd)
    fsync_directory(data_dir)


def _hold_log_locks(root: Path, timeout: float = 30.0) -> list[int]:
    """Take every record log's lock under ``root``, waiting for the processes of a killed start
    to let go: its ledger writer child commits what it holds before it exits, and must not
    write into the directory that replaces this one."""
    held: list[int] = []
    try:
        for lock in sorted(root.glob(f"**/{LOCK_FILE_NAME}")):
            fd = os.open(lock, os.O_RDWR)
            held.append(fd)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise VenueStartupError(
                            f"{lock} is still held by a process of an interrupted first start; "
                            "stop it, then start again"
                        ) from None
                    time.sleep(0.01)
    except BaseException:
        for fd in held:
            os.close(fd)
        raise
    return held


def _load_or_create_signing_key(keys_dir: Path):
    """The ledger signing key (0600), created on first start with its public half beside it
    (``ledger_ed25519.pub``, hex, 0644): the key participants check receipts against, so at
    every start it must still be the signing key's (``VenueStartupError`` otherwise)."""
    path = keys_dir / SIGNING_KEY_FILE_NAME
    try:
        if path.exists():
            key = load_private_key(path)
        else:
            key = generate_private_key()
            save_private_key(key, path)
        ensure_public_key_file(key, keys_dir / PUBLIC_KEY_FILE_NAME)
    except KeyFileError as error:
        raise VenueStartupError(str(error)) from error
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
        ledger_public_key: str = "",
    ) -> None:
        self.config = config
        self.exchange = exchange
        self.journal = journal
        self.ledger = ledger
        self.sequencer = sequencer
        self.recovery = recovery
        self.ledger_public_key = ledger_public_key  # hex: what receipts are verified against
        self._housekeeping_task: asyncio.Task | None = None
        self._retire_task: asyncio.Task | None = None
        self.data_dir = Path(config.data_dir)  # the directory opened (staging, on first start)

    @property
    def journal_timing(self) -> ObservedJournal:
        """The journal as the sequencer drives it: set ``.observer`` to time its fsyncs."""
        return self.sequencer.journal

    @property
    def ledger_timing(self) -> ObservedLedger:
        """The ledger as the sequencer drives it: set ``.observer`` to time append-to-durable."""
        return self.sequencer.ledger

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
        data_dir = Path(config.data_dir)
        _create_data_dir(data_dir)
        with _first_start_lock(data_dir):
            await asyncio.to_thread(_resolve_staging, data_dir)
            if _is_empty_data_dir(data_dir) and config.seed_demo:
                await cls._first_start(config, data_dir)
        venue = await cls._open_directory(config, data_dir)
        if venue.exchange.seq == 0 and config.seed_demo:
            log.warning(
                "not seeding the demo: the data directory is not empty (the demo is seeded only "
                "into an empty one, all or nothing)",
                extra={"data_dir": str(data_dir)},
            )
        await venue._housekeeping()
        venue._housekeeping_task = asyncio.create_task(venue._housekeeping_at_day_boundaries())
        venue._retire_task = asyncio.create_task(venue._retire_journal_periodically())
        return venue

    @classmethod
    async def _open_directory(cls, config: Config, data_dir: Path) -> Venue:
        """Lay out (or reopen) ``data_dir``, recover and start the sequencer."""
        started = time.perf_counter()
        data_dir = _ensure_private_dir(data_dir)
        key = _load_or_create_signing_key(_ensure_private_dir(data_dir / "keys"))
        with _collector_paused():
            # The journal first: a journal that is refused leaves the ledger untouched.
            journal = await asyncio.to_thread(
                RecordLog.open, data_dir / "journal", segment_max_bytes=JOURNAL_SEGMENT_MAX_BYTES
            )
            try:
                ledger = await asyncio.to_thread(
                    Ledger.open,
                    data_dir / "ledger",
                    key,
                    origin=LEDGER_ORIGIN,
                    checkpoint_every_blocks=config.checkpoint_every_blocks,
                    checkpoint_every_ms=config.checkpoint_every_ms,
                )
            except BaseException:
                journal.close()
                raise
            try:
                exchange, recovery = await asyncio.to_thread(recover, data_dir, journal, ledger)
            except BaseException:
                journal.close()
                ledger.close()
                raise
        recovery["seconds"] = round(time.perf_counter() - started, 3)
        recovery["journal_first_record"] = journal.first_record
        log.info("venue recovered", extra=recovery)
        sequencer = Sequencer(
            exchange,
            ObservedJournal(journal),
            ObservedLedger(ledger),
            snapshot_dir=data_dir / "snapshots",
            snapshot_every=config.snapshot_every_commands,
        )
        sequencer.start()
        public_key = key.public_key().public_bytes_raw().hex()
        venue = cls(config, exchange, journal, ledger, sequencer, recovery, public_key)
        venue.data_dir = data_dir
        await venue.retire_journal()  # what a snapshot written before a stop or crash covers
        return venue

    @classmethod
    async def _first_start(cls, config: Config, data_dir: Path) -> None:
        """Seed a complete venue in ``DATA_DIR/.seeding``, close it, then publish it."""
        staging = data_dir / STAGING
        seeding = await cls._open_directory(config, staging)
        try:
            credentials = await seeding._seed_demo()
        finally:
            await seeding.close()
        path = staging / "credentials.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "base_url": f"http://{config.host}:{config.port}/v1",
                    "participants": credentials,
                },
                handle,
                indent=2,
            )

        def complete_and_publish() -> None:
            _fsync_tree(staging)  # everything durable before the marker says it is complete
            marker = os.open(staging / STAGING_COMPLETE, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.fsync(marker)
            os.close(marker)
            fsync_directory(staging)
            _publish_staging(staging, data_dir)

        await asyncio.to_thread(complete_and_publish)
        credentials_file = str(data_dir / "credentials.json")
        log.info("seeded demo data", extra={"credentials_file": credentials_file})

    async def _seed_demo(self) -> list[dict[str, Any]]:
        """First start: list the demo deal's tranches as they stood a year before ``demo.AS_OF``,
        admit the demo participants and the deal's servicer, list the deal and replay its year
        of servicer reports and payment dates (``demo.servicer_history``, signed with a report
        key made here), then fund the participants; their credentials (the servicer's with its
        ``report_signing_key``, 64 hex, so a demo user can publish the next report)."""
        credentials = []
        for instrument in demo.listing_instruments():
            await self.submit(ListInstrument(instrument))
        for participant in (*demo.PARTICIPANTS, demo.SERVICER):
            credentials.append(
                await self.admit(
                    participant["participant_id"],
                    participant["name"],
                    participant["segment"],
                    participant["role"],
                )
            )
        report_key = generate_private_key()
        credentials[-1]["report_signing_key"] = private_key_bytes(report_key).hex()
        await self.submit(
            ListDeal(demo.deal_terms(public_key_bytes(report_key).hex()), demo.POOL_AT_LISTING)
        )
        history = demo.servicer_history()
        servicer = str(demo.SERVICER["participant_id"])
        collected = sum(line.collected for period in history for line in period.lines)
        await self.submit(Deposit(servicer, "CNY", collected))  # what the year remits
        for period, (report, lines) in zip(history, demo.signed_reports(report_key, history),
                                           strict=True):  # fmt: skip
            await self.submit(PublishPoolReport(servicer, report, lines))
            await self.submit(Distribute(demo.DEAL_ID, period.period))
        for participant_id, asset, amount in demo.FUNDING:
            await self.submit(Deposit(participant_id, asset, amount))
        return credentials

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

    # ================================================================== journal retirement
    async def retire_journal(self) -> list[str]:
        """Retire the journal segments the newest durable snapshot covers (archived or deleted
        by ``journal_retention``); the names retired. A failure is logged, not fatal: the
        journal is only longer than it needs to be until the next try."""
        try:
            return await asyncio.to_thread(
                retire_journal,
                self.journal,
                self.data_dir,
                self.config.journal_retention,
            )
        except Exception:
            log.exception("retiring journal segments failed; trying again later")
            return []

    async def _retire_journal_periodically(self) -> None:
        while True:
            await asyncio.sleep(JOURNAL_RETIRE_EVERY_SECONDS)
            await self.retire_journal()

    # ================================================================== running
    async def submit(self, command: Command) -> Any:
        """Run one command through the sequencer; the result once it is durable."""
        return await self.sequencer.submit(command)

    async def settled(self) -> None:
        """Wait until everything the exchange's state shows now is durable (a read barrier).

        The in-memory state runs ahead of durability by the batches in flight (a fill is in the
        state before its journal record and block are on disk), and nothing may be reported
        before it is durable. The sequencer answers strictly in order, refusals included, so
        the answer to a command that is always refused (and so changes nothing and is never
        journaled) comes once every command before it is durable: reads of the state wait for
        it. Idle, that is one pass of the sequencer; busy, the batches in flight.
        """
        try:
            await self.sequencer.submit(_BARRIER)
        except VenueError as refusal:
            if refusal.code is not ErrorCode.UNKNOWN_PARTICIPANT:
                raise  # the venue failed or is stopping: not a barrier's answer

    async def admit(
        self,
        participant_id: str,
        name: str,
        segment: str | None,
        role: str,
        public_key: str | None = None,
    ) -> dict[str, Any]:
        """Operator action: admit a participant and issue its first API credentials.

        Returns the participant with ``key_id``, ``key_type``, ``secret`` and ``scopes``. With
        no ``public_key`` the key is an HMAC secret, shown this once (it is kept in the journal
        and snapshots inside the 0700 data directory, since the venue must recompute HMACs);
        with an Ed25519 ``public_key`` (64 hex) the venue keeps only that and ``secret`` is None.
        """
        key_id, credential, secret = _new_credential(public_key)
        result = await self.submit(
            AdmitParticipant(participant_id, name, segment, role, key_id, credential)
        )
        return {**result, **_key_result(key_id, credential, secret, role)}

    async def issue_key(self, participant_id: str, public_key: str | None = None) -> dict:
        """Operator or participant action: one more API key for ``participant_id`` (key
        rotation is issuing the new key, then revoking the old). Same result as ``admit``."""
        key_id, credential, secret = _new_credential(public_key)
        await self.submit(IssueApiKey(participant_id, key_id, credential))
        role = self.exchange.participants[participant_id].role.value
        return {"participant_id": participant_id, **_key_result(key_id, credential, secret, role)}

    async def revoke_key(self, participant_id: str, key_id: str) -> dict[str, Any]:
        """Revoke ``participant_id``'s key ``key_id``: it authenticates nothing from now on."""
        return await self.submit(RevokeApiKey(participant_id, key_id))

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
        if self._retire_task is not None:
            self._retire_task.cancel()
        await self.sequencer.stop()
        if not self.sequencer.failed.is_set():
            await self.retire_journal()  # what the final snapshot covers
        await asyncio.to_thread(self.journal.close)
        await asyncio.to_thread(self.ledger.close)


# Refused by the exchange's first check (no participant has an empty id), so it changes nothing.
_BARRIER = CancelAll("")


def _new_credential(public_key: str | None) -> tuple[str, str, str | None]:
    """``(key_id, stored credential, secret to show once or None)`` for a new API key."""
    key_id, secret = issue_api_key()
    if public_key is None:
        return key_id, secret, secret
    return key_id, ed25519_credential(public_key), None


def _key_result(key_id: str, credential: str, secret: str | None, role: str) -> dict[str, Any]:
    scopes = sorted(scope.value for scope in DEFAULT_SCOPES[Role(role)])
    kind = credential_kind(credential)
    return {"key_id": key_id, "key_type": kind, "secret": secret, "scopes": scopes}


__all__ = ["RecoveryError", "Venue", "VenueStartupError", "last_session_end"]
