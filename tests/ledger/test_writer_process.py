"""The ledger's writer process, end to end through the real child: signing, group commit,
key changes, segment rolls, the shared lock, a failing disk, protocol errors, a dead child.

Every wait is bounded: a report is read in a helper thread and a child that does not answer
in time is killed, so a broken child fails a test instead of hanging the suite.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import generate_private_key
from ledger.recordlog import (
    LogScanner,
    RecordLog,
    RecordLogFailedError,
    RecordLogLockedError,
    WriterPosition,
    WrittenRun,
    segment_file_name,
)
from ledger.writer_process import (
    BATCH_HEADER,
    COUNT,
    RUN_HEADER,
    WriterProcess,
    WriterProcessError,
)

SIGNATURE_BYTES = 64
WAIT_SECONDS = 10.0


@pytest.fixture
def writers() -> Iterator[list[WriterProcess]]:
    """Writer processes a test started; each is closed (killed if need be) afterwards."""
    started: list[WriterProcess] = []
    yield started
    for writer in started:
        writer.close(timeout=5)


def start_writer(position: WriterPosition, writers: list[WriterProcess]) -> WriterProcess:
    writer = WriterProcess(position)
    writers.append(writer)
    return writer


def read_report(writer: WriterProcess, timeout: float = WAIT_SECONDS) -> list[WrittenRun] | None:
    """``writer.read_report()``, bounded: a child silent for ``timeout`` s is killed."""
    outcome: list[tuple[bool, object]] = []

    def read() -> None:
        try:
            outcome.append((True, writer.read_report()))
        except BaseException as error:
            outcome.append((False, error))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        writer._process.kill()  # ends its output, which ends the read
        reader.join(timeout)
        pytest.fail(f"no report from writer process {writer.pid} within {timeout} s")
    succeeded, value = outcome[0]
    if not succeeded:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def hashes(encodings: list[bytes]) -> list[bytes]:
    return [sha256(encoding).digest() for encoding in encodings]


def check_signed(payload: bytes, encoding: bytes, key: Ed25519PrivateKey) -> None:
    """``payload`` is ``encoding || signature`` over SHA-256(encoding) by ``key``."""
    assert payload[:-SIGNATURE_BYTES] == encoding
    signature = payload[-SIGNATURE_BYTES:]
    assert len(signature) == SIGNATURE_BYTES
    key.public_key().verify(signature, sha256(encoding).digest())  # raises if it does not


def send_and_note(
    writer: WriterProcess, log: RecordLog, key: Ed25519PrivateKey, encodings: list[bytes]
) -> None:
    """Send one batch and index the records once the child reports them durable."""
    target = log.durable_count + len(encodings)
    writer.send(key, hashes(encodings), encodings)
    while log.durable_count < target:
        runs = read_report(writer)
        assert runs, f"the writer process stopped reporting: {runs!r}"
        for run in runs:
            log.note_written(run)
    assert log.durable_count == target


def wait_until_stopped(pid: int) -> None:
    """Bounded poll until ``pid`` is in the stopped state (after SIGSTOP)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.005)
    pytest.fail(f"process {pid} did not stop")


