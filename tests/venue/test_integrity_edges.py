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
import shutil
from pathlib import Path

import pytest

from ledger.audit import verify_ledger
from ledger.keys import generate_private_key, key_id, load_private_key, public_key_to_text
from ledger.recordlog import LogScanner
from tests.venue.core.helpers import venue_config
from tests.venue.core.test_crash import run_driver_until_killed
from venue.service import Venue, VenueStartupError


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` but the record logs' lock files."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "LOCK"
    }


def open_venue(data_dir: Path) -> Venue:
    """Open the venue on ``data_dir`` (closing it again when it opens): what a start does."""

    async def run() -> Venue:
        venue = await Venue.open(venue_config(data_dir, seed_demo=False))
        await venue.close()
        return venue

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


def last_record(log_directory: Path):
    return list(LogScanner(log_directory))[-1]
