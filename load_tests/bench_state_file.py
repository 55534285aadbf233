"""The ledger state file's save cost at a large ledger: rewritten whole against appended to.

Method: a synthetic chain of ``--blocks`` blocks (random leaf hashes, one fill in two with a
14-character trade id, 200 balances), then, in the same run and on the same disk, the two ways
``Ledger._save_state`` can save it: ``write_state_file`` (the whole file: what every save did
before the file was appended to, and what a compaction still does) and ``append_state_file``
(one delta: the ``--since`` blocks since the previous save, 50,000 being the ledger's
``state_every_blocks``). Both write in paced pieces (``STATE_PIECE_BYTES``, a fdatasync and a
``STATE_PAUSE_SECONDS`` pause each), so wall time includes those pauses; bytes written is the
figure that does not depend on the machine. Then opening's read (``decode_state_file``) of the
file with the delta. Median of ``--runs``.

    .venv/bin/python load_tests/bench_state_file.py --blocks 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from array import array
from pathlib import Path

from ledger import state_file
from ledger.keys import generate_private_key


def chain(blocks: int, seed: int) -> state_file.LedgerState:
    generator = random.Random(seed)
    trades = blocks // 2
    return state_file.LedgerState(
        size=blocks,
        last_hash=generator.randbytes(32),
        last_timestamp_ns=1_764_158_400_000_000_000,
        key_in_force=generator.randbytes(8),
        key_starts=[1],
        balances={(f"P-{n:04d}", "CNY" if n % 2 else "IPABS-2025-1-A"): n for n in range(200)},
        trade_ids=[f"T{n:013d}" for n in range(trades)],
        trade_heights=array("Q", range(1, 2 * trades, 2)),
        leaf_hashes=bytearray(generator.randbytes(32 * blocks)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--since", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    mac_key = state_file.state_mac_key(generate_private_key())
    full = chain(args.blocks, args.seed)
    earlier_size = args.blocks - args.since
    earlier_trades = sum(1 for height in full.trade_heights if height < earlier_size)
    earlier = state_file.LedgerState(
        **{**{name: getattr(full, name) for name in full.__slots__}, "size": earlier_size}
    )
    whole_seconds, append_seconds, read_seconds = [], [], []
    whole_bytes = append_bytes = 0
    with tempfile.TemporaryDirectory(dir=".") as scratch:
        directory = Path(scratch)
        path = directory / state_file.STATE_FILE_NAME
        for _ in range(args.runs):
            started = time.perf_counter()
            state_file.write_state_file(directory, full, mac_key, len(full.trade_ids))
            whole_seconds.append(time.perf_counter() - started)
            whole_bytes = path.stat().st_size
            tail = state_file.write_state_file(directory, earlier, mac_key, earlier_trades)
            before = path.stat().st_size
            started = time.perf_counter()
            state_file.append_state_file(directory, tail, full, mac_key, len(full.trade_ids))
            append_seconds.append(time.perf_counter() - started)
            append_bytes = path.stat().st_size - before
            started = time.perf_counter()
            state, _tail = state_file.decode_state_file(path.read_bytes(), mac_key)
            read_seconds.append(time.perf_counter() - started)
            assert state.size == args.blocks and len(state.trade_ids) == len(full.trade_ids)
    print(
        f"RESULT blocks={args.blocks} since={args.since} "
        f"whole_s={statistics.median(whole_seconds):.3f} whole_mb={whole_bytes / 1e6:.1f} "
        f"append_s={statistics.median(append_seconds):.3f} append_mb={append_bytes / 1e6:.2f} "
        f"read_s={statistics.median(read_seconds):.3f} load={os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
