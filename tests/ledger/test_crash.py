"""Crash test: a writer process killed with SIGKILL loses no block it reported durable."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.audit import verify_ledger
from ledger.block import verify_block_signature
from ledger.keys import generate_private_key, save_private_key
from ledger.ledger import Ledger

REPOSITORY = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 3
ROUND_TIME_LIMIT_S = 20.0


def run_writer_until_killed(
    directory: Path, key_file: Path, round_number: int, rng: random.Random
) -> list[tuple[int, str]]:
    """Start the writer, let it report a random number of durable blocks, SIGKILL it.

    Returns every ``(height, trade_id)`` it printed, including lines still in the pipe.
    """
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory), str(key_file), str(round_number)],
        stdout=subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None
    kill_after_lines = rng.randrange(1, 600)
    kill_after_extra_s = rng.random() * 0.02  # then a random moment within the next 20 ms
    output = b""
    deadline = time.monotonic() + ROUND_TIME_LIMIT_S
    try:
        while output.count(b"\n") < kill_after_lines:
            assert time.monotonic() < deadline, "writer reported too few blocks in time"
            assert process.poll() is None, f"writer exited early: {process.returncode}"
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                output += os.read(process.stdout.fileno(), 65536)
        time.sleep(kill_after_extra_s)
    finally:
        process.send_signal(signal.SIGKILL)
        output += process.stdout.read()
        process.stdout.close()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    complete_lines = output.split(b"\n")[:-1]  # a line cut by the kill was never reported
    return [
        (int(height), trade_id.decode()) for height, trade_id in map(bytes.split, complete_lines)
    ]


@pytest.mark.slow
def test_sigkilled_writer_loses_no_block_it_reported_durable(tmp_path: Path) -> None:
    rng = random.Random(4242)
    key = generate_private_key()
    key_file = tmp_path / "keys" / "ledger_ed25519.key"
    save_private_key(key, key_file)
    directory = tmp_path / "ledger"
    reported: list[tuple[int, str]] = []
    for round_number in range(ROUNDS):
        printed = run_writer_until_killed(directory, key_file, round_number, rng)
        assert printed, "the writer reported nothing durable"
        assert [height for height, _ in printed] == sorted({height for height, _ in printed})
        reported += printed
        with Ledger.open(directory, key, signer="thread") as ledger:
            assert ledger.durable_count > max(height for height, _ in reported)
            for height, trade_id in reported:
                assert ledger.find_fill(trade_id) == height
                assert ledger.block(height).block.payload["trade_id"] == trade_id
            assert all(amount >= 0 for (account, _), amount in ledger.balances().items()
                       if not account.startswith("external:"))  # fmt: skip
            public_key = key.public_key()
            previous_hash = None
            for height in range(ledger.durable_count):
                signed = ledger.block(height)
                verify_block_signature(signed, public_key)
                assert previous_hash is None or signed.block.prev_hash == previous_hash
                previous_hash = signed.block_hash
        verify_with_audit_tool(directory)


def verify_with_audit_tool(ledger_directory: Path) -> None:
    """The full independent check: signatures, links, checkpoints, balances (venue-audit)."""
    result = verify_ledger(ledger_directory, workers=1)
    assert result.ok, f"venue-audit verification failed: {result.problem}"
