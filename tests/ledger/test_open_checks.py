"""What opening a ledger checks (issue 14, item 4), against edits that recompute the checksum.

Opening checks the newest stored checkpoint's signature (by the key in force at its size), its
origin and its root against the rebuilt tree, and the signature of every block after it (the
blocks the next checkpoint will sign over). Each case edits a record and writes it back with a
valid frame checksum, as someone who knows the format would; opening must refuse it, naming
the record, and change nothing.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import make_checkpoint, parse_checkpoint, sign_checkpoint
from ledger.keys import generate_private_key
from ledger.ledger import BLOCKS_DIRECTORY, CHECKPOINTS_DIRECTORY, LedgerCorruptError
from ledger.recordlog import LogScanner, ScannedRecord, frame_record
from ledger.state_file import STATE_FILE_NAME
from tests.ledger.test_ledger import fill_payload, open_ledger, seed_market


def rewrite_record(record: ScannedRecord, payload: bytes) -> None:
    """Replace one record (which must be the last of its segment) with a valid frame."""
    path = Path(record.path)
    path.write_bytes(path.read_bytes()[: record.offset] + frame_record(payload))


def newest(directory: Path, log: str) -> ScannedRecord:
    return list(LogScanner(directory / log))[-1]


@pytest.fixture
def closed(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    """A closed ledger: its newest checkpoint covers every block; a state file beside it."""
    key = generate_private_key()
    with open_ledger(tmp_path / "ledger", key) as ledger:
        seed_market(ledger)
        for trade in range(25):
            ledger.append("fill", fill_payload(trade, qty=1, amount=100))
    assert (tmp_path / "ledger" / STATE_FILE_NAME).exists()
    return tmp_path / "ledger", key


def forge_time(note: str, key: Ed25519PrivateKey) -> str:
    """The note with its time_ns line changed and the old signature kept: the signed text
    no longer matches."""
    body, _, signatures = note.partition("\n\n")
    lines = body.split("\n")
    lines[3] = "time_ns 1"
    return "\n".join(lines) + "\n\n" + signatures


def flip_signature_bit(note: str, key: Ed25519PrivateKey) -> str:
    """One bit of the Ed25519 signature changed, the line still canonical base64."""
    body, _, signatures = note.partition("\n\n")
    prefix, _, encoded = signatures.rstrip("\n").rpartition(" ")
    blob = bytearray(base64.b64decode(encoded))
    blob[-1] ^= 1
    return f"{body}\n\n{prefix} {base64.b64encode(bytes(blob)).decode()}\n"


def signed_by_a_stranger(note: str, key: Ed25519PrivateKey) -> str:
    checkpoint, _ = parse_checkpoint(note)
    return sign_checkpoint(checkpoint, generate_private_key())


def signed_by_the_venue_with_another_size(note: str, key: Ed25519PrivateKey) -> str:
    """Validly signed by the venue key, but its root is not the tree's at that size."""
    checkpoint, _ = parse_checkpoint(note)
    return sign_checkpoint(
        make_checkpoint(checkpoint.origin, checkpoint.size - 1, checkpoint.root_hash), key
    )


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (forge_time, "not validly signed"),
        (flip_signature_bit, "not validly signed"),
        (signed_by_a_stranger, "not validly signed"),
        (signed_by_the_venue_with_another_size, "does not match the blocks"),
    ],
)
def test_a_forged_newest_checkpoint_is_refused_at_open(
    closed: tuple[Path, Ed25519PrivateKey], forge, reason: str
) -> None:
    directory, key = closed
    record = newest(directory, CHECKPOINTS_DIRECTORY)
    rewrite_record(record, forge(record.payload.decode(), key).encode())
    before = Path(record.path).read_bytes()
    with pytest.raises(LedgerCorruptError, match=reason) as caught:
        open_ledger(directory, key)
    assert f"record {record.record_number}" in str(caught.value)
    assert Path(record.path).read_bytes() == before  # nothing truncated or re-signed


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, Ed25519PrivateKey]:
    """A copy of a ledger taken while it was open, with blocks after its newest checkpoint:
    what a killed venue leaves."""
    key = generate_private_key()
    # No checkpoint by count or time during the test: the one issued below is the newest.
    ledger = open_ledger(
        tmp_path / "live", key, checkpoint_every_blocks=1000, checkpoint_every_ms=600_000
    )
    try:
        seed_market(ledger)
        ledger.issue_checkpoint()
        for trade in range(14):
            ledger.append("fill", fill_payload(trade, qty=1, amount=100))
        ledger.flush()
        shutil.copytree(tmp_path / "live", tmp_path / "crashed")
    finally:
        ledger.close()
    covered = parse_checkpoint(newest(tmp_path / "crashed", CHECKPOINTS_DIRECTORY).payload)[0]
    assert covered.size < len(list(LogScanner(tmp_path / "crashed" / BLOCKS_DIRECTORY)))
    return tmp_path / "crashed", key


@pytest.mark.parametrize("region", ["signature", "payload"])
def test_a_changed_block_after_the_newest_checkpoint_is_refused_at_open(
    crashed: tuple[Path, Ed25519PrivateKey], region: str
) -> None:
    """The last block has no successor linking to it and no checkpoint over it: only its
    signature shows the edit (the signature is not part of the block hash)."""
    directory, key = crashed
    record = newest(directory, BLOCKS_DIRECTORY)
    changed = bytearray(record.payload)
    if region == "signature":
        changed[-1] ^= 1
    else:
        at = changed.index(b'"qty":1') + len(b'"qty":')
        changed[at : at + 1] = b"2"  # a fill of 2 units, its deltas left as they were
    rewrite_record(record, bytes(changed))
    before = Path(record.path).read_bytes()
    with pytest.raises(LedgerCorruptError, match=r"block\.bad_signature") as caught:
        open_ledger(directory, key)
    assert caught.value.height == record.record_number
    assert Path(record.path).read_bytes() == before


def test_a_crashed_ledger_with_an_intact_tail_opens_and_checkpoints_it(
    crashed: tuple[Path, Ed25519PrivateKey],
) -> None:
    directory, key = crashed
    blocks = len(list(LogScanner(directory / BLOCKS_DIRECTORY)))
    with open_ledger(directory, key) as ledger:
        assert ledger.height + 1 == blocks
    assert parse_checkpoint(newest(directory, CHECKPOINTS_DIRECTORY).payload)[0].size == blocks
