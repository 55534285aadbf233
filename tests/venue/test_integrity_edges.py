"""Issue 14, at the venue: tampering with a crashed data directory is refused, never absorbed.

One data directory is made the way the outside audit made theirs: a venue under concurrent
submitters, SIGKILLed while it was acknowledging commands (``crash_driver``). Each test damages
a private copy of it and opens the venue on it as ``venue serve`` does (``Venue.open``):

- a changed byte in the last journal record is corruption (the record was complete on disk:
  it may have been acknowledged), refused with file, offset and record, the directory left as
  it was; ``venue-audit accept-loss`` is the explicit way to give it up;
- a changed byte in the newest checkpoint record likewise, and ``venue-audit verify`` fails;
- an edit of the newest checkpoint with its checksum recomputed is caught by its signature;
- ``keys/ledger_ed25519.pub`` must hold the signing key's public key.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import matching
from ledger.audit import main as audit_main
from ledger.audit import verify_ledger
from ledger.keys import generate_private_key, key_id, load_private_key, public_key_to_text
from ledger.ledger import LedgerCorruptError
from ledger.recordlog import LogScanner, RecordLogCorruptError, ScannedRecord, frame_record
from tests.venue.core.helpers import venue_config
from tests.venue.core.test_crash import run_driver_until_killed
from tests.venue.test_serve import ROOT, free_port
from venue.core.journal import decode_record
from venue.core.recovery import RecoveryError
from venue.service import Venue, VenueStartupError


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` but the record logs' lock files."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "LOCK"
    }


def open_venue(data_dir: Path, inspect: Callable[[Venue], Any] | None = None) -> Any:
    """Open the venue on ``data_dir`` as a start does, and close it again when it opens;
    ``inspect(venue)`` (while it is open) is returned, else the closed venue."""

    async def run() -> Any:
        venue = await Venue.open(venue_config(data_dir, seed_demo=False))
        try:
            return inspect(venue) if inspect is not None else venue
        finally:
            await venue.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory of a venue SIGKILLed while acknowledging commands (never reopened)."""
    data_dir = tmp_path_factory.mktemp("crashed") / "data"
    acknowledged = run_driver_until_killed(data_dir, seed=14, run_seconds=0.6)
    assert sum(1 for line in acknowledged if "result" in line) > 10
    return data_dir


