"""Crash-test driver: run a venue under a concurrent command stream until killed.

Usage: ``python -m tests.venue.core.crash_driver DATA_DIR SEED``. Prints ``{"ready": seq}`` once
the venue is open, then one JSON line per *acknowledged* command (flushed before the next), so
the parent knows exactly what the venue reported durable when it sends SIGKILL.

SIGTERM is a clean stop, as for ``venue serve``: no new commands, the ones in flight are answered,
the venue closes, ``{"stopped": seq}`` is printed and the driver exits 0.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from pathlib import Path

from tests.venue.core.helpers import venue_config
from venue.core.commands import CancelOrder, PlaceOrder
from venue.errors import VenueError
from venue.service import Venue

TRADERS = ["P-MM1", "P-MM2", "P-BRK1", "P-BRK2"]
SYMBOL = "IPABS-2025-1-A"
CONCURRENCY = 8


def emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(data_dir: Path, seed: int) -> None:
    config = venue_config(data_dir, snapshot_every_commands=150, checkpoint_every_ms=50)
    venue = await Venue.open(config)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    emit({"ready": venue.exchange.seq})
    rng = random.Random(seed)
    open_orders: dict[str, list[int]] = {trader: [] for trader in TRADERS}
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while not stopping.is_set():
            counter += 1
            trader = rng.choice(TRADERS)
            if open_orders[trader] and rng.random() < 0.3:
                order_id = open_orders[trader].pop(rng.randrange(len(open_orders[trader])))
                command = CancelOrder(trader, order_id)
            else:
                side = rng.choice(["buy", "sell"])
                price = 1_001_250 + rng.randint(-3, 3) * 250
                command = PlaceOrder(
                    trader,
                    f"s{seed}-{counter}",
                    SYMBOL,
                    side,
                    "limit",
                    price,
                    rng.randint(1, 20) * 10,
                )
            try:
                result = await venue.submit(command)
            except VenueError as exc:
                emit({"command": command.to_record(), "error": str(exc.code)})
                continue
            if isinstance(command, PlaceOrder) and result["ord_status"] in (
                "new",
                "partially_filled",
            ):
                open_orders[trader].append(result["order_id"])
            emit({"command": command.to_record(), "result": result})

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))  # returns once SIGTERMed
    await venue.close()
    emit({"stopped": venue.exchange.seq})


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