def test_batches_are_signed_appended_reported_and_durable_across_segments(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    limit = 2048
    directory = tmp_path / "blocks"
    log = RecordLog.open(directory, segment_max_bytes=limit)
    earlier = [b"genesis", b"the second block, appended by the log's own writer thread"]
    for handle in log.append_many(earlier):
        handle.result(5)
    position = log.detach_writer()
    assert position.next_record_number == 2
    writer = start_writer(position, writers)

    first_key, second_key = generate_private_key(), generate_private_key()
    rng = random.Random(2024)
    batches: list[tuple[Ed25519PrivateKey, list[bytes]]] = []
    for index in range(14):
        # The key changes after batch 4 (a K message) and changes back after batch 9.
        key = second_key if 5 <= index < 10 else first_key
        count = rng.randrange(1, 30)
        batches.append((key, [rng.randbytes(rng.randrange(0, 300)) for _ in range(count)]))
    batches[7][1].insert(1, rng.randbytes(3 * limit))  # larger than a segment: alone in one
    batches[11][1].insert(0, b"")  # an empty encoding is still a record: just its signature

    boundaries = set()  # record counts at which a batch ends
    total = len(earlier)
    for key, encodings in batches:
        writer.send(key, hashes(encodings), encodings)
        total += len(encodings)
        boundaries.add(total)

    reported = len(earlier)
    runs_seen: list[WrittenRun] = []
    while reported < total:
        runs = read_report(writer)
        assert runs, f"the writer process stopped reporting at record {reported}: {runs!r}"
        for run in runs:
            log.note_written(run)
            runs_seen.append(run)
            reported += len(run.offsets)
        assert reported in boundaries  # a batch is never split between two reports
        assert log.durable_count == log.appended_count == reported
    assert reported == total

    expected: list[tuple[Ed25519PrivateKey, bytes]] = [
        (key, encoding) for key, encodings in batches for encoding in encodings
    ]
    records = list(log.records())
    assert [number for number, _ in records] == list(range(total))
    assert [payload for _, payload in records[:2]] == earlier
    for (number, payload), (key, encoding) in zip(records[2:], expected, strict=True):
        check_signed(payload, encoding, key)
        other = second_key if key is first_key else first_key
        with pytest.raises(InvalidSignature):
            other.public_key().verify(payload[-SIGNATURE_BYTES:], sha256(encoding).digest())
        assert log.read(number) == payload
    assert sum(key is second_key for key, _ in expected) == sum(
        len(encodings) for _, encodings in batches[5:10]
    )

    # Segments rolled at the limit; one holding more than the limit holds one record only.
    per_segment = Counter(record.path for record in LogScanner(directory))
    files = sorted(directory.glob("*.seg"))
    assert len(files) >= 10
    first = 0
    for path in files:
        assert path.name == segment_file_name(first)
        assert path.stat().st_size <= limit or per_segment[str(path)] == 1
        first += per_segment[str(path)]
    assert first == total
    last_runs = {run.segment_first: run for run in runs_seen}
    for segment_first, run in last_runs.items():
        assert run.size == (directory / segment_file_name(segment_first)).stat().st_size

    # The child inherited the lock: the log stays locked until it has gone too.
    log.close()
    with pytest.raises(RecordLogLockedError):
        RecordLog.open(directory, segment_max_bytes=limit)
    writer.finish_input()
    assert read_report(writer) is None  # end of output: it committed everything and exited
    assert writer.close() == 0
    with RecordLog.open(directory, segment_max_bytes=limit) as reopened:
        assert reopened.recovery.truncated_bytes == 0
        assert list(reopened.records()) == records


def test_a_new_writer_process_continues_where_the_last_one_stopped(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    key = generate_private_key()
    rng = random.Random(7)
    sent: list[bytes] = []
    for session in range(3):
        with RecordLog.open(tmp_path, segment_max_bytes=512, lock_wait_seconds=5) as log:
            assert log.durable_count == len(sent)
            writer = start_writer(log.detach_writer(), writers)
            for _ in range(3):
                encodings = [rng.randbytes(rng.randrange(1, 200)) for _ in range(5 + session)]
                send_and_note(writer, log, key, encodings)
                sent += encodings
            writer.finish_input()
            assert read_report(writer) is None
            assert writer.close() == 0
            for (_, payload), encoding in zip(log.records(), sent, strict=True):
                check_signed(payload, encoding, key)
    assert len(list(tmp_path.glob("*.seg"))) > 3


def test_a_failing_disk_is_reported_and_the_child_exits_non_zero(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    directory = tmp_path / "blocks"
    directory.mkdir()
    (directory / segment_file_name(0)).symlink_to("/dev/full")  # every write: ENOSPC
    lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        position = WriterPosition(directory, 4096, 0, 16, 0, lock_fd)
        writer = start_writer(position, writers)
        encodings = [b"block one", b"block two"]
        writer.send(generate_private_key(), hashes(encodings), encodings)
        with pytest.raises(WriterProcessError) as caught:
            for _ in range(10):  # reports before the error can only say "nothing durable"
                runs = read_report(writer)
                assert runs == [], f"expected the failure to be reported, got {runs!r}"
        message = str(caught.value)
        assert message.startswith("ledger writer process failed: ")
        assert "No space left on device" in message
        assert read_report(writer) is None  # it exits after reporting
        assert writer.close() == 1
    finally:
        os.close(lock_fd)


def test_a_child_failure_fed_to_fail_detached_fails_the_log_and_its_waiters(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    # What the ledger does with a failure: the log fails and its waiters with it.
    key = generate_private_key()
    log = RecordLog.open(tmp_path / "blocks", segment_max_bytes=4096)
    try:
        writer = start_writer(log.detach_writer(), writers)
        send_and_note(writer, log, key, [b"durable"])
        writer._process.stdin.write(b"Z")  # type: ignore[union-attr]
        with pytest.raises(WriterProcessError) as caught:
            read_report(writer)
        failure = log.fail_detached(caught.value)
        with pytest.raises(RecordLogFailedError) as waited:
            log.wait_durable(2, timeout=5)
        assert waited.value is failure and waited.value.__cause__ is caught.value
        assert log.read(0)[:-SIGNATURE_BYTES] == b"durable"
        assert writer.close() == 2
    finally:
        log.close()


def raw_batch(encodings: list[bytes]) -> bytes:
    """A ``B`` message as ``WriterProcess.send`` frames it (without a key)."""
    lengths = [len(encoding) for encoding in encodings]
    return b"".join(
        [
            b"B" + BATCH_HEADER.pack(len(lengths), sum(lengths)),
            struct.pack(f"<{len(lengths)}I", *lengths),
            *hashes(encodings),
            *encodings,
        ]
    )


@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        (b"Xthis is not the protocol", "ValueError: unknown message b'X'"),
        (raw_batch([b"unsigned"]), "ValueError: a batch arrived before any key"),
        (b"K" + bytes(32) + raw_batch([b"cut"])[:-2], "input ended inside a message"),
    ],
    ids=["unknown-message", "batch-before-key", "truncated-batch"],
)
def test_a_protocol_error_is_reported_and_the_child_exits_non_zero(
    tmp_path: Path, writers: list[WriterProcess], garbage: bytes, problem: str
) -> None:
    log = RecordLog.open(tmp_path, segment_max_bytes=4096)
    try:
        log.append_and_wait(b"before", timeout=5)
        writer = start_writer(log.detach_writer(), writers)
        stdin = writer._process.stdin
        assert stdin is not None
        stdin.write(garbage)
        writer.finish_input()  # for the truncated batch: input ends inside the message
        with pytest.raises(WriterProcessError) as caught:
            read_report(writer)
        assert problem in str(caught.value)
        assert read_report(writer) is None
        assert writer.close() == 2
        assert log.durable_count == 1
    finally:
        log.close()
    with RecordLog.open(tmp_path) as reopened:  # nothing was written, the lock is free
        assert [payload for _, payload in reopened.records()] == [b"before"]


def test_a_protocol_error_after_good_batches_keeps_what_was_reported(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    key = generate_private_key()
    log = RecordLog.open(tmp_path, segment_max_bytes=4096)
    try:
        writer = start_writer(log.detach_writer(), writers)
        good = [b"first", b"second", b"third"]
        send_and_note(writer, log, key, good)
        writer._process.stdin.write(b"?")  # type: ignore[union-attr]
        with pytest.raises(WriterProcessError, match="unknown message b'\\?'"):
            read_report(writer)
        assert writer.close() == 2
        for number, encoding in enumerate(good):
            check_signed(log.read(number), encoding, key)
    finally:
        log.close()
    with RecordLog.open(tmp_path) as reopened:
        assert reopened.durable_count == 3


def test_a_killed_child_ends_its_output_instead_of_hanging_the_reader(
    tmp_path: Path, writers: list[WriterProcess]
) -> None:
    key = generate_private_key()
    log = RecordLog.open(tmp_path, segment_max_bytes=4096)
    log.append_and_wait(b"before", timeout=5)
    writer = start_writer(log.detach_writer(), writers)
    send_and_note(writer, log, key, [b"one", b"two"])
    durable = log.durable_count
    os.kill(writer.pid, signal.SIGSTOP)
    wait_until_stopped(writer.pid)
    writer.send(key, hashes([b"never written"]), [b"never written"])  # waits in the pipe
    os.kill(writer.pid, signal.SIGKILL)

    started = time.monotonic()
    assert read_report(writer) is None  # its output ended between two reports
    assert time.monotonic() - started < WAIT_SECONDS
    ended = writer.ended()
    assert ended == f"ledger writer process {writer.pid} ended (exit status -9)"
    failure = log.fail_detached(WriterProcessError(ended))
    with pytest.raises(RecordLogFailedError, match="exit status -9"):
        log.wait_durable(durable + 1, timeout=5)
    assert log.failure is failure and log.durable_count == durable
    writer.finish_input()  # the pipe is broken: nothing raised
    assert writer.close() == -signal.SIGKILL
    log.close()
    with RecordLog.open(tmp_path) as reopened:  # the lock died with the child
        assert reopened.durable_count == durable
        assert reopened.read(0) == b"before"
        check_signed(reopened.read(2), b"two", key)


def cut_output(writer: WriterProcess, data: bytes) -> None:
    """Kill the child and make what the parent reads next ``data`` then end of output: a
    report cut short (a death mid-report cannot be timed from a test) or a corrupt one."""
    writer._process.kill()
    writer._process.wait(WAIT_SECONDS)
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    assert writer._process.stdout is not None
    writer._process.stdout.close()
    writer._process.stdout = open(read_end, "rb", buffering=0)  # noqa: SIM115


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (b"D", "ended (exit status -9)"),
        (b"D" + COUNT.pack(1) + RUN_HEADER.pack(0, 100, 2) + bytes(12), "exit status -9"),
        (b"E" + COUNT.pack(40) + b"OSError: cut", "ended (exit status -9)"),
        (b"Q", "unknown report b'Q'"),
    ],
    ids=["kind-only", "offsets-cut", "message-cut", "unknown-kind"],
)
def test_a_short_or_unknown_report_is_an_error_not_a_partial_result(
    tmp_path: Path, writers: list[WriterProcess], output: bytes, problem: str
) -> None:
    with RecordLog.open(tmp_path) as log:
        writer = start_writer(log.detach_writer(), writers)
        cut_output(writer, output)
        with pytest.raises(WriterProcessError) as caught:
            read_report(writer)
        assert problem in str(caught.value)
        assert writer.close() == -signal.SIGKILL
