"""How many workers ``venue-audit verify`` should use, by ledger size (issue 14).

Builds ledgers of fill blocks of several sizes through the real ``Ledger`` (thread signer, the
same fill mix as ``bench_ledger.py``), then times ``verify_ledger`` on each with 1 worker
(inline) and with 2 worker processes, interleaved, ``--runs`` times each, and prints the median
blocks/s of each and the size of the block log in bytes. The default of ``verify --workers``
(``ledger.audit.verify.default_workers``) is chosen from these figures: below the crossover the
pool's start-up (forking, importing, pickling the first chunks) costs more than a second core
gains.

    .venv/bin/python load_tests/bench_verify_workers.py [--sizes 1000,3000,10000,30000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from ledger.audit import verify_ledger
from ledger.keys import generate_private_key
from ledger.ledger import BLOCKS_DIRECTORY, Ledger
from load_tests.bench_ledger import fill_payloads, fund


def build(directory: Path, fills: int) -> int:
    """A ledger of ``fills`` fill blocks (plus genesis and funding); its block log's bytes."""
    ledger = Ledger.open(directory, generate_private_key(), signer="thread")
    fund(ledger)
    handle = None
    for payload in fill_payloads(fills, 0, random.Random(14)):
        handle = ledger.append("fill", payload)
    if handle is not None:
        handle.result()
    ledger.close()
    return sum(path.stat().st_size for path in (directory / BLOCKS_DIRECTORY).glob("*.seg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,3000,10000,30000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        for fills in (int(size) for size in args.sizes.split(",")):
            directory = Path(scratch) / f"ledger-{fills}"
            size_bytes = build(directory, fills)
            rates: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.runs):
                for workers in (1, 2):
                    started = time.perf_counter()
                    result = verify_ledger(directory, workers=workers)
                    elapsed = time.perf_counter() - started
                    assert result.ok, result.problem
                    rates[workers].append(result.blocks / elapsed)
            one, two = (statistics.median(rates[workers]) for workers in (1, 2))
            print(
                f"RESULT blocks={result.blocks} bytes={size_bytes} "
                f"workers1_blocks_s={one:.0f} workers2_blocks_s={two:.0f} ratio={two / one:.2f}"
            )


if __name__ == "__main__":
    main()
