"""A generic durable record log: opaque byte records in, the same bytes out, in order.

The ledger stores its blocks here and the venue's command journal can reuse it: the log knows
nothing about what a record means.

On disk (all integers little-endian)
------------------------------------
A log is a directory of append-only *segment* files named ``<first record number:020d>.seg``.
Each segment starts with a 16-byte header::

    magic    8 bytes  b"RLOGSEG1"
    first    u64      number of the first record stored in this segment (must match the name)

followed by records, back to back::

    length   u32      payload length in bytes
    crc      u32      CRC-32 (zlib / IEEE 802.3 polynomial, as ``zlib.crc32``) over the four
                      length bytes followed by the payload, so a damaged length is caught too
    payload  length bytes

CRC-32 rather than CRC-32C because the standard library computes it (``zlib``) at memory speed
and no extra dependency is needed; it detects every burst error up to 32 bits.

Record numbers start at 0 and are dense. A new segment is started ("rolled") when the next
record would push the current one past ``segment_max_bytes``; a record larger than that sits
alone in its own segment. A new segment's header is fsynced and then the directory is fsynced,
before any record is written to it, so a segment that exists after a crash is always findable.

Index
-----
The index from record number to (segment, offset) lives in memory and is rebuilt by scanning on
open. The scan has to read every byte anyway to check every checksum and to find a torn tail,
so a persisted index would save nothing at open and would be one more file to keep
crash-consistent. It costs 8 bytes per record (an ``array('Q')`` of offsets per segment).

Group commit
------------
``append`` frames the record, gives it the next record number and queues it; one writer thread
takes *every* queued record, writes them with one ``os.write`` and makes them durable with one
``os.fsync`` (one of each per segment touched when a batch crosses a segment boundary), and only
then completes their handles. While one batch is being fsynced the next one accumulates, so the
batch size adapts to the load.

Failure
-------
A failed write or fsync is fatal and never retried: after ``fsync`` reports an error the kernel
may already have dropped the dirty pages, so a retry could "succeed" without the data. The log
enters a failed state; every pending handle and every later ``append`` fails with the same
:class:`RecordLogFailedError`. Reopening the directory recovers what is durable.

Recovery
--------
Opening scans every segment. Only what a crash can leave is a *torn write*, and only at the very
end of the log (the last segment, with no valid record starting anywhere after the problem):

- a record cut short: fewer than 8 header bytes, or a payload running past end of file (unless
  the bytes present are exactly a record under the stored checksum with another length: then
  the length field is damaged, which no crash does);
- a record whose checksum fails because part of it was never written: some piece of the frame
  between two 512-byte boundaries of the file is all zeros. A crash loses whole sectors, which
  read back as zeros (filesystems zero-fill an extended file), so a zero-filled tail is a torn
  write too. This is etcd's rule for its WAL (``isTornEntry``);
- a prefix of a new segment's header (or zeros).

A torn write is truncated back to the end of the last good record, and
:attr:`RecordLog.recovery` says how many bytes were cut. Anything else -- above all a record
whose full length is present but whose checksum fails with no zeroed sector in it, which is what
one changed byte looks like -- raises :class:`RecordLogCorruptError` naming the file, offset and
record number, and nothing is touched: that record was complete on disk, so it may well have
been acknowledged. Nothing is silently repaired. When such damage is at the very end of the
log (``ScanProblem.at_tail``), the operator may accept the loss explicitly with
:func:`accept_tail_loss` (``venue-audit accept-loss LOG_DIR --record N``): the damaged bytes are
moved into a file beside the segments and the log ends before that record. A caller that knows
more records were durable (the ledger: its newest checkpoint) passes ``required_records``, and
a "torn tail" that would cut into those is refused untouched.

SIGKILL alone cannot tear a record: each batch is one ``write`` call and the page cache outlives
the process. Torn tails come from power loss or a kernel crash, which can drop any suffix that
was not yet fsynced; records written but never acknowledged may also survive (like any commit
whose acknowledgement was lost).

Retirement
----------
A log whose early records are no longer needed (the venue's journal, once a durable snapshot
covers them) can retire whole segments: :meth:`RecordLog.retire_segments_before` moves them
into an archive directory or deletes them, after writing ``RETIRED`` (the first record kept, in
decimal). Record numbers never change; opening and scanning start at that record and require a
segment to start exactly there. The ledger's block log is never retired.

:class:`LogScanner` walks a log read-only and strictly (it never truncates) and reports, rather
than raises, the first problem with its location; the audit tool uses it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import threading
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import FINISHED as _FUTURE_FINISHED
from concurrent.futures._base import PENDING as _FUTURE_PENDING
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

__all__ = [
    "DEFAULT_SEGMENT_MAX_BYTES",
    "MAX_RECORD_BYTES",
    "RETIRED_FILE_NAME",
    "AppendHandle",
    "BatchCallback",
    "LogScanner",
    "RecordLog",
    "RecordLogClosedError",
    "RecordLogCorruptError",
    "RecordLogError",
    "RecordLogFailedError",
    "RecordLogLockedError",
    "RecordNotFoundError",
    "RecoveryReport",
    "ScanProblem",
    "ScannedRecord",
    "SegmentWriter",
    "WriterPosition",
    "WrittenRun",
    "accept_tail_loss",
    "frame_record",
    "fsync_directory",
    "read_retired_before",
    "write_all",
]

logger = logging.getLogger(__name__)

SEGMENT_MAGIC = b"RLOGSEG1"
SEGMENT_HEADER = struct.Struct("<8sQ")
RECORD_HEADER = struct.Struct("<II")
LENGTH_FIELD = struct.Struct("<I")
DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024
# A length above this can only be damage; it also bounds what a reader will try to allocate.
MAX_RECORD_BYTES = 256 * 1024 * 1024
# records() reads this much of a segment per system call, bounding its memory.
READ_CHUNK_BYTES = 4 * 1024 * 1024
SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
LOCK_FILE_NAME = "LOCK"
# Names the first record the log still holds once earlier segments were retired (see
# RecordLog.retire_segments_before); absent: the log starts at record 0.
RETIRED_FILE_NAME = "RETIRED"
# A crash loses whole sectors of the last write; the smallest sector there is (see Recovery).
SECTOR_BYTES = 512
# accept_tail_loss moves the bytes it cuts into this file, beside the segments.
ACCEPTED_LOSS_FILE = "accepted-loss-{record:020d}.bin"


def segment_file_name(first_record_number: int) -> str:
    """The file name of the segment whose first record is ``first_record_number``."""
    return f"{first_record_number:020d}.seg"


def frame_record(payload: bytes) -> bytes:
    """Return ``payload`` framed as it is stored: length, CRC-32 of length+payload, payload."""
    length_bytes = LENGTH_FIELD.pack(len(payload))
    checksum = zlib.crc32(payload, zlib.crc32(length_bytes))
    return length_bytes + LENGTH_FIELD.pack(checksum) + payload


# --------------------------------------------------------------------------------------------
# Errors


class RecordLogError(Exception):
    """Base of every record log error; ``code`` is a stable machine-readable identifier."""

    code = "recordlog.error"


class RecordLogCorruptError(RecordLogError):
    """The log holds damage that is not a torn tail; it is refused, never silently repaired."""

    code = "recordlog.corrupt"

    def __init__(self, problem: ScanProblem) -> None:
        super().__init__(problem.explain())
        self.problem = problem
        self.path = problem.path
        self.offset = problem.offset
        self.record_number = problem.record_number


class RecordLogFailedError(RecordLogError):
    """A write or fsync failed; the log is unusable until reopened (no retry, by design)."""

    code = "recordlog.write_failed"


class RecordLogClosedError(RecordLogError):
    """The log was closed; nothing more can be appended."""

    code = "recordlog.closed"


class RecordLogLockedError(RecordLogError):
    """Another open ``RecordLog`` (in this or another process) holds the directory's lock."""

    code = "recordlog.locked"


