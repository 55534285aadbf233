"""The ledger's writer process: signs blocks, appends them to the block log and fsyncs it.

Why a process
-------------
Everything between "block accepted" and "block durable" -- the Ed25519 signature, framing,
``write`` and ``fsync`` -- runs here, in a child with its own interpreter and so its own GIL,
on the second core. In the parent, every step that blocks (a pipe read, a write, an fsync, a
signature: each releases the GIL) has to take the GIL back afterwards, and while the venue's
thread is busy in Python that can take up to the interpreter's switch interval (5 ms) per step.
Measured here at half the maximum rate, the earlier pipeline (sign in a child, then frame,
write and fsync in a parent thread: five GIL hand-offs a batch) had p50 2-3 ms and p99
9-68 ms; with the durable path in this process the parent takes the GIL twice a batch (to send
it, and to complete its handles): p50 about 2 ms and p99 4-12 ms, median 6
(``load_tests/bench_ledger.py``, figures in the README).

The parent (:class:`ledger.ledger.Ledger`) opens and recovers the block log, then
:meth:`~ledger.recordlog.RecordLog.detach_writer` hands appending over: this process holds the
log's lock file (inherited, so the log stays locked until both processes have let go) and
appends with a :class:`~ledger.recordlog.SegmentWriter`, the same code the log's own writer
thread uses. The parent keeps the index and serves reads, learning of new records from the
reports below.

Protocol (parent -> child on stdin; child -> parent on stdout)
--------------------------------------------------------------
Integers little-endian (offsets: native ``array("Q")`` bytes; both ends are this machine)::

    K  key         32 bytes  raw Ed25519 private key: sign what follows with it
    B  count       u32       a batch of blocks to sign and append, in height order
       body_bytes  u32
       lengths     count x u32   encoded length of each block
       hashes      count x 32    SHA-256 of each encoding (the parent computed them anyway)
       body        body_bytes    the encodings, back to back
    R  limit       u64       blocks numbered below ``limit`` may be written (the write gate)

    S                        the child has started (sent once, first): ready to sign and write
    D  runs        u32       records now durable, one entry per write + fsync:
       per run: segment_first u64, size u64, count u32, offsets count x u64
    E  length      u32       a write or fsync failed (fatal): UTF-8 message; the child exits 1

Each stored record is ``encoding || signature``. Two threads: the main thread reads batches and
signs them, handing signed records the gate has released (below) to the commit thread every
``HAND_OVER_EVERY`` records and at the end of what it has read; the commit thread appends
everything handed over since its last group with one write + one fsync per segment touched
(group commit) and reports it. Both ``sign`` and ``fsync`` release the GIL, so signing goes on
during the fsync and a group is whatever was signed meanwhile: it grows with the load, with no
timer. (A single thread that kept reading and signing while input was waiting, then committed,
let groups grow for 10 ms and more whenever signing fell only slightly behind.) At end of input
the child commits what it holds and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
from array import array
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import private_key_bytes
from ledger.recordlog import (
    SegmentWriter,
    WriterPosition,
    WrittenRun,
    frame_record,
    write_all,
)

__all__ = ["WriterProcess", "WriterProcessError", "main"]

READ_BYTES = 1 << 20
BATCH_HEADER = struct.Struct("<II")
RUN_HEADER = struct.Struct("<QQI")
COUNT = struct.Struct("<I")
LIMIT = struct.Struct("<Q")


class WriterProcessError(OSError):
    """The writer process reported a failure, broke the protocol or ended unexpectedly."""


# --------------------------------------------------------------------------------------------
# Parent side


class WriterProcess:
    """The parent's end: start the child, send it batches, read its durability reports.

    ``send`` is called by one thread (the ledger's forwarder), ``read_report`` by another.
    """

    def __init__(self, position: WriterPosition) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        # Group signals (Ctrl-C, SIGTERM to the process group) must not kill the child, even
        # while its interpreter starts: it is started with them blocked (a signal mask is
        # inherited across exec), ignores them, and only then unblocks them.
        code = (
            "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM)); "
            f"import sys; sys.path.insert(0, {package_root!r}); "
            "from ledger.writer_process import main; sys.exit(main(sys.argv[1:]))"
        )
        arguments = [
            str(position.directory),
            str(position.segment_max_bytes),
            str(position.last_segment_first),
            str(position.last_segment_size),
            str(position.next_record_number),
        ]
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", code, *arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                pass_fds=(position.lock_fd,),
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if self._process.stdin is None or self._process.stdout is None:  # PIPE gives both
            self._process.kill()
            raise WriterProcessError("the writer process was started without its pipes")
        self._input_fd = self._process.stdin.fileno()
        self._key: Ed25519PrivateKey | None = None
        self._released = position.next_record_number
        self.started = threading.Event()  # set once the child has said it is ready
        self._sent = position.next_record_number  # the number the next block sent will have

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(
        self,
        key: Ed25519PrivateKey | None,
        hashes: list[bytes],
        encodings: list[bytes],
        release: int | None = None,
    ) -> None:
        """Send one batch (possibly empty) and open the write gate up to ``release`` (blocks
        numbered below it may be written; None: every block sent so far), if that is past what
        was released before. Blocks while the pipe is full (the child is busy). Raises
        :class:`WriterProcessError` naming the child's exit status if it has died."""
        message = []
        sent = self._sent + len(encodings)
        if release is None:
            release = sent
        # The gate's message goes first: the child then hands this batch's released blocks to
        # its commit thread as soon as the batch is signed (committing overlaps the signing of
        # what follows), not only once it has signed everything it has read (up to 1 MiB).
        if release > self._released:
            message.append(b"R" + LIMIT.pack(release))
            self._released = release
        if encodings:
            if key is not self._key:
                message.append(b"K" + private_key_bytes(key))
                self._key = key
            lengths = [len(encoding) for encoding in encodings]
            message.append(b"B" + BATCH_HEADER.pack(len(lengths), sum(lengths)))
            message.append(struct.pack(f"<{len(lengths)}I", *lengths))
            message.extend(hashes)
            message.extend(encodings)
            self._sent = sent
        if not message:
            return
        try:
            write_all(self._input_fd, b"".join(message))  # a pipe write may be partial
        except BrokenPipeError as error:
            # The child is gone: say how it ended, as the durable reader does when its output
            # closes (whichever of the two threads notices first names the same cause).
            raise WriterProcessError(self.ended()) from error

    def read_report(self) -> list[WrittenRun] | None:
        """The next report's runs; None at end of output (the child has exited).

        Raises :class:`WriterProcessError` for a reported failure or a malformed report.
        """
        kind = self._read(1, at_boundary=True)
        if kind == b"S":
            self.started.set()
            kind = self._read(1, at_boundary=True)
        if kind is None:
            return None
        if kind == b"E":
            (length,) = COUNT.unpack(self._read(4))
            message = self._read(length).decode("utf-8", "replace")
            raise WriterProcessError(f"ledger writer process failed: {message}")
        if kind != b"D":
            raise WriterProcessError(f"ledger writer process sent an unknown report {kind!r}")
        (run_count,) = COUNT.unpack(self._read(4))
        runs = []
        for _ in range(run_count):
            segment_first, size, count = RUN_HEADER.unpack(self._read(RUN_HEADER.size))
            offsets = array("Q")
            offsets.frombytes(self._read(8 * count))
            runs.append(WrittenRun(segment_first, offsets, size))
        return runs

    def _read(self, count: int, at_boundary: bool = False) -> bytes:
        output = self._process.stdout
        if output is None:  # never: checked at start
            raise WriterProcessError("the writer process has no output pipe")
        chunks, received = [], 0
        while received < count:
            chunk = output.read(count - received)
            if not chunk:
                if at_boundary and not received:
                    return None  # type: ignore[return-value]
                raise WriterProcessError(self.ended())
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def ended(self) -> str:
        """Describe how the child ended (waits for it: call once its output has closed)."""
        status = self._process.wait()
        return f"ledger writer process {self._process.pid} ended (exit status {status})"

    def finish_input(self) -> None:
        """No more batches: the child commits what it holds and exits. Idempotent."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            # A broken pipe: the child is already gone; read_report says how.
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()

    def close(self, timeout: float = 10.0) -> int:
        """Finish input, wait for the child (killing it after ``timeout`` s); its exit status."""
        self.finish_input()
        try:
            status = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            status = self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        return status


# --------------------------------------------------------------------------------------------
# Child side


def _take_message(buffer: bytearray) -> tuple[bytes, bytes] | None:
    """Remove and return the first complete message ``(kind, body)``, or None if incomplete."""
    if not buffer:
        return None
    kind = bytes(buffer[:1])
    if kind == b"K":
        size = 1 + 32
    elif kind == b"R":
        size = 1 + LIMIT.size
    elif kind == b"B":
        if len(buffer) < 1 + BATCH_HEADER.size:
            return None
        count, body_bytes = BATCH_HEADER.unpack_from(buffer, 1)
        size = 1 + BATCH_HEADER.size + 36 * count + body_bytes
    else:
        raise ValueError(f"unknown message {kind!r}")
    if len(buffer) < size:
        return None
    body = bytes(buffer[1:size])
    del buffer[:size]
    return kind, body


def _signed_frames(body: bytes, key: Ed25519PrivateKey) -> list[bytes]:
    """Frame ``encoding || signature`` for every block of a ``B`` message."""
    count, _ = BATCH_HEADER.unpack_from(body)
    lengths = struct.unpack_from(f"<{count}I", body, BATCH_HEADER.size)
    hashes_at = BATCH_HEADER.size + 4 * count
    offset = hashes_at + 32 * count
    sign = key.sign
    frames = []
    for index, length in enumerate(lengths):
        at = hashes_at + 32 * index
        frames.append(frame_record(body[offset : offset + length] + sign(body[at : at + 32])))
        offset += length
    return frames


def _report(runs: list[WrittenRun]) -> bytes:
    parts = [b"D", COUNT.pack(len(runs))]
    for run in runs:
        parts.append(RUN_HEADER.pack(run.segment_first, run.size, len(run.offsets)))
        parts.append(run.offsets.tobytes())
    return b"".join(parts)


def _write_out(data: bytes) -> None:
    """Send ``data`` to the parent (stdout)."""
    write_all(1, data)


def _fail_fast(error: BaseException, status: int) -> NoReturn:
    """Report ``error`` to the parent (if it is still there) and exit at once."""
    text = f"{type(error).__name__}: {error}".encode()
    with contextlib.suppress(OSError):
        _write_out(b"E" + COUNT.pack(len(text)) + text)
    os._exit(status)


class _Committer:
    """The child's commit thread: appends whatever has been signed since its last group, with
    one write + fsync per segment touched, and reports it. Signing goes on meanwhile in the
    main thread (``fsync`` and ``sign`` both release the GIL), so a group is exactly what was
    signed during the previous fsync: the group size follows the load, with no waiting."""

    def __init__(self, writer: SegmentWriter) -> None:
        self._writer = writer
        self._ready = threading.Condition(threading.Lock())
        self._frames: list[bytes] = []
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="ledger-writer-commit")
        self._thread.start()

    def add(self, frames: list[bytes]) -> None:
        with self._ready:
            self._frames.extend(frames)
            self._ready.notify()

    def finish(self) -> None:
        """Commit what is left, then stop."""
        with self._ready:
            self._finished = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._frames and not self._finished:
                    self._ready.wait()
                if not self._frames:
                    return
                group, self._frames = self._frames, []
            runs: list[WrittenRun] = []
            try:
                self._writer.write(group, runs.append)
            except OSError as error:  # fatal: report what did become durable, then the error
                with contextlib.suppress(OSError):
                    _write_out(_report(runs))
                _fail_fast(error, 1)
            try:
                _write_out(_report(runs))
            except OSError:
                os._exit(0)  # the parent is gone: nobody to report to


# A batch is handed to the commit thread once this many blocks are signed, so that after a
# stall the first blocks of a large backlog are not held back until all of it is signed.
HAND_OVER_EVERY = 32


def main(argv: list[str]) -> int:
    """Serve the protocol above until end of input. Arguments: directory, segment_max_bytes,
    last segment's first record number, its size, the next record number."""
    directory, segment_max_bytes, last_first, last_size, next_number = argv
    # Ctrl-C, and SIGTERM from systemd, `timeout` or `kill -TERM -PGID`, reach the whole process
    # group: the parent shuts down and closes our input, and we commit what we hold; dying here
    # would fail appends the parent is finishing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    position = WriterPosition(
        Path(directory),
        int(segment_max_bytes),
        int(last_first),
        int(last_size),
        int(next_number),
        -1,
    )
    writer = SegmentWriter(position)
    committer = _Committer(writer)
    try:
        _write_out(b"S")  # ready: the parent's open waits for this
    except OSError:
        os._exit(0)  # the parent is gone
    buffer = bytearray()
    key: Ed25519PrivateKey | None = None
    # Signed frames not yet handed to the committer; the first is record number ``first``.
    signed: list[bytes] = []
    first = position.next_record_number
    released = first  # the write gate: numbers below this may be written

    def hand_over() -> None:
        nonlocal signed, first
        count = min(len(signed), released - first)
        if count > 0:
            committer.add(signed[:count])
            del signed[:count]
            first += count

    try:
        while data := os.read(0, READ_BYTES):
            buffer += data
            while (message := _take_message(buffer)) is not None:
                kind, body = message
                if kind == b"K":
                    key = Ed25519PrivateKey.from_private_bytes(body)
                    continue
                if kind == b"R":
                    (limit,) = LIMIT.unpack(body)
                    released = max(released, limit)
                    continue
                if key is None:
                    raise ValueError("a batch arrived before any key")
                signed.extend(_signed_frames(body, key))
                if min(len(signed), released - first) >= HAND_OVER_EVERY:
                    hand_over()
            hand_over()
        if buffer:
            raise ValueError(f"input ended inside a message ({len(buffer)} bytes)")
    except (OSError, ValueError) as error:
        _fail_fast(error, 2)
    # What was never released is dropped: its commands never reached the journal.
    committer.finish()
    writer.close()
    return 0
