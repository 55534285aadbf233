"""First start is all or nothing: a kill at any moment of the demo seeding leaves either no
venue (the next start seeds it whole) or a fully seeded one, never a half-seeded venue that says
"ready" without its credentials, participants or funding."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.audit import verify_ledger
from tests.venue.core.helpers import venue_config
from venue.domain import demo
from venue.service import STAGING, STAGING_COMPLETE, Venue, VenueStartupError

ROOT = Path(__file__).resolve().parents[2]
# listings, admissions (the deal's servicer too), the deal, the servicer's cash for the year,
# each period's report and distribution, the funding
SEED_COMMANDS = (
    len(demo.INSTRUMENTS) + len(demo.PARTICIPANTS) + 1 + 2 + 2 * demo.HISTORY_PERIODS
    + len(demo.FUNDING)
)  # fmt: skip

# Run in a child: open (first start, seeding) a venue in DATA_DIR and SIGKILL itself at the
# named moment: after the Nth seed command is acknowledged, after the Nth entry of the finished
# seed is renamed into DATA_DIR, or once the staging's completion marker is removed (everything
# moved, the empty staging directory left). Exits 0 if that moment never came.
KILLER = """
import asyncio, os, signal, sys
from pathlib import Path
from tests.venue.core.helpers import venue_config
from venue.service import Venue

data_dir, moment, number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
count = 0

def tick():
    global count
    count += 1
    if count == number:
        os.kill(os.getpid(), signal.SIGKILL)

if moment == "command":
    submit = Venue.submit
    async def counting_submit(self, command):
        result = await submit(self, command)
        tick()
        return result
    Venue.submit = counting_submit
elif moment == "rename":
    rename = os.rename
    def counting_rename(src, dst, *args, **kwargs):
        rename(src, dst, *args, **kwargs)
        if Path(dst).parent == data_dir:
            tick()
    os.rename = counting_rename
elif moment == "unlink":
    unlink = os.unlink
    def counting_unlink(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if Path(path).name == "complete":
            tick()
    os.unlink = counting_unlink

async def main():
    venue = await Venue.open(venue_config(data_dir))
    await venue.close()

asyncio.run(main())
"""


def first_start_killed_at(data_dir: Path, moment: str, number: int) -> int:
    return subprocess.run(
        [sys.executable, "-c", KILLER, str(data_dir), moment, str(number)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    ).returncode


def assert_fully_seeded(data_dir: Path) -> None:
    """Reopen the venue: the whole demo is there exactly once, with its credentials file."""

    async def check() -> None:
        venue = await Venue.open(venue_config(data_dir))
        try:
            exchange = venue.exchange
            assert sorted(exchange.instruments) == sorted(i["symbol"] for i in demo.INSTRUMENTS)
            participants = (*demo.PARTICIPANTS, demo.SERVICER)
            participant_ids = sorted(p["participant_id"] for p in participants)
            assert sorted(exchange.participants) == participant_ids
            for participant_id, asset, amount in demo.FUNDING:  # funded once, not twice
                assert exchange.accounts.balances[(participant_id, asset)] == amount
            credentials_file = data_dir / "credentials.json"
            assert stat.S_IMODE(os.stat(credentials_file).st_mode) == 0o600
            credentials = json.loads(credentials_file.read_text())["participants"]
            assert sorted(c["participant_id"] for c in credentials) == participant_ids
            for entry in credentials:
                assert exchange.credentials[entry["key_id"]] == (
                    entry["participant_id"],
                    entry["secret"],
                )
            health = venue.health()
            assert health["status"] == "ok" and health["journal_commands"] >= SEED_COMMANDS
        finally:
            await venue.close()

    asyncio.run(check())
    assert not (data_dir / STAGING).exists()
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    result = verify_ledger(data_dir, workers=1)
    assert result.ok, result.problem


@pytest.mark.parametrize(
    ("moment", "number"),
    [
        ("command", 1),  # the first listing acknowledged
        ("command", 10),  # every participant admitted, the deal not listed, nobody funded
        ("command", 15),  # in the middle of the deal's year: period 2 reported, not distributed
        ("command", SEED_COMMANDS),  # every command acknowledged, no credentials file yet
        ("rename", 1),  # the seed complete, the first of its entries moved into place
        ("rename", 3),
        ("unlink", 1),  # every entry in place, the empty staging directory not yet removed
    ],
)
def test_a_kill_during_the_first_start_never_leaves_a_half_seeded_venue(
    tmp_path: Path, moment: str, number: int
) -> None:
    data_dir = tmp_path / "data"
    assert first_start_killed_at(data_dir, moment, number) == -signal.SIGKILL
    assert_fully_seeded(data_dir)


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02])
def test_a_kill_from_outside_once_the_seeding_has_journaled_something(
    tmp_path: Path, delay: float
) -> None:
    """SIGKILL from outside, ``delay`` seconds after the first seed command is in a journal
    segment (past its 16-byte header)."""
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(data_dir), "never", "0"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            segments = data_dir.glob("**/journal/*.seg")
            if any(segment.stat().st_size > 16 for segment in segments):
                break
            time.sleep(0.0005)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert_fully_seeded(data_dir)


def test_a_finished_seed_is_never_merged_into_a_directory_it_would_overwrite(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    assert first_start_killed_at(data_dir, "rename", 2) == -signal.SIGKILL
    staging = data_dir / STAGING
    assert (staging / STAGING_COMPLETE).exists()
    left = sorted(name for name in os.listdir(staging) if name != STAGING_COMPLETE)
    (data_dir / left[0]).mkdir()  # someone put something where the seed must go
    with pytest.raises(VenueStartupError, match="refusing to guess"):
        asyncio.run(Venue.open(venue_config(data_dir)))
    assert (staging / STAGING_COMPLETE).exists()  # left as found


def test_the_demo_is_seeded_only_into_an_empty_data_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"

    async def open_and_close(seed_demo: bool) -> int:
        venue = await Venue.open(venue_config(data_dir, seed_demo=seed_demo))
        try:
            return venue.exchange.seq
        finally:
            await venue.close()

    assert asyncio.run(open_and_close(False)) == 0
    with caplog.at_level(logging.WARNING, logger="venue.service"):
        assert asyncio.run(open_and_close(True)) == 0
    assert any("not seeding the demo" in record.getMessage() for record in caplog.records)
    assert not (data_dir / "credentials.json").exists()
