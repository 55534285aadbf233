"""SIGKILL the venue at random moments under load; the restart must hold exactly what was acked.

Each round starts ``crash_driver`` on the same data directory, lets it acknowledge commands for a
random while, kills it with SIGKILL, then reopens the venue here and checks against everything
the driver printed as acknowledged. A reader thread takes the driver's output as it comes (a
pipe nobody reads fills at 64 KiB and blocks the driver, and a kill would land on an idle
venue), and each round asserts that acknowledgements were still arriving in the last
``BUSY_WINDOW`` seconds before the kill. After each restart: every acknowledged order exists
with at least the fills it was acknowledged with (and the same final status if it had ended),
every acknowledged cancel stuck, every acknowledged trade is on the ledger exactly once, the
ledger and the venue agree on every balance, the full ledger verifies, and sequence numbers
continue.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from ledger.audit import verify_ledger
from tests.venue.core.helpers import venue_config
from venue.core.commands import PlaceOrder
from venue.service import Venue

ROOT = Path(__file__).resolve().parents[3]
ROUNDS = 3
# The kill must land on a busy venue: at least BUSY_ACKS acknowledgements (answered commands,
# not refusals) read in the last BUSY_WINDOW seconds before it. Measured here: 200-300.
BUSY_WINDOW = 0.1
BUSY_ACKS = 10
BUSY_PATIENCE = 3.0  # how long past the planned moment the kill may wait for a busy venue


class DriverOutput:
    """Read a driver's output continuously in a thread, each line with the time it arrived."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, name="crash-driver-reader")
        self._thread.daemon = True
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append((time.monotonic(), line))

    def acks_since(self, moment: float) -> int:
        return sum(1 for at, line in list(self.lines) if at >= moment and '"result"' in line)

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the driver's output did not end"


def run_driver_until_killed(data_dir: Path, seed: int, run_seconds: float) -> list[dict]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.venue.core.crash_driver", str(data_dir), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = process.stdout.readline()
        assert ready.startswith('{"ready"'), f"driver did not start: {ready!r}"
        output = DriverOutput(process.stdout)
        time.sleep(run_seconds)
        # Kill at the first moment from here on when the venue is busy; a momentary stall of a
        # loaded machine only delays the kill, a venue that stays idle fails the test.
        give_up = time.monotonic() + BUSY_PATIENCE
        while (busy := output.acks_since(time.monotonic() - BUSY_WINDOW)) < BUSY_ACKS:
            if time.monotonic() > give_up or process.poll() is not None:
                break
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        output.join()
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
    assert busy >= BUSY_ACKS, (
        f"only {busy} acknowledgements in the {BUSY_WINDOW}s before the kill "
        f"({len(output.lines)} lines in all, {BUSY_PATIENCE}s of waiting for more): the SIGKILL "
        "landed on an idle venue"
    )
    lines = [line for _at, line in output.lines]
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # the kill cut the last line short: that command was never fully reported
    return [json.loads(line) for line in lines]


async def check_recovered(data_dir: Path, acknowledged: list[dict]) -> int:
    venue = await Venue.open(venue_config(data_dir, checkpoint_every_ms=50))
    try:
        exchange = venue.exchange
        exchange.validate()
        for line in acknowledged:
            if "result" not in line:
                continue
            command, result = line["command"], line["result"]
            order = exchange.orders[result["order_id"]]
            if command["type"] == "place_order":
                assert (
                    exchange.client_orders[(command["participant"], command["client_order_id"])]
                    == order.order_id
                )
                assert order.cum_qty >= result["cum_qty"]
                assert set(result["trade_ids"]) <= set(order.fills)
                if result["ord_status"] not in ("new", "partially_filled"):
                    assert order.status == result["ord_status"]
            else:  # an acknowledged cancel
                assert not order.is_open
        # every trade the venue knows is on the ledger exactly once, and nothing else is
        trades = Counter(tid for order in exchange.orders.values() for tid in order.fills)
        assert all(count == 2 for count in trades.values())  # maker side + taker side
        for trade_id in trades:
            assert venue.ledger.find_fill(trade_id) is not None, trade_id
        ledger_balances = {k: v for k, v in venue.ledger.balances().items() if v}
        venue_balances = {k: v for k, v in exchange.accounts.balances.items() if v}
        assert ledger_balances == venue_balances
        # sequence numbers continue where the journal left off
        seq_before = exchange.seq
        await venue.submit(
            PlaceOrder(
                "P-BRK1", f"after-{seq_before}", "IPABS-2025-1-A", "buy", "limit", 990_000, 10
            )
        )
        assert exchange.seq == seq_before + 1 == venue.journal.durable_count
        return exchange.seq
    finally:
        await venue.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    data_dir = tmp_path / "data"
    total_acknowledged = 0
    for round_number in range(ROUNDS):
        acknowledged = run_driver_until_killed(data_dir, round_number, rng.uniform(0.4, 1.5))
        total_acknowledged += sum(1 for line in acknowledged if "result" in line)
        asyncio.run(check_recovered(data_dir, acknowledged))
    assert total_acknowledged > 50, "the driver hardly ran: the test would prove nothing"
    result = verify_ledger(data_dir, workers=2)
    assert result.ok, result.problem
