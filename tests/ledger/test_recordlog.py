"""Record log: round trip, segments, index, group commit, fatal failures, crash recovery."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import random
import threading
import time
from array import array
from dataclasses import replace
from pathlib import Path

import pytest

from ledger.recordlog import (
    RECORD_HEADER,
    SEGMENT_HEADER,
    AppendHandle,
    LogScanner,
    RecordLog,
    RecordLogClosedError,
    RecordLogCorruptError,
    RecordLogError,
    RecordLogFailedError,
    RecordLogLockedError,
    RecordNotFoundError,
    SegmentWriter,
    WriterPosition,
    WrittenRun,
    accept_tail_loss,
    frame_record,
    segment_file_name,
)


def payloads(count: int, seed: int = 7) -> list[bytes]:
    """Deterministic payloads of varied length, including an empty one."""
    rng = random.Random(seed)
    return [b""] + [rng.randbytes(rng.randrange(1, 120)) for _ in range(count - 1)]


def write_log(directory: Path, items: list[bytes], **options: int) -> None:
    with RecordLog.open(directory, **options) as log:
        for handle in log.append_many(items):
            handle.result(5)


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def record_offsets(path: Path) -> list[int]:
    """Offsets of the records in one segment file, walking the framing by hand."""
    data = path.read_bytes()
    offsets, offset = [], SEGMENT_HEADER.size
    while offset < len(data):
        offsets.append(offset)
        (length, _) = RECORD_HEADER.unpack_from(data, offset)
        offset += RECORD_HEADER.size + length
    return offsets


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_round_trip_read_and_iterate_then_reopen(tmp_path: Path) -> None:
    items = payloads(300)
    with RecordLog.open(tmp_path) as log:
        handles = log.append_many(items[:100])
        handles += [log.append(item) for item in items[100:299]]
        assert log.append_and_wait(items[299], timeout=5) == 299
        assert [handle.result(5) for handle in handles] == list(range(299))
        assert [handle.record_number for handle in handles] == list(range(299))
        assert log.durable_count == 300
        assert [log.read(number) for number in range(300)] == items
        assert [payload for _, payload in log.records()] == items
        assert [number for number, _ in log.records(250, 260)] == list(range(250, 260))
    with RecordLog.open(tmp_path) as log:
        assert log.recovery.record_count == 300
        assert log.recovery.truncated_bytes == 0
        assert [payload for _, payload in log.records()] == items
        assert log.append_and_wait(b"after reopen", timeout=5) == 300


def test_segments_roll_at_the_size_limit_and_the_index_spans_them(tmp_path: Path) -> None:
    limit = 400
    items = payloads(200, seed=3)
    oversized = b"x" * 1000
    items[120] = oversized
    write_log(tmp_path, items, segment_max_bytes=limit)
    files = segment_files(tmp_path)
    assert len(files) > 10
    for path in files:
        offsets = record_offsets(path)
        assert path.stat().st_size <= limit or len(offsets) == 1
    # Names match the first record number each segment holds; together they are dense.
    first = 0
    for path in files:
        assert path.name == segment_file_name(first)
        first += len(record_offsets(path))
    assert first == len(items)
    with RecordLog.open(tmp_path, segment_max_bytes=limit) as log:
        order = list(range(len(items)))
        random.Random(1).shuffle(order)
        for number in order:
            assert log.read(number) == items[number]
        assert [payload for _, payload in log.records(100, 150)] == items[100:150]


def test_reading_a_record_that_is_not_durable_is_a_typed_error(tmp_path: Path) -> None:
    with RecordLog.open(tmp_path) as log:
        log.append_and_wait(b"one")
        with pytest.raises(RecordNotFoundError) as caught:
            log.read(1)
        assert caught.value.code == "recordlog.no_such_record"
        with pytest.raises(RecordNotFoundError):
            log.read(-1)


def test_group_commit_writes_and_fsyncs_once_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RecordLog.open(tmp_path)
    first_fsync_entered = threading.Event()
    release_first_fsync = threading.Event()
    calls = {"write": 0, "fsync": 0}
    real_write, real_fsync = os.write, os.fsync

    def counting_write(fd: int, data: bytes) -> int:
        calls["write"] += 1
        return real_write(fd, data)

    def gated_fsync(fd: int) -> None:
        calls["fsync"] += 1
        if calls["fsync"] == 1:
            first_fsync_entered.set()
            assert release_first_fsync.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(os, "fsync", gated_fsync)
    first = log.append(b"first")
    assert first_fsync_entered.wait(5)
    # While the first batch is being fsynced, 200 appends from 4 threads queue up.
    appended: list[tuple[AppendHandle, bytes]] = []
    lock = threading.Lock()

    def appender(index: int) -> None:
        for n in range(50):
            payload = f"{index}:{n}".encode()
            handle = log.append(payload)
            with lock:
                appended.append((handle, payload))

    threads = [threading.Thread(target=appender, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not any(handle.done() for handle, _ in appended)
    release_first_fsync.set()
    assert first.result(5) == 0
    numbers = sorted(handle.result(5) for handle, _ in appended)
    log.close()
    assert numbers == list(range(1, 201))
    assert calls == {"write": 2, "fsync": 2}
    with RecordLog.open(tmp_path) as reopened:
        by_number = dict(reopened.records())
    assert all(by_number[handle.record_number] == payload for handle, payload in appended)


def test_a_failed_fsync_is_fatal_for_pending_and_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RecordLog.open(tmp_path)
    assert log.append_and_wait(b"durable") == 0
    fsync_entered = threading.Event()
    release = threading.Event()

    def failing_fsync(fd: int) -> None:
        fsync_entered.set()
        assert release.wait(5)
        raise OSError(errno.EIO, "simulated disk error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    in_flight = log.append(b"in flight")
    assert fsync_entered.wait(5)
    queued = log.append(b"queued behind the failing batch")
    release.set()
    for handle in (in_flight, queued):
        error = handle.exception(5)
        assert isinstance(error, RecordLogFailedError)
        assert error.code == "recordlog.write_failed"
        assert isinstance(error.__cause__, OSError)
    with pytest.raises(RecordLogFailedError):
        log.append(b"after the failure")
    assert isinstance(log.failure, RecordLogFailedError)
    assert log.durable_count == 1
    assert log.read(0) == b"durable"
    log.close()
    monkeypatch.undo()
    with RecordLog.open(tmp_path) as reopened:
        # What was acknowledged is there; unacknowledged writes may or may not be.
        assert reopened.read(0) == b"durable"


def test_a_write_error_from_a_closed_descriptor_is_fatal(tmp_path: Path) -> None:
    log = RecordLog.open(tmp_path)
    log.append_and_wait(b"ok")
    os.close(log._segment_writer._fd)  # the descriptor vanishes under the writer
    handle = log.append(b"doomed")
    assert isinstance(handle.exception(5), RecordLogFailedError)
    with pytest.raises(RecordLogFailedError):
        log.append_and_wait(b"also doomed")
    log._segment_writer._fd = -1  # closed above; keep close() from closing a reused number
    log.close()


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    log = RecordLog.open(tmp_path)
    handle = log.append(b"written by close")
    log.close()
    assert handle.result(0) == 0
    with pytest.raises(RecordLogClosedError):
        log.append(b"late")
    log.close()


def test_a_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    with RecordLog.open(tmp_path), pytest.raises(RecordLogLockedError):
        RecordLog.open(tmp_path)
    with RecordLog.open(tmp_path):
        pass


def test_handles_work_with_asyncio(tmp_path: Path) -> None:
    with RecordLog.open(tmp_path) as log:

        async def append_two() -> list[int]:
            first = asyncio.wrap_future(log.append(b"a"))
            second = asyncio.wrap_future(log.append(b"b"))
            return [await first, await second]

        assert asyncio.run(append_two()) == [0, 1]


def test_torn_tail_at_every_byte_of_the_last_record_reopens_to_the_previous(
    tmp_path: Path,
) -> None:
    items = payloads(6, seed=11)
    items[-1] = bytes(range(60))
    write_log(tmp_path / "log", items)
    (segment,) = segment_files(tmp_path / "log")
    original = segment.read_bytes()
    last_offset = record_offsets(segment)[-1]
    assert len(original) == last_offset + RECORD_HEADER.size + 60
    for cut in range(last_offset + 1, len(original)):
        segment.write_bytes(original[:cut])
        with RecordLog.open(tmp_path / "log") as log:
            assert log.recovery.record_count == len(items) - 1
            assert log.recovery.truncated_bytes == cut - last_offset
            assert log.recovery.problem is not None and log.recovery.problem.is_torn_tail
            assert [payload for _, payload in log.records()] == items[:-1]
        assert segment.stat().st_size == last_offset
    # After recovery the log keeps working from the right number.
    with RecordLog.open(tmp_path / "log") as log:
        assert log.append_and_wait(b"next") == len(items) - 1


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    items = payloads(5, seed=5)
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    with segment.open("ab") as file:
        file.write(bytes(300))
    with RecordLog.open(tmp_path) as log:
        assert [payload for _, payload in log.records()] == items
        assert log.recovery.truncated_bytes == 300


def test_any_changed_byte_of_a_complete_last_record_is_refused_untouched(tmp_path: Path) -> None:
    """Issue 14: a last record whose whole length is present but whose checksum fails was
    complete on disk (it may have been acknowledged): corruption, not a torn write. Every byte
    of its frame is tried: length, checksum and payload."""
    items = payloads(5, seed=5)
    items[-1] = bytes(range(1, 61))  # no byte turns to zero when flipped with 0xFF
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    original = segment.read_bytes()
    last_offset = record_offsets(segment)[-1]
    for offset in range(last_offset, len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0xFF
        segment.write_bytes(bytes(damaged))
        with pytest.raises(RecordLogCorruptError) as caught:
            RecordLog.open(tmp_path)
        error = caught.value
        assert (error.path, error.offset, error.record_number) == (str(segment), last_offset, 4)
        assert f"venue-audit accept-loss {tmp_path} --record 4" in str(error), offset
        assert error.problem.at_tail and not error.problem.is_torn_tail
        assert segment.read_bytes() == bytes(damaged)  # nothing truncated
        scanner = LogScanner(tmp_path)
        assert [record.payload for record in scanner] == items[:4]
        assert scanner.problem is not None and not scanner.problem.is_torn_tail, offset
    segment.write_bytes(original)


def test_a_zeroed_sector_inside_the_last_record_is_a_torn_write(tmp_path: Path) -> None:
    """A crash loses whole sectors of the last write, which read back as zeros."""
    items = [*payloads(3), bytes(range(1, 256)) * 8]  # 2,040 bytes: spans several sectors
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    original = segment.read_bytes()
    last_offset = record_offsets(segment)[-1]
    sector = (last_offset // 512 + 2) * 512  # a whole sector inside the last record
    segment.write_bytes(original[:sector] + bytes(512) + original[sector + 512 :])
    with RecordLog.open(tmp_path) as log:
        assert log.recovery.problem is not None and log.recovery.problem.is_torn_tail
        assert [payload for _, payload in log.records()] == items[:3]
    assert segment.stat().st_size == last_offset


def test_accepting_the_loss_of_a_damaged_last_record_keeps_its_bytes(tmp_path: Path) -> None:
    items = payloads(6, seed=3)
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    last_offset = record_offsets(segment)[-1]
    flip_byte(segment, last_offset + RECORD_HEADER.size)
    damaged = segment.read_bytes()
    with pytest.raises(RecordLogError, match="damage is at record 5, not 4"):
        accept_tail_loss(tmp_path, 4)
    with RecordLog.open(tmp_path / "other") as held, pytest.raises(RecordLogLockedError):
        accept_tail_loss(held.directory, 0)
    assert segment.read_bytes() == damaged
    report = accept_tail_loss(tmp_path, 5)
    assert (report.record_count, report.truncated_bytes) == (5, len(damaged) - last_offset)
    kept = tmp_path / f"accepted-loss-{5:020d}.bin"
    assert kept.read_bytes() == damaged[last_offset:]
    assert kept.stat().st_mode & 0o777 == 0o600
    with RecordLog.open(tmp_path) as log:
        assert [payload for _, payload in log.records()] == items[:5]
        assert log.append_and_wait(b"after") == 5
    with pytest.raises(RecordLogError, match="intact"):
        accept_tail_loss(tmp_path, 6)


@pytest.mark.parametrize("where", ["torn", "mid_log"])
def test_accept_tail_loss_refuses_anything_but_damage_at_the_tail(
    tmp_path: Path, where: str
) -> None:
    items = payloads(8, seed=4)
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    offsets = record_offsets(segment)
    if where == "torn":  # a record cut short: opening truncates it by itself
        segment.write_bytes(segment.read_bytes()[: offsets[-1] + 5])
        number, reason = 7, "torn write"
    else:
        flip_byte(segment, offsets[3] + RECORD_HEADER.size)
        number, reason = 3, "valid records follow it"
    before = segment.read_bytes()
    with pytest.raises(RecordLogError, match=reason):
        accept_tail_loss(tmp_path, number)
    assert segment.read_bytes() == before
    assert not list(tmp_path.glob("accepted-loss-*"))


def test_a_torn_new_segment_header_is_rewritten(tmp_path: Path) -> None:
    items = payloads(20)
    write_log(tmp_path, items, segment_max_bytes=300)
    files = segment_files(tmp_path)
    next_first = sum(len(record_offsets(path)) for path in files)
    torn = tmp_path / segment_file_name(next_first)
    torn.write_bytes(SEGMENT_HEADER.pack(b"RLOGSEG1", next_first)[:5])
    with RecordLog.open(tmp_path, segment_max_bytes=300) as log:
        assert log.recovery.truncated_bytes == 5
        assert log.append_and_wait(b"lands in the rewritten segment") == next_first
    assert record_offsets(torn) == [SEGMENT_HEADER.size]


@pytest.mark.parametrize("region", ["length", "checksum", "payload"])
def test_corruption_before_the_tail_is_refused_with_its_location(
    tmp_path: Path, region: str
) -> None:
    items = payloads(12, seed=2)
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    damaged_number = 7
    offset = record_offsets(segment)[damaged_number]
    byte = {"length": offset, "checksum": offset + 4, "payload": offset + RECORD_HEADER.size}
    flip_byte(segment, byte[region])
    before = segment.read_bytes()
    with pytest.raises(RecordLogCorruptError) as caught:
        RecordLog.open(tmp_path)
    error = caught.value
    assert error.code == "recordlog.corrupt"
    assert (error.path, error.offset, error.record_number) == (str(segment), offset, 7)
    assert str(segment) in str(error) and f"offset {offset}" in str(error)
    assert segment.read_bytes() == before  # never silently repaired
    scanner = LogScanner(tmp_path)
    assert [record.payload for record in scanner] == items[:damaged_number]
    assert scanner.problem is not None
    assert (scanner.problem.offset, scanner.problem.record_number) == (offset, 7)
    assert not scanner.problem.is_torn_tail


def test_damage_at_the_end_of_an_earlier_segment_is_not_a_torn_tail(tmp_path: Path) -> None:
    items = payloads(40, seed=9)
    write_log(tmp_path, items, segment_max_bytes=300)
    first_segment = segment_files(tmp_path)[0]
    last_offset = record_offsets(first_segment)[-1]
    data = first_segment.read_bytes()
    first_segment.write_bytes(data[:-1])
    with pytest.raises(RecordLogCorruptError) as caught:
        RecordLog.open(tmp_path, segment_max_bytes=300)
    assert caught.value.offset == last_offset
    assert caught.value.path == str(first_segment)


def test_a_missing_segment_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, payloads(40), segment_max_bytes=300)
    files = segment_files(tmp_path)
    files[1].unlink()
    with pytest.raises(RecordLogCorruptError) as caught:
        RecordLog.open(tmp_path)
    assert caught.value.problem.kind == "segment_gap"


def test_scanner_is_read_only_and_reports_a_torn_tail(tmp_path: Path) -> None:
    items = payloads(10)
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    clean = LogScanner(tmp_path)
    scanned = list(clean)
    assert [record.payload for record in scanned] == items
    assert [record.record_number for record in scanned] == list(range(10))
    assert scanned[3].offset == record_offsets(segment)[3]
    assert clean.problem is None and clean.record_count == 10
    with segment.open("ab") as file:
        file.write(frame_record(b"torn")[:6])
    size = segment.stat().st_size
    torn = LogScanner(tmp_path)
    assert len(list(torn)) == 10
    assert torn.problem is not None and torn.problem.is_torn_tail
    assert torn.problem.kind == "record_header_short"
    assert segment.stat().st_size == size
    missing = LogScanner(tmp_path / "nope")
    assert list(missing) == [] and missing.problem is not None


def test_concurrent_appenders_get_dense_numbers_and_their_own_payloads(tmp_path: Path) -> None:
    with RecordLog.open(tmp_path, segment_max_bytes=4096) as log:
        results: dict[int, bytes] = {}
        lock = threading.Lock()

        def appender(index: int) -> None:
            for n in range(100):
                payload = f"thread {index} item {n}".encode()
                number = log.append(payload).result(5)
                with lock:
                    results[number] = payload

        threads = [threading.Thread(target=appender, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == list(range(400))
        assert all(log.read(number) == payload for number, payload in results.items())


def test_append_batch_reports_durability_once_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[tuple[int, int, object]] = []
    done = threading.Event()

    def on_done(first: int, count: int, error: object) -> None:
        reports.append((first, count, error))
        done.set()

    with RecordLog.open(tmp_path) as log:
        log.append_and_wait(b"zero")
        assert log.append_batch([b"one", b"two", b"three"], on_done) == 1
        assert done.wait(5)
        assert reports == [(1, 3, None)]
        assert [log.read(number) for number in (1, 2, 3)] == [b"one", b"two", b"three"]
        done.clear()

        def failing_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "simulated")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        log.append_batch([b"four"], on_done)
        assert done.wait(5)
        first, count, error = reports[-1]
        assert (first, count) == (4, 1) and isinstance(error, RecordLogFailedError)


def test_iteration_reads_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger import recordlog

    monkeypatch.setattr(recordlog, "READ_CHUNK_BYTES", 150)
    items = payloads(60, seed=4)
    items[30] = b"big" * 200  # larger than a whole chunk
    write_log(tmp_path, items, segment_max_bytes=1000)
    with RecordLog.open(tmp_path, segment_max_bytes=1000) as log:
        assert [payload for _, payload in log.records()] == items
        assert [number for number, _ in log.records(17, 41)] == list(range(17, 41))
        assert [payload for _, payload in log.records(29, 32)] == items[29:32]


def test_a_torn_tail_below_the_required_count_is_refused_untouched(tmp_path: Path) -> None:
    items = payloads(8)
    write_log(tmp_path, items)
    (segment,) = segment_files(tmp_path)
    last_offset = record_offsets(segment)[-1]
    segment.write_bytes(segment.read_bytes()[: last_offset + 3])
    torn = segment.read_bytes()
    with pytest.raises(RecordLogCorruptError) as caught:
        RecordLog.open(tmp_path, required_records=8)
    assert (caught.value.record_number, caught.value.offset) == (7, last_offset)
    assert segment.read_bytes() == torn
    with pytest.raises(RecordLogCorruptError) as missing:
        RecordLog.open(tmp_path, required_records=9)
    assert missing.value.problem.kind == "record_header_short"
    with RecordLog.open(tmp_path, required_records=7) as log:  # a real torn tail: truncated
        assert log.recovery.record_count == 7
    with pytest.raises(RecordLogCorruptError) as short:
        RecordLog.open(tmp_path, required_records=8)
    assert short.value.problem.kind == "records_missing"


# ---- AppendHandle: a Future whose condition and lists are created on first use -----------


def test_a_handle_behaves_as_a_future_for_waiters_callbacks_and_asyncio() -> None:
    waiting = AppendHandle(3)
    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(waiting.result(5)))
    waiter.start()
    early: list[int] = []
    waiting.add_done_callback(lambda done: early.append(done.result()))
    assert not waiting.done() and waiting.record_number == 3
    waiting.set_result(3)
    waiter.join(5)
    late: list[int] = []
    waiting.add_done_callback(lambda done: late.append(done.result()))
    assert results == [3] and early == [3] and late == [3]

    failing = AppendHandle(4)
    failing.set_exception(RecordLogFailedError("disk gone"))
    with pytest.raises(RecordLogFailedError):
        failing.result(1)

    pending = [AppendHandle(number) for number in range(5)]
    threading.Timer(0.01, lambda: [handle.set_result(0) for handle in pending]).start()
    done, not_done = concurrent.futures.wait(pending, timeout=5)
    assert len(done) == 5 and not not_done
    assert len(list(concurrent.futures.as_completed(pending, timeout=5))) == 5

    async def awaited() -> int:
        handle = AppendHandle(7)
        asyncio.get_running_loop().call_later(0.01, handle.set_result, 7)
        return await asyncio.wrap_future(handle)

    assert asyncio.run(awaited()) == 7


def first_uses(handle: AppendHandle, threads: int) -> list[object]:
    """Touch the handle's condition and waiter list from ``threads`` threads at once."""
    seen: list[object] = []
    barrier = threading.Barrier(threads)

    def first_use() -> None:
        barrier.wait(5)
        seen.append(handle._condition)
        seen.append(handle._waiters)

    workers = [threading.Thread(target=first_use) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    return seen


def test_a_handle_creates_one_condition_however_many_threads_reach_for_it() -> None:
    for _ in range(20):
        handle = AppendHandle(0)
        assert handle._lazy_condition is None  # nothing created until first use
        seen = first_uses(handle, 8)
        assert len(seen) == 16
        assert len({id(item) for item in seen[::2]}) == 1
        assert len({id(item) for item in seen[1::2]}) == 1


def test_a_handle_completed_unobserved_reports_its_outcome_later() -> None:
    done = AppendHandle(1)
    done.set_result(1)
    assert done._lazy_condition is None  # nobody was waiting: nothing was created
    with pytest.raises(concurrent.futures.InvalidStateError):
        done.set_result(2)
    assert done.done() and done.result(0) == 1
    called: list[int] = []
    done.add_done_callback(lambda handle: called.append(handle.result()))
    assert called == [1]
    failed = AppendHandle(2)
    failed.set_exception(RecordLogFailedError("disk gone"))
    assert isinstance(failed.exception(0), RecordLogFailedError)
    with pytest.raises(concurrent.futures.InvalidStateError):
        failed.set_result(2)
    cancelled = AppendHandle(3)
    assert cancelled.cancel()
    with pytest.raises(concurrent.futures.InvalidStateError):
        cancelled.set_result(3)


def test_completing_races_with_waiting_without_losing_a_wakeup() -> None:
    got: list[object] = []
    for attempt in range(200):
        handle = AppendHandle(attempt)
        waiter = threading.Thread(target=lambda handle=handle: got.append(handle.result(5)))
        waiter.start()
        handle.set_result(attempt)
        waiter.join(5)
    assert got == list(range(200))


# ---- a detached writer: appending handed to another process (ledger.writer_process) ------


def detached_log(
    directory: Path, items: list[bytes], limit: int
) -> tuple[RecordLog, WriterPosition]:
    """A log holding ``items`` whose writer is detached, and where its appending continues."""
    log = RecordLog.open(directory, segment_max_bytes=limit)
    for handle in log.append_many(items):
        handle.result(5)
    return log, log.detach_writer()


def writer_threads(directory: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"recordlog-writer:{directory.name}"]


def test_a_detached_log_refuses_appends_and_still_serves_reads(tmp_path: Path) -> None:
    items = payloads(30, seed=11)
    log, position = detached_log(tmp_path, items, 400)
    try:
        files = segment_files(tmp_path)
        assert len(files) > 1
        contents = [path.read_bytes() for path in files]
        assert position.directory == tmp_path
        assert position.segment_max_bytes == 400
        assert files[-1].name == segment_file_name(position.last_segment_first)
        assert position.last_segment_size == files[-1].stat().st_size
        assert position.next_record_number == 30
        assert os.fstat(position.lock_fd).st_ino == (tmp_path / "LOCK").stat().st_ino
        assert writer_threads(tmp_path) == []  # the writer thread has stopped

        attempts = {
            "append": lambda: log.append(b"late"),
            "append_many": lambda: log.append_many([b"late", b"later"]),
            "append_and_wait": lambda: log.append_and_wait(b"late", timeout=1),
            "append_batch": lambda: log.append_batch([b"late"], lambda *_: None),
        }
        for name, attempt in attempts.items():
            with pytest.raises(RecordLogError, match="written by another process") as caught:
                attempt()
            assert type(caught.value) is RecordLogError, name
        with pytest.raises(RecordLogError, match="written by another process"):
            log.detach_writer()  # only once
        assert log.appended_count == log.durable_count == 30
        assert log.failure is None
        assert [log.read(number) for number in range(30)] == items
        assert [payload for _, payload in log.records()] == items
        assert [number for number, _ in log.records(12, 19)] == list(range(12, 19))
        with pytest.raises(RecordNotFoundError):
            log.read(30)
        assert log.wait_durable(30, timeout=0)
        assert not log.wait_durable(31, timeout=0.05)
        assert [path.read_bytes() for path in segment_files(tmp_path)] == contents
    finally:
        log.close()
    with RecordLog.open(tmp_path, segment_max_bytes=400) as reopened:  # lock released
        assert [payload for _, payload in reopened.records()] == items
        assert reopened.append_and_wait(b"appendable again", timeout=5) == 30


def test_detach_refuses_records_queued_and_waits_for_the_batch_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RecordLog.open(tmp_path)
    assert log.append_and_wait(b"zero", timeout=5) == 0
    real_fsync = os.fsync
    entered = threading.Event()
    release = threading.Event()

    def gated_fsync(fd: int) -> None:
        entered.set()
        assert release.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", gated_fsync)
    in_flight = log.append(b"one")
    assert entered.wait(5)  # the writer has taken "one": only what comes next is queued
    queued = log.append(b"two")
    with pytest.raises(RecordLogError, match="records queued"):
        log.detach_writer()
    release.set()
    assert (in_flight.result(5), queued.result(5)) == (1, 2)
    assert log.append_and_wait(b"three", timeout=5) == 3  # the refusal changed nothing

    entered.clear()
    release.clear()
    last = log.append(b"four")
    assert entered.wait(5)
    positions: list[WriterPosition] = []
    detacher = threading.Thread(target=lambda: positions.append(log.detach_writer()))
    detacher.start()
    for _ in range(500):  # bounded: until detach_writer has marked the log detached
        if log._detached:
            break
        time.sleep(0.01)
    assert log._detached
    release.set()
    detacher.join(5)
    assert not detacher.is_alive()
    assert last.result(5) == 4  # the batch in flight was finished, not abandoned
    (position,) = positions
    (segment,) = segment_files(tmp_path)
    assert position.next_record_number == 5
    assert position.last_segment_size == segment.stat().st_size
    assert log.durable_count == 5
    monkeypatch.undo()
    log.close()
    with RecordLog.open(tmp_path) as reopened:
        assert [p for _, p in reopened.records()] == [b"zero", b"one", b"two", b"three", b"four"]


def test_a_segment_writer_continues_a_detached_log_across_segments(tmp_path: Path) -> None:
    limit = 300
    items = payloads(6, seed=21)
    log, position = detached_log(tmp_path, items, limit)
    first_segment = tmp_path / segment_file_name(position.last_segment_first)
    already = record_offsets(first_segment)
    rng = random.Random(5)
    batches = [
        [rng.randbytes(rng.randrange(0, 90)) for _ in range(rng.randrange(1, 12))]
        for _ in range(12)
    ]
    batches[4].insert(2, b"L" * 700)  # larger than a whole segment: it sits alone in one
    runs: list[WrittenRun] = []

    def on_durable(run: WrittenRun) -> None:
        runs.append(run)
        log.note_written(run)

    expected = list(items)
    writer = SegmentWriter(position)
    try:
        for batch in batches:
            writer.write([frame_record(payload) for payload in batch], on_durable)
            expected += batch
            assert log.durable_count == log.appended_count == len(expected)
            assert log.read(len(expected) - 1) == batch[-1]
    finally:
        writer.close()

    files = segment_files(tmp_path)
    assert len(files) >= 6
    assert sum(len(run.offsets) for run in runs) == len(expected) - len(items)
    # Each run is one write + fsync into one segment; together they are the segments' records.
    for path in files:
        first = int(path.name.removesuffix(".seg"))
        if first < position.last_segment_first:
            continue
        mine = [run for run in runs if run.segment_first == first]
        offsets = [offset for run in mine for offset in run.offsets]
        if path == first_segment:
            assert already + offsets == record_offsets(path)
        else:
            assert mine and offsets == record_offsets(path), path.name
        assert (mine[-1].size if mine else position.last_segment_size) == path.stat().st_size
        assert path.stat().st_size <= limit or len(record_offsets(path)) == 1
    assert [log.read(number) for number in range(len(expected))] == expected
    assert list(log.records()) == list(enumerate(expected))
    assert [payload for _, payload in log.records(3, 40)] == expected[3:40]
    log.close()

    with RecordLog.open(tmp_path, segment_max_bytes=limit) as reopened:
        assert reopened.recovery.truncated_bytes == 0
        assert list(reopened.records()) == list(enumerate(expected))
        assert reopened.append_and_wait(b"after", timeout=5) == len(expected)
    scanner = LogScanner(tmp_path)
    assert [record.payload for record in scanner] == [*expected, b"after"]
    assert scanner.problem is None


def test_note_written_refuses_a_run_that_does_not_continue_the_log(tmp_path: Path) -> None:
    limit = 300
    attached = RecordLog.open(tmp_path / "attached")
    try:
        frame = frame_record(b"x")
        with pytest.raises(RecordLogError, match="detached"):
            attached.note_written(WrittenRun(0, array("Q", [16]), 16 + len(frame)))
        assert attached.durable_count == 0
        assert attached.append_and_wait(b"still fine", timeout=5) == 0
    finally:
        attached.close()

    items = payloads(5, seed=2)
    log, position = detached_log(tmp_path / "log", items, limit)
    count, first, size = (
        position.next_record_number,
        position.last_segment_first,
        position.last_segment_size,
    )
    last_offset = record_offsets(log.directory / segment_file_name(first))[-1]
    frame = frame_record(b"next")

    def refused(run: WrittenRun, why: str) -> None:
        with pytest.raises(RecordLogError, match="does not continue the log"):
            log.note_written(run)
        assert (log.durable_count, log.appended_count) == (count, count), why

    try:
        refused(WrittenRun(first, array("Q", [size + 10]), size + 10 + len(frame)), "gap")
        refused(WrittenRun(first, array("Q", [last_offset]), size), "repeats the last record")
        refused(WrittenRun(first, array("Q"), size), "no records")
        refused(WrittenRun(first, array("Q", [size]), size - 1), "size before its record")
        refused(WrittenRun(count + 1, array("Q", [16]), 16 + len(frame)), "new segment skips")
        refused(WrittenRun(count - 1, array("Q", [16]), 16 + len(frame)), "new segment repeats")
        refused(WrittenRun(count + 40, array("Q", [16]), 16 + len(frame)), "far ahead")
        refused(WrittenRun(count, array("Q"), 16), "new segment, no records")
        with pytest.raises(RecordNotFoundError):
            log.read(count)

        # Real runs from a writer that rolls: fed out of order, altered or twice, refused.
        runs: list[WrittenRun] = []
        writer = SegmentWriter(position)
        try:
            big = [bytes([index]) * 100 for index in range(7)]
            writer.write([frame_record(payload) for payload in big], runs.append)
        finally:
            writer.close()
        assert len(runs) >= 3  # 7 records of 108 bytes: at least three segments
        log.note_written(runs[0])
        noted = count + len(runs[0].offsets)
        assert log.durable_count == noted
        count = noted
        refused(runs[2], "skips the records of runs[1]")
        refused(runs[0], "repeats runs[0]")
        refused(replace(runs[1], segment_first=runs[1].segment_first + 1), "wrong first number")
        refused(replace(runs[1], segment_first=runs[1].segment_first - 1), "wrong first number")
        for run in runs[1:]:
            log.note_written(run)
        count += sum(len(run.offsets) for run in runs[1:])
        assert log.durable_count == count == len(items) + len(big)
        refused(runs[-1], "the last run reported twice")
        assert [payload for _, payload in log.records()] == items + big
    finally:
        log.close()
    with RecordLog.open(tmp_path / "log", segment_max_bytes=limit) as reopened:
        assert [payload for _, payload in reopened.records()] == items + big


def test_note_written_refuses_a_new_segment_whose_first_record_is_not_after_the_header(
    tmp_path: Path,
) -> None:
    log, position = detached_log(tmp_path, payloads(3), 300)
    try:
        frame = frame_record(b"x")
        offset = SEGMENT_HEADER.size + 40  # 40 bytes after the header: not where a record is
        run = WrittenRun(position.next_record_number, array("Q", [offset]), offset + len(frame))
        with pytest.raises(RecordLogError):
            log.note_written(run)
        # Offsets that go backwards, or records shorter than a frame header, are refused too.
        start = SEGMENT_HEADER.size
        for offsets, size in (([start, start - 6], start + 40), ([start, start + 4], start + 40)):
            with pytest.raises(RecordLogError):
                log.note_written(WrittenRun(position.next_record_number, array("Q", offsets), size))
        assert log.durable_count == 3
    finally:
        log.close()


def test_fail_detached_fails_waiters_later_waits_and_appends(tmp_path: Path) -> None:
    items = payloads(4, seed=9)
    log, _ = detached_log(tmp_path, items, 400)
    outcome: list[object] = []

    def waiter() -> None:
        try:
            outcome.append(log.wait_durable(6, timeout=30))
        except RecordLogFailedError as error:
            outcome.append(error)

    waiting = threading.Thread(target=waiter, daemon=True)
    waiting.start()
    waiting.join(0.1)  # let it block (if it has not yet, it sees the failure on arrival)
    assert outcome == []
    cause = OSError(errno.EIO, "the writer process died")
    failure = log.fail_detached(cause)
    waiting.join(5)
    assert not waiting.is_alive()  # woken at once, not after its 30 s timeout
    assert outcome == [failure]
    assert isinstance(failure, RecordLogFailedError)
    assert failure.code == "recordlog.write_failed"
    assert failure.__cause__ is cause
    assert "the writer process died" in str(failure)
    assert log.failure is failure
    with pytest.raises(RecordLogFailedError) as caught:
        log.wait_durable(5, timeout=5)
    assert caught.value is failure
    assert log.wait_durable(4, timeout=0)  # what was durable stays durable
    for attempt in (
        lambda: log.append(b"late"),
        lambda: log.append_many([b"late"]),
        lambda: log.append_and_wait(b"late", timeout=1),
    ):
        with pytest.raises(RecordLogFailedError) as refused:
            attempt()
        assert refused.value is failure
    assert log.fail_detached(OSError("a second cause")) is failure  # the first failure stays
    assert [log.read(number) for number in range(4)] == items
    log.close()
    with RecordLog.open(tmp_path, segment_max_bytes=400) as reopened:
        assert [payload for _, payload in reopened.records()] == items
        assert reopened.append_and_wait(b"recovered", timeout=5) == 4


# ---- retirement (issue 11: the journal's segments before a durable snapshot) -----------------


def _filled_log(directory, count: int) -> RecordLog:
    log = RecordLog.open(directory, segment_max_bytes=200)
    for number in range(count):
        log.append_and_wait(f"record {number:04d}".encode())
    return log


def test_retiring_segments_keeps_record_numbers_and_survives_an_interrupted_retirement(
    tmp_path,
) -> None:
    directory, archive = tmp_path / "log", tmp_path / "archive"
    log = _filled_log(directory, 60)
    segments_before = sorted(path.name for path in directory.glob("*.seg"))
    assert len(segments_before) > 4
    retired = log.retire_segments_before(33, archive)
    assert retired and retired == segments_before[: len(retired)]
    assert sorted(path.name for path in archive.glob("*.seg")) == retired
    first = log.first_record
    assert 0 < first <= 33
    assert [number for number, _ in log.records(first)] == list(range(first, 60))
    with pytest.raises(RecordNotFoundError, match="retired"):
        log.read(first - 1)
    assert log.retire_segments_before(33, archive) == []  # nothing more to retire
    log.append_and_wait(b"after")
    log.close()

    # A crash after RETIRED was written but before a segment was moved leaves it behind: it is
    # ignored by opening and scanning, and retired by the next call.
    leftover = archive / retired[-1]
    os.rename(leftover, directory / leftover.name)
    log = RecordLog.open(directory, segment_max_bytes=200)
    assert log.first_record == first and log.durable_count == 61
    assert [record.record_number for record in LogScanner(directory)] == list(range(first, 61))
    assert log.read(60) == b"after"
    assert log.retire_segments_before(first) == [leftover.name]  # deleted this time
    assert not (directory / leftover.name).exists()
    log.close()


def test_a_missing_segment_after_retirement_is_refused_not_skipped(tmp_path) -> None:
    directory = tmp_path / "log"
    log = _filled_log(directory, 40)
    log.retire_segments_before(20)
    first = log.first_record
    log.close()
    (directory / f"{first:020d}.seg").unlink()
    with pytest.raises(RecordLogCorruptError, match=f"record {first}"):
        RecordLog.open(directory, segment_max_bytes=200)
