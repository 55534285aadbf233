"""SIGTERM to the whole process group is a clean stop.

systemd, ``timeout`` and ``kill -TERM -PGID`` signal every process of the group, so the ledger's
writer child gets the SIGTERM too. It must not die of it: it exits when the parent closes its
input, after committing what it holds. Otherwise the parent's appends fail ("ledger writer
process ... ended (exit status -15)") and commands in flight get ``state.venue_unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ledger.audit import verify_ledger
from tests.venue.core.test_crash import check_recovered
from tests.venue.test_serve import free_port, get_json, start_serve

ROOT = Path(__file__).resolve().parents[2]


def audit_verify(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ledger.audit", "--data-dir", str(data_dir), "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def bad_log_lines(stderr: str) -> list[str]:
    """Lines an operator would read as trouble: errors, criticals, tracebacks, a dead child."""
    bad = []
    for line in stderr.splitlines():
        if "ended (exit status" in line or "Traceback" in line:
            bad.append(line)
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            bad.append(line)
    return bad


def poll_health(port: int, stop: threading.Event, answered: list[int]) -> None:
    """Ask /healthz again and again until ``stop`` (or the venue stops answering)."""
    while not stop.is_set():
        try:
            answered.append(get_json(f"http://127.0.0.1:{port}/healthz")[0])
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return


def serve_then_sigterm_the_group(data_dir: Path, port: int, log_path: Path) -> tuple[int, list]:
    """Start ``venue serve`` in its own process group (like a systemd unit), wait until it is
    healthy, keep it answering /healthz, then SIGTERM the whole group; (exit status, answers)."""
    answered: list[int] = []
    with log_path.open("w") as log_file:
        process = start_serve(
            data_dir,
            port,
            stdout=subprocess.DEVNULL,
            stderr=log_file,  # a file: the access log of the polling below would fill a pipe
            text=False,
            process_group=0,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"venue exited early: {log_path.read_text()}"
            assert time.monotonic() < deadline, "venue did not become healthy in time"
            try:
                status, _ = get_json(f"http://127.0.0.1:{port}/healthz")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
                continue
            assert status == 200
            break
        stop = threading.Event()
        poller = threading.Thread(target=poll_health, args=(port, stop, answered), daemon=True)
        poller.start()
        time.sleep(0.3)  # serving right up to the signal
        os.killpg(process.pid, signal.SIGTERM)
        stop.set()
        poller.join(timeout=10)
        return process.wait(timeout=30), answered
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_sigterm_to_the_process_group_stops_venue_serve_cleanly(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    for start in ("first-start", "restart"):  # the first stop also writes a snapshot
        log_path = tmp_path / f"{start}.log"
        code, answered = serve_then_sigterm_the_group(data_dir, port, log_path)
        stderr = log_path.read_text()
        assert answered and set(answered) == {200}, (start, answered[-5:])
        assert code == 0, (start, stderr)
        assert bad_log_lines(stderr) == [], (start, stderr)
        assert '"venue stopped cleanly"' in stderr, (start, stderr)
        audit = audit_verify(data_dir)
        assert audit.returncode == 0, (start, audit.stdout, audit.stderr)


def test_sigterm_to_the_process_group_under_load_answers_every_command_in_flight(
    tmp_path: Path,
) -> None:
    """The crash driver keeps eight commands in flight; SIGTERM to its group is a clean stop:
    nothing fails with ``state.venue_unavailable``, the driver closes the venue and exits 0, and
    a restart holds everything that was acknowledged."""
    data_dir, log_path = tmp_path / "data", tmp_path / "stderr.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.venue.core.crash_driver", str(data_dir), "7"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            process_group=0,
        )
    lines: list[str] = []

    def read_continuously() -> None:  # never let the driver block on a full pipe
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_continuously, daemon=True)
    try:
        ready = process.stdout.readline()
        assert ready.startswith('{"ready"'), f"driver did not start: {ready!r}"
        reader.start()
        deadline = time.monotonic() + 30
        while len(lines) < 200:  # acknowledgements are flowing: the venue is busy
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the driver acknowledged too little"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()
    stderr = log_path.read_text()
    records = [json.loads(line) for line in lines]
    unavailable = [r for r in records if r.get("error") == "state.venue_unavailable"]
    assert unavailable == [], unavailable[:3]
    assert process.returncode == 0, stderr
    assert bad_log_lines(stderr) == [], stderr
    assert records and "stopped" in records[-1], (records[-1:], stderr)
    acknowledged = [r for r in records if "command" in r]
    assert sum(1 for r in acknowledged if "result" in r) >= 100  # refusals are lines too
    seq = asyncio.run(check_recovered(data_dir, acknowledged))
    assert seq == records[-1]["stopped"] + 1  # nothing lost, nothing after the stop
    result = verify_ledger(data_dir, workers=2)
    assert result.ok, result.problem


# A group signal can reach the writer child before its interpreter has even started: the venue
# is then opening, or has just said "venue ready" (Ledger.open does not wait for the child).
EARLY_SIGNALS = """
import asyncio, os, signal, subprocess, sys
from pathlib import Path
from tests.venue.core.helpers import venue_config
from venue.service import Venue

popen = subprocess.Popen
def signalled_at_once(*args, **kwargs):
    process = popen(*args, **kwargs)
    os.kill(process.pid, signal.SIGTERM)  # as from `kill -TERM -PGID` / Ctrl-C right then
    os.kill(process.pid, signal.SIGINT)
    return process
subprocess.Popen = signalled_at_once

async def main():
    venue = await Venue.open(venue_config(Path(sys.argv[1])))
    try:
        await venue.admit("P-NEW1", "New Bank", "interbank", "broker")  # a block to write
    finally:
        await venue.close()
    print(venue.ledger.height)

asyncio.run(main())
"""


def test_the_writer_child_ignores_group_signals_from_its_first_instant(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-c", EARLY_SIGNALS, str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert bad_log_lines(result.stderr) == [] and "KeyboardInterrupt" not in result.stderr
    assert int(result.stdout) >= 21  # the demo seed and the admission, all written
    audit = audit_verify(data_dir)
    assert audit.returncode == 0, (audit.stdout, audit.stderr)
