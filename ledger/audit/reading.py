"""Reading a ledger directory for the audit: strictly, read-only, without the Ledger facade.

The audit must be able to *report* damage (the first bad height and what was wrong) rather
than refuse to open, so it reads the record logs through the strict scanner
(``recordlog.LogScanner``) and decodes blocks with block.py's strict decoder itself. A torn
tail (an incomplete last record: a write in progress, or a crash the ledger has not yet
recovered from) is an ``IncompleteTailWarning``, not an error.

Also the two exceptions every part of the audit uses: ``AuditUsageError`` (exit status 2) and
``AuditFailure`` (exit status 1).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from ledger.block import BlockError, SignedBlock, decode_signed_block
from ledger.ledger import BLOCKS_DIRECTORY, CHECKPOINTS_DIRECTORY
from ledger.recordlog import LogScanner, ScanProblem

__all__ = [
    "AuditFailure",
    "AuditUsageError",
    "IncompleteTailWarning",
    "ledger_directory",
    "read_blocks",
    "read_checkpoint_notes",
]


# read_blocks reports progress this often (in blocks): rarely enough to cost nothing.
PROGRESS_EVERY = 1024


class AuditUsageError(Exception):
    """The command line or the data directory is unusable (exit status 2)."""


class AuditFailure(Exception):
    """What was asked for is missing or does not check out (exit status 1)."""


def ledger_directory(data_dir: str | os.PathLike[str]) -> Path:
    """The ledger directory of a venue data directory.

    ``data_dir/ledger`` normally; ``data_dir`` itself if it already is a ledger directory
    (holds ``blocks/``), so a benchmark can point at a bare ledger.
    """
    base = Path(data_dir)
    if not base.is_dir():
        raise AuditUsageError(f"data directory {base} does not exist")
    if (base / BLOCKS_DIRECTORY).is_dir():
        return base
    if (base / "ledger" / BLOCKS_DIRECTORY).is_dir():
        return base / "ledger"
    raise AuditUsageError(f"no ledger in {base} (expected {base / 'ledger' / BLOCKS_DIRECTORY})")


class IncompleteTailWarning(UserWarning):
    """The last record is incomplete: a write in progress, or a crash not yet recovered."""


def read_checkpoint_notes(directory: Path) -> tuple[list[str], str | None]:
    """Every stored checkpoint note in order, and a description of a storage problem if any.

    An incomplete last checkpoint record (a torn tail) is skipped with an
    ``IncompleteTailWarning``: it was never durable, so it was never published.
    """
    notes: list[str] = []
    scanner = LogScanner(directory / CHECKPOINTS_DIRECTORY)
    if not (directory / CHECKPOINTS_DIRECTORY).is_dir():
        return notes, None
    for record in scanner:
        notes.append(record.payload.decode("utf-8", errors="replace"))
    problem = _problem_after_scan(scanner, "checkpoint")
    if problem is not None:
        return notes, f"checkpoint store: {problem.explain()}"
    return notes, None


def read_blocks(
    data_dir: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> Iterator[SignedBlock]:
    """Every block in height order, strictly decoded; ``AuditFailure`` at the first problem.

    An incomplete last record (torn tail) ends the iteration with an ``IncompleteTailWarning``
    instead: the ledger itself truncates it on open. No signature checks: use
    ``verify_ledger`` for those. ``progress`` is called with the number of blocks read so far,
    every ``PROGRESS_EVERY`` blocks.
    """
    scanner = LogScanner(ledger_directory(data_dir) / BLOCKS_DIRECTORY)
    for record in scanner:
        if progress is not None and (record.record_number + 1) % PROGRESS_EVERY == 0:
            progress(record.record_number + 1)
        try:
            signed = decode_signed_block(record.payload)
        except BlockError as error:
            raise AuditFailure(f"height {record.record_number}: {error}") from error
        if signed.block.height != record.record_number:
            raise AuditFailure(
                f"height {record.record_number}: record holds block {signed.block.height}"
            )
        yield signed
    problem = _problem_after_scan(scanner, "record")
    if problem is not None:
        raise AuditFailure(f"height {problem.record_number}: {problem.explain()}")


def _problem_after_scan(scanner: LogScanner, what: str) -> ScanProblem | None:
    """What stopped a finished scan, if it is damage; a torn tail (an incomplete last record,
    never durable) is only an ``IncompleteTailWarning``."""
    problem = scanner.problem
    if problem is not None and problem.is_torn_tail:
        warnings.warn(
            f"ignored an incomplete {what} at the end: {problem.describe()}",
            IncompleteTailWarning,
            stacklevel=3,
        )
        return None
    return problem
