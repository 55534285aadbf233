"""Writer process for the crash test: appends fills forever, printing each durable one.

Usage: ``python crash_writer.py LEDGER_DIR KEY_FILE ROUND``. Prints ``<height> <trade_id>`` on
its own line (flushed) only after that block's handle reports it durable, in height order.
The test kills this process with SIGKILL at a random moment; nothing here handles that.
"""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path

from ledger.keys import load_private_key
from ledger.ledger import BlockHandle, Ledger

SYMBOL = "IPABS-2019-1-A"


def fill(round_number: int, sequence: int) -> dict[str, object]:
    return {
        "trade_id": f"R{round_number}-{sequence}",
        "instrument": SYMBOL,
        "price": 998_750,
        "qty": 1,
        "accrued": 0,
        "factor": 1_000_000,
        "settlement_amount": 100,
        "buyer_fee": 1,
        "seller_fee": 1,
        "maker_order_id": sequence,
        "taker_order_id": sequence + 1,
        "buyer": "P-BUY",
        "seller": "P-SELL",
        "buyer_segment": "interbank",
        "seller_segment": "exchange",
        "aggressor": "sell",
        "timestamp_ns": sequence,
    }


def main() -> None:
    directory, key_file, round_number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    # A state file every 100 blocks, so that kills also land during state saves.
    ledger = Ledger.open(
        directory,
        load_private_key(key_file),
        checkpoint_every_blocks=50,
        checkpoint_every_ms=20,
        state_every_blocks=100,
    )
    if ledger.height == 0:
        ledger.append("deposit", {"account": "P-BUY", "asset": "CNY", "amount": 10**15,
                                  "source": "external:bank"})  # fmt: skip
        ledger.append("deposit", {"account": "P-SELL", "asset": SYMBOL, "amount": 10**12,
                                  "source": "external:issuer"})  # fmt: skip
    durable: queue.Queue[tuple[BlockHandle, str]] = queue.Queue(maxsize=10_000)

    def report() -> None:
        while True:
            handle, trade_id = durable.get()
            handle.result()
            sys.stdout.write(f"{handle.height} {trade_id}\n")
            sys.stdout.flush()

    threading.Thread(target=report, daemon=True).start()
    sequence = 0
    while True:
        payload = fill(round_number, sequence)
        durable.put((ledger.append("fill", payload), str(payload["trade_id"])))
        sequence += 1


if __name__ == "__main__":
    main()
