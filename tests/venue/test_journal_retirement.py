"""Journal retirement (issue 11): segments wholly before the newest durable snapshot are archived
or deleted, a restart recovers exactly from the snapshot and the journal left, and a crash
between a snapshot and its retirement loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import venue.service
from ledger.audit import verify_ledger
from ledger.recordlog import RETIRED_FILE_NAME, LogScanner
from tests.venue.core.helpers import venue_config
from venue.config import ConfigError, load_config
from venue.core.commands import PlaceOrder
from venue.service import Venue

SYMBOL = "IPABS-2025-1-A"
SEGMENT_BYTES = 4096  # ~15 commands a segment
REPO = Path(__file__).resolve().parents[2]


def _orders(tag: str, count: int) -> list[PlaceOrder]:
    """Alternating sells and crossing buys (fills), and some that rest."""
    commands = []
    for n in range(count):
        side, participant = ("sell", "P-MM1") if n % 2 == 0 else ("buy", "P-BRK1")
        price = 1_000_000 if n % 3 else 990_000 + n
        commands.append(PlaceOrder(participant, f"{tag}{n}", SYMBOL, side, "limit", price, 10))
    return commands


def _fingerprint(open_venue: Venue) -> tuple:
    exchange = open_venue.exchange
    orders = sorted(
        (order_id, order.status, order.leaves_qty, order.cum_qty)
        for order_id, order in exchange.orders.items()
    )
    return exchange.seq, orders, open_venue.ledger.height, open_venue.ledger.balances()


def _segments(directory: Path) -> list[int]:
    return sorted(int(path.name[:20]) for path in directory.glob("*.seg"))


@pytest.mark.parametrize("retention", ["archive", "delete"])
def test_segments_before_the_newest_snapshot_retire_and_a_restart_recovers_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retention: str
) -> None:
    monkeypatch.setattr(venue.service, "JOURNAL_SEGMENT_MAX_BYTES", SEGMENT_BYTES)
    data_dir = tmp_path / "data"
    config = venue_config(data_dir, snapshot_every_commands=10, journal_retention=retention)

    async def trade_and_close() -> tuple:
        running = await Venue.open(config)
        try:
            for command in _orders("a", 150):
                await running.submit(command)
            await running.settled()
            return _fingerprint(running)
        finally:
            await running.close()  # final snapshot, then retirement

    before = asyncio.run(trade_and_close())
    journal, archive = data_dir / "journal", data_dir / "journal-archive"
    first = int((journal / RETIRED_FILE_NAME).read_text())
    assert first > 100  # nearly everything retired: the final snapshot covers it all
    assert _segments(journal)[0] == first
    if retention == "archive":
        archived = _segments(archive)
        assert archived[0] == 0 and len(archived) > 5
        numbers = [record.record_number for path in sorted(archive.glob("*.seg"))
                   for record in _scan_one(path)]  # fmt: skip
        assert numbers == list(range(first))  # every retired record, once, in order
    else:
        assert not archive.exists()

    async def reopen() -> tuple[tuple, dict, list]:
        running = await Venue.open(config)
        try:
            after = _fingerprint(running)
            recovery = dict(running.recovery)
            more = [await running.submit(command) for command in _orders("b", 4)]
            return after, recovery, more
        finally:
            await running.close()

    after, recovery, more = asyncio.run(reopen())
    assert after == before
    assert recovery["journal_first_record"] == first
    assert recovery["replayed_commands"] < first
    assert more[0]["order_id"] > max(order_id for order_id, *_ in before[1])
    assert verify_ledger(data_dir, workers=1).ok  # the ledger itself is complete


def _scan_one(path: Path) -> list:
    """The records of one archived segment file, read by the strict scanner."""
    alone = path.parent / f"scan-{path.name}"
    alone.mkdir()
    os.link(path, alone / path.name)
    if int(path.name[:20]):
        (alone / RETIRED_FILE_NAME).write_text(f"{int(path.name[:20])}\n")
    return list(LogScanner(alone))


DRIVER = """
import asyncio, json, os, signal, sys
from pathlib import Path
import venue.service
from tests.venue.core.helpers import venue_config
from tests.venue.test_journal_retirement import SEGMENT_BYTES, _orders
from venue.service import Venue

venue.service.JOURNAL_SEGMENT_MAX_BYTES = SEGMENT_BYTES

async def main():
    data_dir = Path(sys.argv[1])
    running = await Venue.open(venue_config(data_dir, snapshot_every_commands=10))
    acknowledged = []
    for command in _orders("k", 120):
        acknowledged.append((await running.submit(command))["order_id"])
    snapshots = data_dir / "snapshots"
    while not any(snapshots.glob("snapshot-*.json")):
        await asyncio.sleep(0.01)
    await running.sequencer._snapshot_task  # the newest snapshot is durable
    print(json.dumps({"acknowledged": acknowledged, "seq": running.exchange.seq,
                      "first_record": running.journal.first_record}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # before any retirement: the periodic one is a minute off

asyncio.run(main())
"""


def test_a_crash_between_a_snapshot_and_its_retirement_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert driver.returncode == -signal.SIGKILL, driver.stderr
    killed = json.loads(driver.stdout)
    # Snapshots were written since the last retirement (at opening) and cover whole segments
    # that are still there: the crash came between those snapshots and their retirement.
    segments_at_crash = _segments(data_dir / "journal")
    assert segments_at_crash[0] == killed["first_record"]
    newest = max(int(path.name[9:21]) for path in (data_dir / "snapshots").glob("snapshot-*"))
    assert len([first for first in segments_at_crash[1:] if first <= newest]) > 3

    async def restart() -> None:
        venue.service.JOURNAL_SEGMENT_MAX_BYTES = SEGMENT_BYTES
        running = await Venue.open(venue_config(data_dir, snapshot_every_commands=10))
        try:
            assert running.exchange.seq == killed["seq"]
            for order_id in killed["acknowledged"]:
                assert order_id in running.exchange.orders
            assert running.journal.first_record > killed["first_record"]  # retired at opening
        finally:
            await running.close()

    try:
        asyncio.run(restart())
    finally:
        venue.service.JOURNAL_SEGMENT_MAX_BYTES = venue.service.DEFAULT_SEGMENT_MAX_BYTES
    archived = _segments(data_dir / "journal-archive")
    assert archived[0] == 0 and set(segments_at_crash) - set(_segments(data_dir / "journal")) <= (
        set(archived)
    )


def test_journal_retention_is_a_checked_setting(tmp_path: Path) -> None:
    assert load_config(environ={}).journal_retention == "archive"
    environ = {"VENUE_JOURNAL_RETENTION": "delete"}
    assert load_config(environ=environ).journal_retention == "delete"
    with pytest.raises(ConfigError, match=r"journal_retention.*archive, delete"):
        load_config(environ={"VENUE_JOURNAL_RETENTION": "shred"})
