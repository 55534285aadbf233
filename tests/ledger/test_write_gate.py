"""The ledger's write gate: blocks appended with ``hold=True`` are accepted and signed at once but
reach the disk only once released; blocks never released are never written (the ledger closes
failed and reopens without them). The venue relies on this to sign a batch's blocks while its
journal fsyncs, without a block ever being durable before the command that made it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import generate_private_key
from ledger.ledger import Ledger, LedgerFailedError
from ledger.recordlog import RecordLog
from ledger.writer_process import WriterProcess
from tests.ledger.test_ledger import deposit, open_ledger

WAIT_SECONDS = 10.0
# How long a held block is given to (wrongly) reach the disk before the test looks: far longer
# than a write + fsync here (well under 1 ms), so a gate that leaks is caught.
LEAK_WINDOW_SECONDS = 0.3


def _deposits(first: int, count: int) -> list[tuple]:
    return [("deposit", deposit(f"P-{first + n:04d}", "CNY", 100 + n), None) for n in range(count)]


def _wait_durable(ledger: Ledger, size: int) -> BaseException | None:
    done = threading.Event()
    outcome: list[BaseException | None] = []

    def callback(error: BaseException | None) -> None:
        outcome.append(error)
        done.set()

    ledger.when_durable(size, callback)
    assert done.wait(WAIT_SECONDS), f"blocks below {size} not durable within {WAIT_SECONDS} s"
    return outcome[0]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.mark.parametrize("signer", ["thread", "process"])
def test_held_blocks_are_written_only_once_released(
    tmp_path: Path, key: Ed25519PrivateKey, signer: str
) -> None:
    with open_ledger(tmp_path / "ledger", key, signer=signer) as ledger:
        before = ledger.durable_count
        size = ledger.append_many(_deposits(0, 5), hold=True)
        assert size == before + 5 and ledger.height == size - 1  # accepted at once
        time.sleep(LEAK_WINDOW_SECONDS)
        assert ledger.durable_count == before, "a held block reached the disk"
        # Releasing part of them writes exactly that part.
        ledger.release(before + 2)
        assert _wait_durable(ledger, before + 2) is None
        time.sleep(LEAK_WINDOW_SECONDS)
        assert ledger.durable_count == before + 2
        ledger.release(size)
        assert _wait_durable(ledger, size) is None
        assert ledger.balance("P-0004", "CNY") == 104


@pytest.mark.parametrize("signer", ["thread", "process"])
def test_an_append_without_hold_releases_every_block_before_it(
    tmp_path: Path, key: Ed25519PrivateKey, signer: str
) -> None:
    with open_ledger(tmp_path / "ledger", key, signer=signer) as ledger:
        ledger.append_many(_deposits(0, 3), hold=True)
        size = ledger.append_many(_deposits(3, 1))
        assert _wait_durable(ledger, size) is None


@pytest.mark.parametrize("signer", ["thread", "process"])
def test_blocks_never_released_are_never_written(
    tmp_path: Path, key: Ed25519PrivateKey, signer: str
) -> None:
    directory = tmp_path / "ledger"
    ledger = open_ledger(directory, key, signer=signer)
    released = ledger.append_many(_deposits(0, 2), hold=True)
    ledger.release(released)
    assert _wait_durable(ledger, released) is None
    held = ledger.append_many(_deposits(2, 3), hold=True)
    outcome: list[BaseException | None] = []
    ledger.when_durable(held, outcome.append)
    ledger.close()  # must not wait for them, nor write them
    assert len(outcome) == 1 and isinstance(outcome[0], LedgerFailedError)
    assert "held back" in str(outcome[0].__cause__)
    with open_ledger(directory, key, signer=signer) as reopened:
        assert reopened.height + 1 == released
        assert reopened.balance("P-0001", "CNY") == 101
        assert reopened.balance("P-0002", "CNY") == 0


def test_the_writer_process_writes_only_what_the_gate_released(tmp_path: Path) -> None:
    """The child's side of the protocol: ``R`` limits what it commits; the rest is dropped
    when its input ends."""
    log = RecordLog.open(tmp_path / "log")
    writer = WriterProcess(log.detach_writer())
    key = generate_private_key()
    encodings = [b"block-%d" % n for n in range(4)]
    hashes = [bytes([n]) * 32 for n in range(4)]
    try:
        writer.send(key, hashes, encodings, release=2)  # four sent, two released
        runs = writer.read_report()
        assert runs is not None and sum(len(run.offsets) for run in runs) == 2
        writer.finish_input()
        assert writer.read_report() is None  # ended without writing the other two
    finally:
        assert writer.close(timeout=WAIT_SECONDS) == 0
        log.close()
    with RecordLog.open(tmp_path / "log") as reopened:
        assert reopened.durable_count == 2
        assert reopened.read(1).startswith(b"block-1")


def test_opening_waits_until_the_writer_process_has_started(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    """Its interpreter takes ~80 ms to start; a ledger that returned from open before that made
    the first block after every start wait for it."""
    with open_ledger(tmp_path / "ledger", key, signer="process") as ledger:
        writer = ledger._durable._writer
        assert writer is not None and writer.started.is_set()
        assert writer._process.poll() is None  # and it is running, not ended