class RecordNotFoundError(RecordLogError, IndexError):
    """The requested record number is not (yet) durable in this log."""

    code = "recordlog.no_such_record"


# --------------------------------------------------------------------------------------------
# Scanning


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """The first problem found in a log, with where it is.

    ``kind`` is one of: ``segment_header_short``, ``segment_bad_magic``, ``segment_misnamed``,
    ``segment_gap``, ``record_header_short``, ``record_length_implausible``,
    ``record_payload_short``, ``record_checksum_mismatch``, ``unreadable``, and (from
    ``RecordLog.open(required_records=...)`` only) ``records_missing``.
    ``at_tail`` is true when the problem is in the last segment and no valid record starts
    anywhere after it; ``is_torn_tail`` when, besides, it is what a crash leaves (a record cut
    short or a zeroed sector: see "Recovery" in the module docstring). Damage at the tail that
    is not torn is refused, and is what :func:`accept_tail_loss` can be told to give up.
    """

    kind: str
    path: str
    offset: int
    record_number: int
    detail: str
    is_torn_tail: bool
    at_tail: bool = False

    def describe(self) -> str:
        """One line naming the file, offset and record number."""
        torn = " (torn tail)" if self.is_torn_tail else ""
        return (
            f"{self.kind}{torn}: {self.detail} in {self.path} at offset {self.offset}, "
            f"record {self.record_number}"
        )

    def explain(self) -> str:
        """``describe()``, followed by the ``remedy()`` when there is one."""
        remedy = self.remedy()
        return self.describe() + (f". {remedy}" if remedy else "")

    def remedy(self) -> str | None:
        """The operator's way out of damage at the tail (None for any other problem)."""
        if not self.at_tail or self.is_torn_tail:
            return None
        return (
            f"record {self.record_number} was complete on disk and may have been acknowledged, "
            "so it is not truncated as a torn write; to give it up (and anything after it in "
            f"this log), stop everything using the log and run: venue-audit accept-loss "
            f"{Path(self.path).parent} --record {self.record_number}"
        )


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """One valid record as found by :class:`LogScanner`: its number, payload and location."""

    record_number: int
    payload: bytes
    path: str
    offset: int


@dataclass(slots=True)
class _SegmentScan:
    """The outcome of parsing one segment file held in memory."""

    path: str
    first_record_number: int
    offsets: array
    valid_end: int
    problem: ScanProblem | None


def _valid_record_at(data: bytes | memoryview, offset: int) -> bool:
    """True if a complete record with a matching checksum starts at ``offset``."""
    if offset + RECORD_HEADER.size > len(data):
        return False
    length, checksum = RECORD_HEADER.unpack_from(data, offset)
    end = offset + RECORD_HEADER.size + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return False
    view = memoryview(data)
    return zlib.crc32(view[offset + 8 : end], zlib.crc32(view[offset : offset + 4])) == checksum


def _any_valid_record_after(data: bytes, offset: int) -> bool:
    """True if a valid record starts at any byte offset after ``offset``.

    Only runs on the error path. After a genuine torn write the remainder is at most one batch;
    after mid-file damage the next intact record is usually found within one record length.
    """
    if data.count(0, offset) == len(data) - offset:  # zero-filled: no record can start there
        return False
    return any(_valid_record_at(data, start) for start in range(offset + 1, len(data) - 7))


