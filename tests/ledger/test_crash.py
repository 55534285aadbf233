"""Crash test: a writer process killed with SIGKILL loses no block it reported durable."""

from __future__ import annotations

import fcntl
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
from ledger.checkpoint import parse_checkpoint
from ledger.keys import generate_private_key, save_private_key
from ledger.ledger import BLOCKS_DIRECTORY, CHECKPOINTS_DIRECTORY, STATE_FILE_NAME, Ledger
from ledger.recordlog import LogScanner

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
    torn_rounds = 0
    for round_number in range(ROUNDS):
        printed = run_writer_until_killed(directory, key_file, round_number, rng)
        assert printed, "the writer reported nothing durable"
        assert [height for height, _ in printed] == sorted({height for height, _ in printed})
        reported += printed
        torn_rounds += tear_unacknowledged_tail(directory, reported[-1][0], rng)
        with Ledger.open(directory, key, signer="thread") as ledger:
            if round_number > 0:  # a state file from an earlier round or the killed writer
                assert ledger.opened_from_state > 0
            rebuilt = (ledger.durable_count, ledger.root(ledger.durable_count), ledger.balances())
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
        # Opening from the state file rebuilt exactly what scanning every block does.
        (directory / STATE_FILE_NAME).unlink()
        with Ledger.open(directory, key, signer="thread") as scanned:
            assert scanned.opened_from_state == 0
            assert (scanned.durable_count, scanned.root(scanned.durable_count),
                    scanned.balances()) == rebuilt  # fmt: skip
    print(f"{len(reported)} durable blocks reported; {torn_rounds} rounds ended in a torn record")


def tear_unacknowledged_tail(directory: Path, last_reported: int, rng: random.Random) -> bool:
    """Cut the block log at a random byte after everything known durable, as a power cut may.

    SIGKILL alone never tears a record (each batch is one ``write`` call, and the page cache
    outlives the process); a power cut can lose any suffix that was not fsynced. Known durable:
    every reported height and everything the newest checkpoint covers. Returns True if the cut
    fell inside a record (a torn tail for the next open to truncate).
    """
    wait_until_unlocked(directory / BLOCKS_DIRECTORY)  # the killed ledger's writer process is gone
    records = list(LogScanner(directory / BLOCKS_DIRECTORY))
    notes = [record.payload for record in LogScanner(directory / CHECKPOINTS_DIRECTORY)]
    covered = parse_checkpoint(notes[-1])[0].size if notes else 0
    keep = max(last_reported + 1, covered)
    if keep >= len(records):
        return False
    first_unacknowledged = records[keep]
    segment = Path(first_unacknowledged.path)
    if segment != max(segment.parent.glob("*.seg")):
        return False  # only the newest segment can hold an unsynced tail
    boundaries = {record.offset for record in records[keep:] if record.path == str(segment)}
    cut = rng.randrange(first_unacknowledged.offset, segment.stat().st_size)
    os.truncate(segment, cut)
    return cut not in boundaries


def wait_until_unlocked(log_directory: Path) -> None:
    """Wait (bounded) until nobody holds the log's lock: a killed venue's writer process
    finishes its last group commit and exits once it notices its parent is gone."""
    fd = os.open(log_directory / "LOCK", os.O_RDWR)
    try:
        for _ in range(500):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(0.01)
        raise AssertionError(f"{log_directory} is still locked 5 s after the kill")
    finally:
        os.close(fd)


def verify_with_audit_tool(ledger_directory: Path) -> None:
    """The full independent check: signatures, links, checkpoints, balances (venue-audit)."""
    result = verify_ledger(ledger_directory, workers=1)
    assert result.ok, f"venue-audit verification failed: {result.problem}"
