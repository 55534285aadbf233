"""``venue-audit``: the settlement clerk's tool to verify and read the venue's ledger.

Reads ``<data_dir>/ledger`` (``blocks/`` and ``checkpoints/`` record logs, see docs/LEDGER.md)
strictly and read-only, without the ``Ledger`` facade: it must be able to *report* damage (the
first bad height and what was wrong) rather than refuse to open. The block rules it checks are
block.py's own functions, the same the ledger writes with (``check_block_rules``,
``fill_deltas``, ``check_non_negative``, ``introduced_key``).

Modules, one concern each:

- ``reading``: locating a ledger, reading its block and checkpoint records strictly; the
  ``AuditUsageError`` (exit 2) and ``AuditFailure`` (exit 1) exceptions;
- ``chunks``: the worker side of ``verify``: a chunk of records checked with no state from
  before it (``check_chunk`` -> ``ChunkReport``), and the per-block reference check replays use
  (``check_records`` -> ``CheckedRecord`` / ``RecordProblem``);
- ``verify``: ``verify_ledger`` and the sequential ``Verifier`` (chain edges, keys, balances,
  Merkle tree, checkpoints), the pipeline that feeds the workers;
- ``reports``: balances, block views, receipts, volume reports, trusted keys;
- ``cli``: the command line (``main``; also ``python -m ledger.audit``).

Library API (for the benchmark and tests), importable from ``ledger.audit``:

- ``verify_ledger(data_dir, *, workers=None, executor="process", pinned_key=None,
  progress=None, chunk_records=1024, pinned_key_source=...) -> VerifyResult``: every check of
  docs/LEDGER.md section 10. Block decoding, validation and Ed25519 signature checks run in
  ``workers`` processes (default: ``verify.default_workers``, inline below a 2 MB block log,
  else all cores); ``workers=1`` checks inline; ``executor="thread"`` uses threads.
- ``read_blocks(data_dir, progress=None) -> Iterator[SignedBlock]``;
  ``compute_balances(data_dir, at=None, progress=None)``; ``make_receipt``, ``volume_report``,
  ``segment_pair``, ``block_to_json``; ``main(argv)``.
"""

from __future__ import annotations

from ledger.audit.cli import build_parser, main
from ledger.audit.reading import (
    AuditFailure,
    AuditUsageError,
    IncompleteTailWarning,
    ledger_directory,
    read_blocks,
    read_checkpoint_notes,
)
from ledger.audit.reports import (
    block_to_json,
    compute_balances,
    make_receipt,
    segment_pair,
    trusted_keys,
    volume_report,
)
from ledger.audit.verify import CHUNK_RECORDS, VerifyResult, verify_ledger

__all__ = [
    "CHUNK_RECORDS",
    "AuditFailure",
    "AuditUsageError",
    "IncompleteTailWarning",
    "VerifyResult",
    "block_to_json",
    "build_parser",
    "compute_balances",
    "ledger_directory",
    "main",
    "make_receipt",
    "read_blocks",
    "read_checkpoint_notes",
    "segment_pair",
    "trusted_keys",
    "verify_ledger",
    "volume_report",
]