@pytest.fixture
def copy(crashed: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(crashed, target)
    return target


def test_an_edited_public_key_file_stops_the_venue_and_fails_verify(copy: Path) -> None:
    public = copy / "keys" / "ledger_ed25519.pub"
    signing = load_private_key(copy / "keys" / "ledger_ed25519.key")
    assert public.read_text().strip() == public_key_to_text(signing)
    stranger = generate_private_key()
    public.write_text(public_key_to_text(stranger) + "\n")
    before = tree_digest(copy)
    with pytest.raises(VenueStartupError) as caught:
        open_venue(copy)
    message = str(caught.value)
    assert str(public) in message and key_id(stranger) in message and key_id(signing) in message
    assert tree_digest(copy) == before  # refused before anything was opened
    result = verify_ledger(copy, workers=1)
    assert not result.ok and result.problem_code == "audit.public_key_mismatch"
    assert str(public) in (result.problem or "")
    # One hex digit changed is just as wrong; an unreadable file too.
    text = public_key_to_text(signing)
    public.write_text(("0" if text[0] != "0" else "1") + text[1:] + "\n")
    with pytest.raises(VenueStartupError, match=r"ledger_ed25519\.pub holds key"):
        open_venue(copy)
    public.write_text("not a key\n")
    with pytest.raises(VenueStartupError, match="does not hold a public key"):
        open_venue(copy)
    # A missing file is written again from the signing key, and the venue starts.
    public.unlink()
    open_venue(copy)
    assert public.read_text().strip() == public_key_to_text(signing)
    verified = verify_ledger(copy, workers=1)
    assert verified.ok, verified.problem


def last_record(log_directory: Path) -> ScannedRecord:
    return list(LogScanner(log_directory))[-1]


def flip(record: ScannedRecord, at: int) -> bytes:
    """Flip every bit of the byte ``at`` bytes into ``record``'s frame; the file's new bytes."""
    path = Path(record.path)
    data = bytearray(path.read_bytes())
    data[record.offset + at] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def audit(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return audit_main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def last_command(crashed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, bool]:
    """The crashed journal's last record number, and whether that command's blocks were on the
    crashed ledger (learnt from an intact copy, which is then thrown away). A command whose
    journal record was durable at the kill may still have had its blocks held back (the ledger's
    write gate releases them only then): recovery appends them again, and then they were not on
    the crashed ledger."""
    record = last_record(crashed / "journal")
    _seq, _ts, command = decode_record(record.payload)
    intact = tmp_path_factory.mktemp("intact") / "data"
    shutil.copytree(crashed, intact)

    def blocks_of_the_last_command(venue: Venue) -> bool:
        if command.to_record()["type"] != "place_order":
            return False  # a cancel puts nothing on the ledger
        order_id = venue.exchange.client_orders[(command.participant, command.client_order_id)]
        on_crashed_ledger = venue.recovery["ledger_blocks"] - venue.recovery["reappended_blocks"]
        heights = [venue.ledger.find_fill(trade) for trade in venue.exchange.orders[order_id].fills]
        return any(
            height < on_crashed_ledger
            and venue.ledger.block(height).block.payload["taker_order_id"] == order_id
            for height in heights
        )

    has_blocks = open_venue(intact, blocks_of_the_last_command)
    return record.record_number, has_blocks


def test_a_changed_byte_in_the_last_journal_record_is_refused_untouched(copy: Path) -> None:
    """The outside audit's finding: this was truncated as a torn tail and the acknowledged
    command was gone. The whole record is on disk, so it is corruption."""
    record = last_record(copy / "journal")
    frame_length = 8 + len(record.payload)
    original = Path(record.path).read_bytes()
    for at in (0, 4, 8, 8 + len(record.payload) // 2, frame_length - 1):  # length, crc, payload
        flip(record, at)
        before = tree_digest(copy)
        with pytest.raises(RecordLogCorruptError) as caught:
            open_venue(copy)
        error = caught.value
        assert (error.path, error.offset, error.record_number) == (
            record.path,
            record.offset,
            record.record_number,
        ), at
        assert f"venue-audit accept-loss {copy / 'journal'} --record {record.record_number}" in (
            str(error)
        )
        assert tree_digest(copy) == before  # nothing truncated, nothing else opened
        Path(record.path).write_bytes(original)


def test_venue_serve_names_the_damaged_journal_record_and_the_way_out(copy: Path) -> None:
    record = last_record(copy / "journal")
    flip(record, 8 + 2)
    engine = ["--allow-reference-engine"] if matching.IMPLEMENTATION == "py" else []
    result = subprocess.run(
        [sys.executable, "-m", "venue.cli", "serve", "--data-dir", str(copy), "--no-demo",
         "--port", str(free_port()), *engine],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    refusal = [line for line in result.stderr.splitlines() if line.startswith("venue:")]
    assert len(refusal) == 1 and "refusing to start" in refusal[0]
    assert record.path in refusal[0] and f"record {record.record_number}" in refusal[0]
    assert "accept-loss" in refusal[0] and "Traceback" not in result.stderr


def test_accepting_the_loss_of_the_last_journal_record_opens_one_command_short(
    copy: Path, last_command: tuple[int, bool]
) -> None:
    number, has_blocks = last_command
    record = last_record(copy / "journal")
    assert record.record_number == number
    flip(record, 8 + 1)
    code, out, err = audit("accept-loss", str(copy / "journal"), "--record", str(number), "--json")
    assert code == 0, err
    assert json.loads(out)["records"] == number  # records 0 .. number - 1 remain
    assert (copy / "journal" / f"accepted-loss-{number:020d}.bin").exists()
    if has_blocks:
        # Its fills are on the signed ledger: the venue cannot be rebuilt without the command,
        # and says so rather than open a venue that disagrees with its ledger.
        with pytest.raises(RecoveryError, match="ahead of the journal"):
            open_venue(copy)
        return
    venue = open_venue(copy)
    assert venue.exchange.seq == number  # sequence numbers 1 .. number: one command short
    result = verify_ledger(copy, workers=1)
    assert result.ok, result.problem


def test_a_changed_byte_in_the_newest_checkpoint_is_refused_and_fails_verify(copy: Path) -> None:
    record = last_record(copy / "ledger" / "checkpoints")
    flip(record, 8 + len(record.payload) - 5)  # inside the signature line
    before = tree_digest(copy)
    with pytest.raises(RecordLogCorruptError) as caught:
        open_venue(copy)
    assert (caught.value.path, caught.value.record_number) == (record.path, record.record_number)
    assert tree_digest(copy) == before  # not dropped, not re-signed
    result = verify_ledger(copy, workers=1)
    assert not result.ok and result.problem_code == "audit.bad_checkpoint"
    assert "accept-loss" in (result.problem or "")
    code, _, err = audit(
        "accept-loss", str(copy / "ledger" / "checkpoints"), "--record", str(record.record_number)
    )
    assert code == 0, err
    open_venue(copy)  # the venue signs a new checkpoint of every block when it closes
    verified = verify_ledger(copy, workers=1)
    assert verified.ok, verified.problem
    assert verified.checkpoints == record.record_number + 1


def test_an_edited_newest_checkpoint_with_its_checksum_recomputed_is_refused(copy: Path) -> None:
    """The checksum no longer shows it: the signature must."""
    record = last_record(copy / "ledger" / "checkpoints")
    body, _, signatures = record.payload.decode().partition("\n\n")
    lines = body.split("\n")
    assert lines[3].startswith("time_ns ")
    lines[3] = f"time_ns {int(lines[3].split()[1]) + 1}"
    forged = ("\n".join(lines) + "\n\n" + signatures).encode()
    path = Path(record.path)
    path.write_bytes(path.read_bytes()[: record.offset] + frame_record(forged))
    before = tree_digest(copy)
    with pytest.raises(LedgerCorruptError, match="not validly signed") as caught:
        open_venue(copy)
    assert f"record {record.record_number}" in str(caught.value)
    assert tree_digest(copy) == before
    result = verify_ledger(copy, workers=1)
    assert not result.ok and result.problem_code == "audit.bad_checkpoint"