def _has_zeroed_sector(data: bytes, start: int, end: int) -> bool:
    """True if some piece of ``data[start:end]`` between two ``SECTOR_BYTES`` boundaries (file
    offsets; the first and last pieces clipped to the range) is all zeros: a sector of the last
    write that never reached the disk. One changed byte cannot do that, except by zeroing the
    only non-zero byte of such a piece."""
    piece_start = start
    while piece_start < end:
        piece_end = min(end, (piece_start // SECTOR_BYTES + 1) * SECTOR_BYTES)
        if data.count(0, piece_start, piece_end) == piece_end - piece_start:
            return True
        piece_start = piece_end
    return False


def _length_field_damaged(data: bytes, offset: int, checksum: int) -> bool:
    """True if the bytes after the header at ``offset`` (to end of file) are a complete record
    under ``checksum`` with their own length: the stored length field is what changed."""
    present = len(data) - offset - RECORD_HEADER.size
    if present < 0 or present > MAX_RECORD_BYTES:
        return False
    view = memoryview(data)
    length_bytes = LENGTH_FIELD.pack(present)
    return zlib.crc32(view[offset + RECORD_HEADER.size :], zlib.crc32(length_bytes)) == checksum


def _parse_segment(
    path: str, data: bytes, expected_first: int, name_first: int, is_last: bool
) -> _SegmentScan:
    """Parse one whole segment; stop at the first problem and classify it."""
    offsets = array("Q")
    header_size = SEGMENT_HEADER.size

    def problem(
        kind: str, offset: int, number: int, detail: str, torn: bool, at_tail: bool = False
    ) -> _SegmentScan:
        found = ScanProblem(kind, path, offset, number, detail, torn, at_tail or torn)
        return _SegmentScan(path, name_first, offsets, offset, found)

    if name_first != expected_first:
        return problem(
            "segment_gap",
            0,
            expected_first,
            f"segment starts at record {name_first}, expected {expected_first}",
            False,
        )
    if len(data) < header_size:
        expected_header = SEGMENT_HEADER.pack(SEGMENT_MAGIC, name_first)
        # A crash while creating the last segment leaves a prefix of its header (or zeros).
        torn = is_last and (expected_header.startswith(data) or data.count(0) == len(data))
        return problem("segment_header_short", 0, name_first, f"header is {len(data)} bytes", torn)
    magic, header_first = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        return problem("segment_bad_magic", 0, name_first, f"magic {magic!r}", False)
    if header_first != name_first:
        return problem(
            "segment_misnamed",
            0,
            name_first,
            f"header says first record {header_first}, name says {name_first}",
            False,
        )

    view = memoryview(data)
    size = len(data)
    offset = header_size
    number = name_first
    unpack_header = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    append_offset = offsets.append
    while offset < size:
        if offset + 8 > size:
            kind, detail = "record_header_short", f"{size - offset} header bytes"
            break
        length, checksum = unpack_header(data, offset)
        end = offset + 8 + length
        if length > MAX_RECORD_BYTES:
            kind, detail = "record_length_implausible", f"length {length}"
            break
        if end > size:
            kind, detail = "record_payload_short", f"length {length}, {size - offset - 8} present"
            break
        if crc32(view[offset + 8 : end], crc32(view[offset : offset + 4])) != checksum:
            kind, detail = "record_checksum_mismatch", f"length {length}"
            break
        append_offset(offset)
        offset = end
        number += 1
    else:
        return _SegmentScan(path, name_first, offsets, offset, None)
    at_tail = is_last and not _any_valid_record_after(data, offset)
    torn = False
    if kind in ("record_payload_short", "record_length_implausible"):
        if _length_field_damaged(data, offset, checksum):
            detail += f"; the {size - offset - 8} bytes present match the checksum: the length "
            detail += "field is damaged"
        else:
            torn = kind == "record_payload_short"  # a record cut short
    elif kind == "record_checksum_mismatch":
        torn = _has_zeroed_sector(data, offset, end)
        if not torn:
            detail += ", all of it present"
    else:  # record_header_short: cut short
        torn = True
    return problem(kind, offset, number, detail, at_tail and torn, at_tail)


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    """Segment files of ``directory`` as (first record number, path), in record order."""
    found = []
    for entry in os.scandir(directory):
        match = SEGMENT_NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return found


def read_retired_before(directory: Path) -> int:
    """The first record a log holds: 0, or what ``RETIRED_FILE_NAME`` names once segments
    before it were retired. ``RecordLogError`` if that file is not a record number."""
    try:
        text = (directory / RETIRED_FILE_NAME).read_text()
    except FileNotFoundError:
        return 0
    if not re.fullmatch(r"\d{1,20}\n", text):
        raise RecordLogError(f"{directory / RETIRED_FILE_NAME} does not hold a record number")
    return int(text)


def _scan_segments(directory: Path) -> Iterator[tuple[_SegmentScan, bytes]]:
    """Parse every segment in order, yielding each with its bytes; stop after a problem.

    Starts at the first record the log holds (``read_retired_before``): segments before it
    are leftovers of an interrupted retirement and are not read; a segment must start exactly
    there (a missing one is a ``segment_gap``, never skipped).
    """
    expected_first = read_retired_before(directory)
    segments = [
        (first, path) for first, path in _list_segments(directory) if first >= expected_first
    ]
    if expected_first and not segments:
        detail = f"no segment starts at record {expected_first}, the first not retired"
        problem = ScanProblem("segment_gap", str(directory), 0, expected_first, detail, False)
        yield _SegmentScan(str(directory), expected_first, array("Q"), 0, problem), b""
        return
    for index, (name_first, path) in enumerate(segments):
        data = path.read_bytes()
        is_last = index == len(segments) - 1
        scan = _parse_segment(str(path), data, expected_first, name_first, is_last)
        yield scan, data
        if scan.problem is not None:
            return
        expected_first = name_first + len(scan.offsets)


class LogScanner:
    """Read-only, strict walk over every record of a log directory.

    Iterating yields :class:`ScannedRecord` in order and stops at the first problem, which is
    then available as :attr:`problem` (``None`` if the whole log is clean). A torn tail is
    reported too (with ``is_torn_tail`` set): the scanner never truncates or repairs anything.
    Holds at most one segment in memory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.problem: ScanProblem | None = None
        self.record_count = 0

    def __iter__(self) -> Iterator[ScannedRecord]:
        self.problem = None
        self.record_count = 0
        if not self.directory.is_dir():
            self.problem = ScanProblem(
                "unreadable", str(self.directory), 0, 0, "not a directory", False
            )
            return
        for scan, data in _scan_segments(self.directory):
            number = scan.first_record_number
            for offset in scan.offsets:
                (length,) = LENGTH_FIELD.unpack_from(data, offset)
                yield ScannedRecord(
                    number, data[offset + 8 : offset + 8 + length], scan.path, offset
                )
                number += 1
            self.record_count = number
            if scan.problem is not None:
                self.problem = scan.problem


# --------------------------------------------------------------------------------------------
# The writable log


# Guards the lazy creation of AppendHandle's Future parts (held for an attribute read at most).
_LAZY_CREATION_LOCK = threading.Lock()


class AppendHandle(Future):
    """Completes (with the record number as result) once the record is durable.

    ``record_number`` is known at once. Wait from a thread with ``result()``; from asyncio use
    ``asyncio.wrap_future(handle)``. If the log fails, the handle raises
    :class:`RecordLogFailedError`.

    A ``concurrent.futures.Future`` whose ``threading.Condition`` and two lists are created on
    first use rather than in ``__init__``. They are ten objects the cyclic garbage collector
    tracks (a Condition holds a lock, a deque and five bound methods); thousands of handles
    are in flight at full load, and carrying those through the collector's older generations
    cost about 5 us per block in collections. Created when something first waits on, adds a
    callback to or completes the handle, they usually die young. Completing a handle that
    nobody waited on or subscribed to creates none of them: with no condition there can be no
    waiter or callback to tell (both register under the condition), so ``set_result`` and
    ``set_exception`` only record the outcome -- under the creation lock, so that a waiter
    arriving at that moment creates the condition after the outcome is set and sees it.
    """

    # Class-level defaults: an instance holds none of the three until it is first used.
    _lazy_condition: threading.Condition | None = None
    _lazy_waiters: list | None = None
    _lazy_callbacks: list | None = None

    def __init__(self, record_number: int) -> None:
        # Future.__init__ minus the condition and the two lists (see the class docstring).
        self._state = _FUTURE_PENDING
        self._result = None
        self._exception = None
        self.record_number = record_number

    def _create_once(self, name: str, factory: Callable[[], object]) -> object:
        """Set attribute ``name`` to ``factory()`` unless another thread already did."""
        with _LAZY_CREATION_LOCK:
            value = getattr(self, name)
            if value is None:
                value = factory()
                setattr(self, name, value)
            return value

    def set_result(self, result: object) -> None:
        """``Future.set_result``; without a condition, just record the result (see above)."""
        with _LAZY_CREATION_LOCK:
            if self._lazy_condition is None:
                self._finish_unobserved("_result", result)
                return
        super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        """``Future.set_exception``; without a condition, just record it (see above)."""
        with _LAZY_CREATION_LOCK:
            if self._lazy_condition is None:
                self._finish_unobserved("_exception", exception)
                return
        super().set_exception(exception)

    def _finish_unobserved(self, field: str, value: object) -> None:
        """Caller holds ``_LAZY_CREATION_LOCK`` and no condition exists."""
        # cancel() and set_running_or_notify_cancel() go through the condition, so without one
        # the state is PENDING or FINISHED; a second outcome is refused, as Future does.
        if self._state == _FUTURE_FINISHED:
            # (no repr(self) here: Future's repr takes the condition, whose lock we hold)
            raise InvalidStateError(f"{self._state}: record {self.record_number} already done")
        setattr(self, field, value)
        self._state = _FUTURE_FINISHED

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        condition = self._lazy_condition
        if condition is None:
            condition = self._create_once("_lazy_condition", threading.Condition)
        return condition  # type: ignore[return-value]

    @property
    def _waiters(self) -> list:  # type: ignore[override]
        waiters = self._lazy_waiters
        if waiters is None:
            waiters = self._create_once("_lazy_waiters", list)
        return waiters  # type: ignore[return-value]

    @property
    def _done_callbacks(self) -> list:  # type: ignore[override]
        callbacks = self._lazy_callbacks
        if callbacks is None:
            callbacks = self._create_once("_lazy_callbacks", list)
        return callbacks  # type: ignore[return-value]


BatchCallback = Callable[[int, int, "RecordLogFailedError | None"], None]


@dataclass(slots=True)
class _PendingAppend:
    """Records queued by one append call, and how to report their durability."""

    first: int
    frames: list[bytes]
    handles: tuple[AppendHandle, ...] | None
    on_done: BatchCallback | None

    def complete(self, error: RecordLogFailedError | None) -> None:
        if self.on_done is not None:
            try:
                self.on_done(self.first, len(self.frames), error)
            except Exception:  # a caller's bug must not stop the writer or other completions
                logger.exception("record log durability callback failed")
            return
        if self.handles is None:
            raise RecordLogError("internal: an append with neither handles nor a callback")
        for handle in self.handles:
            if error is None:
                handle.set_result(handle.record_number)
            else:
                handle.set_exception(error)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the log had to do: ``truncated_bytes`` cut from ``truncated_path``."""

    record_count: int
    truncated_bytes: int = 0
    truncated_path: str | None = None
    problem: ScanProblem | None = None


@dataclass(slots=True)
class _Segment:
    first_record_number: int
    path: Path
    offsets: array
    size: int


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a created file's name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write to a file or pipe may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclass(frozen=True, slots=True)
class WrittenRun:
    """Records made durable by one write + one fsync, all in one segment."""

    segment_first: int  # number of the segment's first record (names the segment)
    offsets: array  # byte offset of each record written, in record order ("Q")
    size: int  # the segment's size in bytes after the write


@dataclass(frozen=True, slots=True)
class WriterPosition:
    """Where a detached log's appending continues (see :meth:`RecordLog.detach_writer`)."""

    directory: Path
    segment_max_bytes: int
    last_segment_first: int  # the segment appends go to (it exists, header fsynced)
    last_segment_size: int
    next_record_number: int
    lock_fd: int  # the log's lock file, held: share it with the writing process


class SegmentWriter:
    """The write side of a record log: appends framed records to the last segment, rolling to
    a new segment when one would grow past ``segment_max_bytes``; one ``write`` and one
    ``fsync`` per segment touched, and a new segment's header and directory entry fsynced
    before any record goes into it.

    No threads, no locks, no index: :class:`RecordLog`'s writer thread drives one, and so does
    the ledger's writer process (``ledger.writer_process``), which appends to a log its parent
    has opened, recovered and detached the writer from; the parent updates its index from the
    :class:`WrittenRun` s reported. Raises ``OSError`` when a write or fsync fails: the caller
    must treat that as fatal (see "Failure" above).
    """

    def __init__(self, position: WriterPosition) -> None:
        self.directory = position.directory
        self.segment_max_bytes = position.segment_max_bytes
        self._segment_first = position.last_segment_first
        self._size = position.last_segment_size
        self._next_number = position.next_record_number
        self._fd = os.open(
            self.directory / segment_file_name(self._segment_first), os.O_WRONLY | os.O_APPEND
        )

    @classmethod
    def create_first_segment(cls, directory: Path) -> None:
        """Create segment 0 of an empty log (header and directory entry fsynced)."""
        os.close(cls._create_segment_file(directory, 0))

    @staticmethod
    def _create_segment_file(directory: Path, first_record_number: int) -> int:
        path = directory / segment_file_name(first_record_number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            write_all(fd, SEGMENT_HEADER.pack(SEGMENT_MAGIC, first_record_number))
            os.fsync(fd)
            fsync_directory(directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write(self, frames: list[bytes], on_durable: Callable[[WrittenRun], None]) -> None:
        """Append ``frames`` (already framed records) as the next records; call
        ``on_durable`` after each segment's fsync with the records that are now durable."""
        limit = self.segment_max_bytes
        run: list[bytes] = []
        offsets = array("Q")
        size = self._size
        for frame in frames:
            if size + len(frame) > limit and (size > SEGMENT_HEADER.size or run):
                self._flush(run, offsets, size, on_durable)
                self._roll()
                size = self._size
                run, offsets = [], array("Q")
            offsets.append(size)
            run.append(frame)
            size += len(frame)
        self._flush(run, offsets, size, on_durable)

    def _flush(
        self,
        run: list[bytes],
        offsets: array,
        new_size: int,
        on_durable: Callable[[WrittenRun], None],
    ) -> None:
        if not run:
            return
        write_all(self._fd, b"".join(run))
        os.fsync(self._fd)
        self._size = new_size
        self._next_number += len(run)
        on_durable(WrittenRun(self._segment_first, offsets, new_size))

    def _roll(self) -> None:
        fd = self._create_segment_file(self.directory, self._next_number)
        os.close(self._fd)
        self._fd = fd
        self._segment_first = self._next_number
        self._size = SEGMENT_HEADER.size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RecordLog:
    """An open, writable record log. Create with :meth:`open`; thread-safe."""

    def __init__(self, directory: Path, segment_max_bytes: int) -> None:
        """Private: use :meth:`RecordLog.open`."""
        self.directory = directory
        self.segment_max_bytes = segment_max_bytes
        self.recovery = RecoveryReport(0)
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._durable_changed = threading.Condition(self._lock)
        self._segments: list[_Segment] = []
        self._segment_firsts: list[int] = []
        self._pending: list[_PendingAppend] = []
        self._next_record_number = 0
        self._durable_count = 0
        self._first_record = 0  # records before it were retired (retire_segments_before)
        self._failure: RecordLogFailedError | None = None
        self._closing = False
        self._closed = False
        self._segment_writer: SegmentWriter | None = None
        self._detached = False  # appending was handed to another process (detach_writer)
        self._read_fds: dict[int, int] = {}
        self._lock_fd = -1
        self._writer: threading.Thread | None = None

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        required_records: int = 0,
        lock_wait_seconds: float = 0.0,
    ) -> RecordLog:
        """Open (creating if needed) the log in ``directory`` and recover it after a crash.

        ``required_records``: how many records the caller knows were durable (e.g. what a
        checkpoint covered). A torn tail that would leave fewer is not a crash artefact but
        lost data: it is refused *before* anything is truncated, as is a log that simply holds
        fewer.

        ``lock_wait_seconds``: how long to wait for the log's lock if it is held (the ledger's
        writer process of a killed venue holds it until it notices its parent is gone).

        Raises :class:`RecordLogCorruptError` for damage that is not a torn tail and
        :class:`RecordLogLockedError` if the log is still open elsewhere after that.
        """
        if segment_max_bytes < SEGMENT_HEADER.size + RECORD_HEADER.size:
            raise ValueError(f"segment_max_bytes too small: {segment_max_bytes}")
        path = Path(directory)
        if not path.is_dir():
            path.mkdir(parents=True)
            fsync_directory(path.parent)
        log = cls(path, segment_max_bytes)
        log._acquire_lock(lock_wait_seconds)
        try:
            log._recover(required_records)
            log._open_for_writing()
        except BaseException:
            log._release_resources()
            raise
        log._writer = threading.Thread(
            target=log._writer_loop, name=f"recordlog-writer:{path.name}", daemon=True
        )
        log._writer.start()
        return log

    def _acquire_lock(self, wait_seconds: float) -> None:
        self._lock_fd = os.open(self.directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
            time.sleep(0.01)
        os.close(self._lock_fd)
        self._lock_fd = -1
        raise RecordLogLockedError(f"record log {self.directory} is open elsewhere")

    def _recover(self, required_records: int, accept_loss_at: int | None = None) -> None:
        """Scan every segment, truncate a torn tail, refuse anything else, build the index.

        ``accept_loss_at`` (:func:`accept_tail_loss` only): the number of a damaged record at
        the tail that the operator gives up; it is cut like a torn tail, its bytes kept aside.
        """
        truncated_bytes = 0
        truncated_path: str | None = None
        problem: ScanProblem | None = None
        self._first_record = self._next_record_number = read_retired_before(self.directory)
        for scan, data in _scan_segments(self.directory):
            if scan.problem is not None:
                problem = scan.problem
                if accept_loss_at is not None:
                    self._check_loss_to_accept(problem, accept_loss_at)
                    self._keep_accepted_loss(data[scan.valid_end :], accept_loss_at)
                elif not problem.is_torn_tail:
                    raise RecordLogCorruptError(problem)
                elif problem.record_number < required_records:
                    detail = (
                        f"{problem.detail}; {required_records} records were durable, so this "
                        "is lost data, not a torn tail"
                    )
                    raise RecordLogCorruptError(
                        replace(problem, detail=detail, is_torn_tail=False, at_tail=False)
                    )
                truncated_path = scan.path
                truncated_bytes = len(data) - scan.valid_end
                self._truncate_torn_tail(Path(scan.path), scan)
                logger.warning(
                    "record log recovery: truncated %d bytes of %s: %s",
                    truncated_bytes,
                    "torn tail" if accept_loss_at is None else "damaged tail (loss accepted)",
                    problem.describe(),
                )
            size = max(scan.valid_end, SEGMENT_HEADER.size)
            self._add_segment(
                _Segment(scan.first_record_number, Path(scan.path), scan.offsets, size)
            )
            self._next_record_number = scan.first_record_number + len(scan.offsets)
        if accept_loss_at is not None and problem is None:
            raise RecordLogError(
                f"record log {self.directory} is intact: no damaged record "
                f"{accept_loss_at} to accept the loss of; nothing was changed"
            )
        if self._next_record_number < required_records:
            last = self._segments[-1] if self._segments else None
            raise RecordLogCorruptError(
                ScanProblem(
                    "records_missing",
                    str(last.path if last else self.directory),
                    last.size if last else 0,
                    self._next_record_number,
                    f"log ends after {self._next_record_number} records, "
                    f"{required_records} were durable",
                    False,
                )
            )
        self._durable_count = self._next_record_number
        self.recovery = RecoveryReport(
            self._next_record_number, truncated_bytes, truncated_path, problem
        )

    def _check_loss_to_accept(self, problem: ScanProblem, record_number: int) -> None:
        """Refuse, changing nothing, unless ``problem`` is damage at the tail at exactly
        ``record_number`` (what the operator named)."""
        if problem.is_torn_tail:
            reason = "it is a torn write, which opening truncates by itself"
        elif not problem.at_tail:
            reason = (
                "valid records follow it (or it is not in the last segment): cutting there "
                "would lose them too; restore the log from a copy instead"
            )
        elif problem.record_number != record_number:
            reason = f"the damage is at record {problem.record_number}, not {record_number}"
        else:
            return
        raise RecordLogError(
            f"not accepting the loss of record {record_number} in {self.directory}: {reason} "
            f"({problem.describe()}); nothing was changed"
        )

    def _keep_accepted_loss(self, lost: bytes, record_number: int) -> None:
        """Write the bytes about to be cut into ``ACCEPTED_LOSS_FILE`` (0600: a journal record
        may hold credentials), durably, before anything is truncated."""
        path = self.directory / ACCEPTED_LOSS_FILE.format(record=record_number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, lost)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(self.directory)

    def _truncate_torn_tail(self, path: Path, scan: _SegmentScan) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            if scan.valid_end < SEGMENT_HEADER.size:
                # Torn segment header: rewrite it whole.
                os.ftruncate(fd, 0)
                write_all(fd, SEGMENT_HEADER.pack(SEGMENT_MAGIC, scan.first_record_number))
            else:
                os.ftruncate(fd, scan.valid_end)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _add_segment(self, segment: _Segment) -> None:
        self._segments.append(segment)
        self._segment_firsts.append(segment.first_record_number)

    def _open_for_writing(self) -> None:
        if not self._segments:
            SegmentWriter.create_first_segment(self.directory)
            self._add_segment(
                _Segment(0, self.directory / segment_file_name(0), array("Q"), SEGMENT_HEADER.size)
            )
        self._segment_writer = SegmentWriter(self._writer_position())

    def _writer_position(self) -> WriterPosition:
        last = self._segments[-1]
        return WriterPosition(
            self.directory,
            self.segment_max_bytes,
            last.first_record_number,
            last.size,
            self._next_record_number,
            self._lock_fd,
        )

    # ---- appending ----------------------------------------------------------------------

    def append(self, payload: bytes) -> AppendHandle:
        """Queue ``payload`` as the next record; the handle completes once it is durable.

        Raises :class:`RecordLogFailedError` if the log has failed, :class:`RecordLogClosedError`
        if it is closed.
        """
        return self.append_many((payload,))[0]

    def append_many(self, payloads: Iterable[bytes]) -> list[AppendHandle]:
        """Queue several records at once (consecutive numbers, one lock round trip)."""
        framed = [frame_record(payload) for payload in payloads]
        with self._lock:
            self._check_appendable()
            first = self._next_record_number
            handles = [AppendHandle(first + index) for index in range(len(framed))]
            # The pending entry keeps its own tuple: the caller may extend the returned list.
            self._enqueue(_PendingAppend(first, framed, tuple(handles), None))
        return handles

    def append_batch(self, payloads: Iterable[bytes], on_done: BatchCallback) -> int:
        """Queue several records and call ``on_done(first, count, error)`` once, no handles.

        For pipelined writers (the ledger) that track durability per batch: it saves creating
        a ``Future`` per record. ``on_done`` runs in the writer thread with ``error`` None once
        all ``count`` records from ``first`` are durable, or the :class:`RecordLogFailedError`
        if they are not; it must be quick and must not call back into this log's writes.
        Returns ``first``.
        """
        framed = [frame_record(payload) for payload in payloads]
        with self._lock:
            self._check_appendable()
            first = self._next_record_number
            self._enqueue(_PendingAppend(first, framed, None, on_done))
        return first

    def _enqueue(self, pending: _PendingAppend) -> None:
        """Caller holds ``_lock``."""
        self._pending.append(pending)
        self._next_record_number += len(pending.frames)
        self._work_ready.notify()

    def append_and_wait(self, payload: bytes, timeout: float | None = None) -> int:
        """Append ``payload`` and block until it is durable; return its record number."""
        return self.append(payload).result(timeout)

    def _check_appendable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing:
            raise RecordLogClosedError(f"record log {self.directory} is closed")
        if self._detached:
            raise RecordLogError(f"record log {self.directory} is written by another process")

    # ---- handing appends to another process ---------------------------------------------

    def detach_writer(self) -> WriterPosition:
        """Stop this log's writer thread and return where appending continues, for a
        :class:`SegmentWriter` in another process (the ledger's writer process).

        The log must have nothing queued. From now on ``append*`` raise; this object keeps the
        lock and serves reads, and learns of new durable records only through
        :meth:`note_written` (and of a failure through :meth:`fail_detached`). Share
        ``lock_fd`` with the writing process so that the log stays locked while it lives.
        """
        with self._lock:
            self._check_appendable()
            if self._pending:
                raise RecordLogError("cannot detach the writer with records queued")
            self._detached = True
            self._work_ready.notify_all()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._segment_writer is None:
            raise RecordLogError("internal: no segment writer to detach")
        self._segment_writer.close()
        self._segment_writer = None
        return self._writer_position()

    def note_written(self, run: WrittenRun) -> None:
        """Record that another process made ``run`` durable (a detached log only).

        Raises :class:`RecordLogError` if the run does not continue the log exactly.
        """
        with self._lock:
            if not self._detached:
                raise RecordLogError("note_written is for a detached log")
            last = self._segments[-1]
            if run.segment_first != last.first_record_number:  # the run starts a new segment
                continues = run.segment_first == self._durable_count
                start = SEGMENT_HEADER.size
            else:
                continues, start = True, last.size
            # Records back to back from where the segment ends, each at least a frame header.
            ends = [*run.offsets[1:], run.size]
            exact = (
                bool(run.offsets)
                and run.offsets[0] == start
                and all(
                    end - offset >= RECORD_HEADER.size
                    for offset, end in zip(run.offsets, ends, strict=True)
                )
            )
            if not (continues and exact):
                raise RecordLogError(
                    f"written run (segment {run.segment_first}, {len(run.offsets)} records) "
                    f"does not continue the log at record {self._durable_count}"
                )
            self._next_record_number += len(run.offsets)
        self._note_durable(run)

    def fail_detached(self, cause: BaseException) -> RecordLogFailedError:
        """Put a detached log into the failed state (its writing process failed or died)."""
        failure = RecordLogFailedError(
            f"record log {self.directory} failed and accepts no more records: {cause}"
        )
        failure.__cause__ = cause
        with self._lock:
            if self._failure is None:
                self._failure = failure
            self._durable_changed.notify_all()
            return self._failure

    # ---- the writer thread --------------------------------------------------------------

    def _writer_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing and not self._detached:
                    self._work_ready.wait()
                if not self._pending:
                    return
                batch = self._pending
                self._pending = []
            try:
                self._write_batch(batch)
            except BaseException as error:
                self._fail(batch, error)
                return
            for pending in batch:
                pending.complete(None)

    def _write_batch(self, batch: list[_PendingAppend]) -> None:
        """Write a batch: one write + one fsync per segment touched, rolling when full."""
        if self._segment_writer is None:  # detached: only the writer process appends now
            raise RecordLogError("internal: the writer thread ran without a segment writer")
        frames = [frame for pending in batch for frame in pending.frames]
        self._segment_writer.write(frames, self._note_durable)

    def _note_durable(self, run: WrittenRun) -> None:
        """Index the records of ``run`` and count them durable."""
        with self._lock:
            if run.segment_first != self._segments[-1].first_record_number:
                path = self.directory / segment_file_name(run.segment_first)
                self._add_segment(_Segment(run.segment_first, path, array("Q"), run.size))
            segment = self._segments[-1]
            segment.offsets.extend(run.offsets)
            segment.size = run.size
            self._durable_count += len(run.offsets)
            self._durable_changed.notify_all()

    def _fail(self, batch: list[_PendingAppend], cause: BaseException) -> None:
        failure = RecordLogFailedError(
            f"record log {self.directory} failed and accepts no more records: {cause!r}"
        )
        failure.__cause__ = cause
        logger.error("%s", failure)
        with self._lock:
            self._failure = failure
            doomed = batch + self._pending
            self._pending = []
            self._durable_changed.notify_all()
        for pending in doomed:
            # Records of an earlier run of this batch may have been made durable already.
            durable = pending.first + len(pending.frames) <= self._durable_count
            pending.complete(None if durable else failure)

    # ---- reading ------------------------------------------------------------------------

    @property
    def durable_count(self) -> int:
        """How many records (numbers ``0 .. durable_count - 1``) are durable."""
        return self._durable_count

    @property
    def appended_count(self) -> int:
        """How many records have been appended, durable or still queued."""
        return self._next_record_number

    @property
    def failure(self) -> RecordLogFailedError | None:
        """The fatal error, once a write or fsync has failed."""
        return self._failure

    def wait_durable(self, count: int, timeout: float | None = None) -> bool:
        """Block until at least ``count`` records are durable; False on timeout.

        Raises the log's failure if it fails before that.
        """
        with self._lock:
            reached = self._durable_changed.wait_for(
                lambda: self._durable_count >= count or self._failure is not None, timeout
            )
            if self._durable_count >= count:
                return True
            if self._failure is not None:
                raise self._failure
            return reached

    @property
    def first_record(self) -> int:
        """The first record the log holds: records before it were retired (0: none were)."""
        return self._first_record

    @property
    def segment_count(self) -> int:
        """How many segment files the log holds (the last is the one appended to)."""
        return len(self._segments)

    def retire_segments_before(
        self, record_number: int, archive: str | os.PathLike[str] | None = None
    ) -> list[str]:
        """Retire every segment holding only records before ``record_number``: move it into
        the directory ``archive`` (created if needed), or delete it when ``archive`` is None.
        Returns the names of the segments retired. The segment appended to is never retired,
        so at most the records of whole, full segments go.

        For a caller that no longer needs those records (the venue: everything before its
        newest durable snapshot). Crash-safe in this order: ``RETIRED_FILE_NAME`` is first
        written (temporary file, fsync, rename, directory fsync) naming the first record kept,
        then the segments are moved or deleted and the directory fsynced. A crash in between
        leaves segments before that record, which opening and scanning ignore and the next
        call retires; record numbers never change. ``RecordNotFoundError`` for a retired
        record afterwards; ``OSError`` if the files cannot be moved.
        """
        with self._lock:
            if self._closed:
                raise RecordLogClosedError(f"record log {self.directory} is closed")
            kept = 0
            while (
                kept + 1 < len(self._segments)
                and self._segments[kept + 1].first_record_number <= record_number
            ):
                kept += 1
            new_first = self._segments[kept].first_record_number
        leftovers = [path for first, path in _list_segments(self.directory) if first < new_first]
        if not leftovers:
            return []
        if new_first > self._first_record:
            marker = self.directory / RETIRED_FILE_NAME
            temporary = self.directory / (RETIRED_FILE_NAME + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, f"{new_first}\n".encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, marker)
            fsync_directory(self.directory)
            with self._lock:
                self._first_record = new_first
                retired = self._segments[:kept]
                del self._segments[:kept]
                del self._segment_firsts[:kept]
                fds = [self._read_fds.pop(segment.first_record_number, -1) for segment in retired]
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
        target = None if archive is None else Path(archive)
        if target is not None and not target.is_dir():
            target.mkdir(parents=True, mode=0o700)
            fsync_directory(target.parent)
        for path in leftovers:
            if target is None:
                path.unlink()
            else:
                os.rename(path, target / path.name)
        if target is not None:
            fsync_directory(target)
        fsync_directory(self.directory)
        return [path.name for path in leftovers]

    def _locate(self, record_number: int) -> tuple[_Segment, int]:
        with self._lock:
            if record_number < self._first_record:
                raise RecordNotFoundError(
                    f"record {record_number} was retired from {self.directory} (the log now "
                    f"starts at record {self._first_record})"
                )
            if not 0 <= record_number < self._durable_count:
                raise RecordNotFoundError(
                    f"record {record_number} not in log (durable count {self._durable_count})"
                )
            segment = self._segments[bisect_right(self._segment_firsts, record_number) - 1]
            return segment, segment.offsets[record_number - segment.first_record_number]

    def _read_fd(self, segment: _Segment) -> int:
        with self._lock:
            if self._closed:
                raise RecordLogClosedError(f"record log {self.directory} is closed")
            fd = self._read_fds.get(segment.first_record_number)
            if fd is None:
                fd = os.open(segment.path, os.O_RDONLY)
                self._read_fds[segment.first_record_number] = fd
            return fd

    def read(self, record_number: int) -> bytes:
        """Return the payload of a durable record, checking its checksum."""
        segment, offset = self._locate(record_number)
        fd = self._read_fd(segment)
        header = os.pread(fd, RECORD_HEADER.size, offset)
        length, _ = RECORD_HEADER.unpack(header)
        frame = header + os.pread(fd, length, offset + RECORD_HEADER.size)
        if not _valid_record_at(frame, 0):
            self._raise_changed(segment, offset, record_number)
        return frame[RECORD_HEADER.size :]

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(record_number, payload)`` for durable records ``start <= n < stop``.

        Reads up to ``READ_CHUNK_BYTES`` of a segment per system call (a record larger than
        that in one read of its own); checksums are checked. ``stop`` defaults to the durable
        count when iteration starts.
        """
        if stop is None:
            stop = self._durable_count
        number = start
        while number < stop:
            segment, first_offset = self._locate(number)
            base = segment.first_record_number
            offsets = segment.offsets
            last_index = min(stop, base + len(offsets)) - 1 - base
            # Records wholly inside the chunk: those that start before its end.
            fitting = bisect_right(offsets, first_offset + READ_CHUNK_BYTES, number - base)
            last_index = max(number - base, min(last_index, fitting - 2))
            fd = self._read_fd(segment)
            last_offset = offsets[last_index]
            (last_length,) = LENGTH_FIELD.unpack(os.pread(fd, 4, last_offset))
            end = last_offset + RECORD_HEADER.size + last_length
            data = os.pread(fd, end - first_offset, first_offset)
            for index in range(number - base, last_index + 1):
                relative = offsets[index] - first_offset
                if not _valid_record_at(data, relative):
                    self._raise_changed(segment, offsets[index], base + index)
                (length,) = LENGTH_FIELD.unpack_from(data, relative)
                payload_start = relative + RECORD_HEADER.size
                yield base + index, data[payload_start : payload_start + length]
            number = base + last_index + 1

    @staticmethod
    def _raise_changed(segment: _Segment, offset: int, record_number: int) -> NoReturn:
        raise RecordLogCorruptError(
            ScanProblem(
                "record_checksum_mismatch",
                str(segment.path),
                offset,
                record_number,
                "record changed on disk after it was written",
                False,
            )
        )

    # ---- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Write everything queued, stop the writer and release files. Idempotent.

        Does not raise if the log had failed; the failure was reported to every handle.
        """
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._work_ready.notify_all()
        if self._writer is not None and self._writer is not threading.current_thread():
            self._writer.join()
        self._release_resources()

    def _release_resources(self) -> None:
        with self._lock:
            self._closed = True
            self._closing = True
            fds = [*self._read_fds.values(), self._lock_fd]
            self._read_fds.clear()
            self._lock_fd = -1
            writer, self._segment_writer = self._segment_writer, None
        if writer is not None:
            writer.close()
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def accept_tail_loss(directory: str | os.PathLike[str], record_number: int) -> RecoveryReport:
    """The operator's explicit decision to give up a damaged record at the end of a log.

    Opening refuses a log whose last record is complete but fails its checksum (see "Recovery"
    in the module docstring): it may have been acknowledged, so only a person may decide it is
    lost. This cuts the log before ``record_number``, after checking that the first problem in
    the log is exactly that (damage at the tail at that record, not a torn write, nothing valid
    after it), and keeps the bytes it cuts in ``ACCEPTED_LOSS_FILE`` beside the segments. The
    log must not be open anywhere (its lock is taken). Returns what was cut; raises
    :class:`RecordLogError` (changing nothing) when there is no such record to give up, and
    :class:`RecordLogLockedError` when the log is in use.
    """
    path = Path(directory)
    if not path.is_dir():
        raise RecordLogError(f"{path} is not a record log directory")
    log = RecordLog(path, DEFAULT_SEGMENT_MAX_BYTES)
    log._acquire_lock(0.0)
    try:
        log._recover(0, accept_loss_at=record_number)
    finally:
        log._release_resources()
    return log.recovery
