"""Restart benchmark: how long does `Venue.open` take on a venue with 100,000 resting orders and
100,000 fills?

Method. A data directory is built with the real components -- the deterministic ``Exchange``,
the journal ``RecordLog``, the ``Ledger`` (signed, fsynced blocks) and ``write_snapshot`` -- fed
synchronously (the asyncio sequencer would only add waiting, not different bytes):

1. the demo seed, plus unit deposits so the market makers can offer enough;
2. ``--resting`` non-crossing GTC limit orders spread over the price band (both sides);
3. ``--fills`` crossing pairs (a 10-unit offer, then a bid that lifts it): one fill each.

A snapshot is written after step 2 and again every ``--snapshot-every`` commands, exactly as
the sequencer does (after the journal and ledger are durable), so the restart must replay the
journal tail since the last snapshot -- the worst case is ``snapshot-every`` commands. The timed
part is ``Venue.open`` (ledger scan, snapshot load, journal replay, consistency checks) from a cold
process, and the same once more with no snapshot at all for comparison. The target is 5 s.

    python load_tests/bench_restart.py            # defaults: 100000 resting, 100000 fills

Last line: ``RESULT restart_s=<float> resting=<int> fills=<int> replayed=<int>``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.keys import generate_private_key, save_private_key  # noqa: E402
from ledger.ledger import Ledger  # noqa: E402
from ledger.recordlog import RecordLog  # noqa: E402
from venue.core.commands import Deposit, PlaceOrder  # noqa: E402
from venue.core.exchange import Exchange  # noqa: E402
from venue.core.journal import encode_record  # noqa: E402
from venue.core.snapshots import write_snapshot  # noqa: E402
from venue.domain import demo  # noqa: E402
from venue.domain.pricing import FeeSchedule  # noqa: E402
from venue.service import LEDGER_ORIGIN  # noqa: E402

SYMBOL = "IPABS-2025-1-A"
START_TS = 1_795_665_600_000_000_000  # 2026-11-26 10:00 CST


class Builder:
    """Feeds commands through the exchange into the journal and ledger, like the sequencer."""

    def __init__(self, data_dir: Path, snapshot_every: int) -> None:
        (data_dir / "keys").mkdir(parents=True, mode=0o700)
        key = generate_private_key()
        save_private_key(key, data_dir / "keys" / "ledger_ed25519.key")
        self.data_dir = data_dir
        self.ledger = Ledger.open(data_dir / "ledger", key, origin=LEDGER_ORIGIN)
        self.journal = RecordLog.open(data_dir / "journal")
        self.exchange = Exchange(FeeSchedule.from_wire(demo.FEE_SCHEDULE))
        self.snapshot_every = snapshot_every
        self.since_snapshot = 0
        self.ts = START_TS
        self.last_journal = None
        self.last_block = None

    def apply(self, command) -> dict:
        self.ts += 1_000
        outcome = self.exchange.apply(command, self.ts)
        self.last_journal = self.journal.append(encode_record(outcome.seq, self.ts, command))
        for entry in outcome.ledger_entries:
            self.last_block = self.ledger.append(entry.kind, entry.payload, entry.deltas)
        self.since_snapshot += 1
        if self.since_snapshot >= self.snapshot_every:
            self.snapshot()
        return outcome.result

    def drain(self) -> None:
        if self.last_journal is not None:
            self.last_journal.result()
        if self.last_block is not None:
            self.last_block.result()

    def snapshot(self) -> None:
        self.drain()
        state = self.exchange.snapshot()
        state["ledger_blocks"] = self.ledger.height + 1
        write_snapshot(self.data_dir / "snapshots", self.exchange.seq, state)
        self.since_snapshot = 0

    def close(self) -> None:
        self.drain()
        self.journal.close()
        self.ledger.close()


def build(data_dir: Path, resting: int, fills: int, snapshot_every: int, seed: int) -> dict:
    from tests.venue.core.helpers import demo_setup_commands

    rng = random.Random(seed)
    builder = Builder(data_dir, snapshot_every)
    started = time.perf_counter()
    for command in demo_setup_commands():
        builder.apply(command)
    for maker in ("P-MM1", "P-MM2"):
        builder.apply(Deposit(maker, SYMBOL, 10 * (resting + fills)))
        builder.apply(Deposit(maker, "CNY", 10**13))
    instrument = builder.exchange.instruments[SYMBOL]
    lower, upper = instrument.band_edges()
    mid = instrument.reference_price
    for number in range(resting):
        side = "buy" if number % 2 else "sell"
        price = rng.randint(lower, mid - 1000) if side == "buy" else rng.randint(mid + 1000, upper)
        builder.apply(
            PlaceOrder(
                rng.choice(("P-MM1", "P-MM2")), f"r{number}", SYMBOL, side, "limit", price, 10
            )
        )
    builder.snapshot()
    # Shift the snapshot cadence so that the last snapshot falls snapshot_every - 1 commands
    # before the end: the worst-case journal tail a restart has to replay.
    builder.since_snapshot = (snapshot_every - 1 - 2 * fills) % snapshot_every
    for number in range(fills):
        seller, buyer = ("P-MM1", "P-MM2") if number % 2 else ("P-MM2", "P-MM1")
        price = mid + rng.randint(-500, 500)
        builder.apply(PlaceOrder(seller, f"fs{number}", SYMBOL, "sell", "limit", price, 10))
        report = builder.apply(PlaceOrder(buyer, f"fb{number}", SYMBOL, "buy", "limit", price, 10))
        assert report["ord_status"] == "filled", report
    builder.close()
    book = builder.exchange.books[SYMBOL]
    return {
        "resting": len(book),
        "fills": builder.exchange.next_trade_number - 1,
        "commands": builder.exchange.seq,
        "ledger_blocks": builder.ledger.height + 1,
        "build_s": round(time.perf_counter() - started, 1),
    }


RESTART_PROBE = """
import asyncio, json, sys, time
sys.path.insert(0, {root!r})
from venue.config import Config
from venue.service import Venue
async def main():
    started = time.perf_counter()
    venue = await Venue.open(Config(data_dir={data_dir!r}, seed_demo=False))
    seconds = time.perf_counter() - started
    recovery = dict(venue.recovery)
    recovery["resting"] = sum(len(book) for book in venue.exchange.books.values())
    recovery["fills"] = venue.exchange.next_trade_number - 1
    await venue.sequencer.stop(snapshot=False)
    venue.journal.close()
    venue.ledger.close()
    print(json.dumps({{"seconds": seconds, **recovery}}))
asyncio.run(main())
"""


def restart(data_dir: Path) -> dict:
    """Time ``Venue.open`` in a fresh interpreter (no warm caches from the build)."""
    probe = RESTART_PROBE.format(root=str(ROOT), data_dir=str(data_dir))
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resting", type=int, default=100_000)
    parser.add_argument("--fills", type=int, default=100_000)
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=10_000,
        help="the venue's default snapshot_every_commands",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="build into DIR and keep it (reused if it already exists)",
    )
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-restart-"))
    data_dir = workdir / "data"
    try:
        if not data_dir.exists():
            built = build(data_dir, args.resting, args.fills, args.snapshot_every, args.seed)
            print(f"built: {built}")
        timed = restart(data_dir)
        print(f"restart with snapshots: {timed}")
        if args.keep is None:
            for snapshot in (data_dir / "snapshots").iterdir():
                snapshot.unlink()
            full = restart(data_dir)
            print(f"restart replaying the whole journal (no snapshot): {full}")
        print(
            f"RESULT restart_s={timed['seconds']:.2f} resting={timed['resting']} "
            f"fills={timed['fills']} replayed={timed['replayed_commands']}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
