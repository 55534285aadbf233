"""``venue-audit export-ledger DIR``: the part of a data directory a clerk or auditor may hold.

What and why
------------
A settlement clerk who runs ``venue-audit`` against the venue's whole data directory also holds
the ledger signing key and every participant's API secret (the journal and the snapshots keep
HMAC secrets). The audit needs none of that: only the signed blocks, the signed checkpoints and
the public key. :func:`export_ledger` copies exactly those into a new directory laid out like a
data directory, so every read-only ``venue-audit`` command runs on it unchanged::

    DIR/ledger/blocks/            block record log, records 0 .. N-1
    DIR/ledger/checkpoints/       every checkpoint record read, the newest of size N
    DIR/keys/ledger_ed25519.pub   the venue's public key (hex), as the venue wrote it

Nothing else is copied: not the signing key, the journal, the snapshots, the credentials, nor
the ledger state file (a cache MACed under a key derived from the signing key: of no use
without that key, and ``venue-audit`` ignores it).

Consistent while the venue runs: the checkpoint log is read first, and its newest checkpoint
(size ``N``) is only ever written once blocks ``0 .. N-1`` are durable, so those blocks are all
on disk by the time the blocks are read, and only they are copied; blocks after the newest
checkpoint (appended meanwhile, possibly not yet durable) are left out. The copy is therefore
always a ledger whose newest checkpoint covers every block it holds. Segment files are copied
byte for byte up to the end of record ``N-1`` (the record log's own framing, every checksum
checked on the way), then fsynced, then their directories.

The public key file must hold the key in force at the end of the exported chain (what ``verify``
checks there); if the venue rotated its key after the newest checkpoint it does not yet, and the
export is refused (export again once a checkpoint covers the rotation, at most a checkpoint
interval later).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ledger.audit.reading import AuditFailure, AuditUsageError, ledger_directory
from ledger.block import KEY_KIND_CODES, BlockError, decode_signed_block, introduced_key
from ledger.checkpoint import CheckpointError, parse_checkpoint
from ledger.keys import PUBLIC_KEY_FILE_NAME, KeyFileError, key_id, load_public_key
from ledger.ledger import BLOCKS_DIRECTORY, CHECKPOINTS_DIRECTORY
from ledger.recordlog import LogScanner, fsync_directory, write_all

__all__ = ["ExportResult", "export_ledger"]

# A record's kind code is its byte 5 (docs/LEDGER.md section 2): only key blocks are decoded.
_KIND_OFFSET = 5


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export holds: ``blocks`` blocks (``0 .. blocks - 1``), covered by the newest of
    its ``checkpoints`` checkpoints; ``key_id`` of the key in force at its end."""

    directory: str
    blocks: int
    checkpoints: int
    key_id: str
    files: list[str]

    def to_json(self) -> dict:
        return {
            "ok": True,
            "directory": self.directory,
            "blocks": self.blocks,
            "checkpoints": self.checkpoints,
            "key_id": self.key_id,
            "files": self.files,
        }


def export_ledger(
    data_dir: str | os.PathLike[str], destination: str | os.PathLike[str]
) -> ExportResult:
    """Copy ``data_dir``'s ledger (blocks a checkpoint covers, checkpoints, public key) into
    ``destination``, which must not exist yet or be an empty directory.

    ``AuditUsageError`` if the destination is unusable or the data directory has no public key
    file; ``AuditFailure`` if the ledger has no checkpoint yet, a record before the newest
    checkpoint's size is damaged, or the public key file does not hold the key in force.
    """
    source = ledger_directory(data_dir)
    public_key_path = source.parent / "keys" / PUBLIC_KEY_FILE_NAME
    target = Path(destination)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AuditUsageError(f"{target} exists and is not an empty directory")
    try:
        public_key = load_public_key(public_key_path)
    except (OSError, KeyFileError) as error:
        raise AuditUsageError(f"no usable public key file {public_key_path}: {error}") from error

    # Checkpoints first: the newest one's size bounds the blocks, all durable before it.
    checkpoint_scanner = LogScanner(source / CHECKPOINTS_DIRECTORY)
    notes = [record.payload for record in checkpoint_scanner]
    _refuse_damage(checkpoint_scanner, "checkpoint log")
    if not notes:
        raise AuditFailure("the ledger has no checkpoint yet: nothing is covered to export")
    try:
        covered = parse_checkpoint(notes[-1].decode("utf-8"))[0].size
    except (CheckpointError, UnicodeDecodeError) as error:
        raise AuditFailure(f"the newest checkpoint does not parse: {error}") from error

    ledger_target = target / "ledger"
    files: list[str] = []
    key_in_force: list[bytes] = []

    def note_keys(payload: bytes) -> None:
        if len(payload) > _KIND_OFFSET and payload[_KIND_OFFSET] in KEY_KIND_CODES:
            try:
                introduced = introduced_key(decode_signed_block(payload).block)
            except BlockError as error:
                raise AuditFailure(f"a key block does not decode: {error}") from error
            if introduced is not None:
                key_in_force.append(introduced)

    blocks = _copy_log_prefix(
        source / BLOCKS_DIRECTORY, ledger_target / BLOCKS_DIRECTORY, covered, files, note_keys
    )
    if blocks < covered:
        raise AuditFailure(
            f"the block log holds {blocks} blocks, fewer than the {covered} its newest "
            "checkpoint covers: run venue-audit verify on the data directory"
        )
    _copy_log_prefix(
        source / CHECKPOINTS_DIRECTORY, ledger_target / CHECKPOINTS_DIRECTORY, len(notes), files
    )
    raw_public_key = public_key.public_bytes_raw()
    if not key_in_force or key_in_force[-1] != raw_public_key:
        in_force = key_id(key_in_force[-1]) if key_in_force else "none"
        raise AuditFailure(
            f"{public_key_path} holds key {key_id(raw_public_key)}, but the key in force at the "
            f"newest checkpoint (size {covered}) is {in_force}: a key rotation not yet covered "
            "by a checkpoint; export again once one is issued"
        )
    keys_target = target / "keys"
    keys_target.mkdir(parents=True, exist_ok=True)
    copied_key = keys_target / PUBLIC_KEY_FILE_NAME
    _write_durably(copied_key, public_key_path.read_bytes(), 0o644)
    files.append(str(copied_key.relative_to(target)))
    for directory in (keys_target, ledger_target, target):
        fsync_directory(directory)
    return ExportResult(str(target), covered, len(notes), key_id(raw_public_key), sorted(files))


def _refuse_damage(scanner: LogScanner, what: str) -> None:
    """A torn tail (a write in progress) is fine: it is past what is copied. Damage is not."""
    problem = scanner.problem
    if problem is not None and not problem.is_torn_tail:
        raise AuditFailure(f"{what}: {problem.explain()}")


def _copy_log_prefix(source: Path, target: Path, count: int, files: list[str], visit=None) -> int:
    """Copy the first ``count`` records of the record log ``source`` into ``target``, byte for
    byte, segment by segment (each cut after its last copied record), every checksum checked by
    the scanner; ``visit(payload)`` sees each copied record. Returns how many were copied."""
    target.mkdir(parents=True, exist_ok=True)
    scanner = LogScanner(source)
    copied = 0
    segment_path: str | None = None
    segment_end = 0

    def flush_segment() -> None:
        if segment_path is None:
            return
        with open(segment_path, "rb") as handle:
            data = handle.read(segment_end)
        name = Path(segment_path).name
        _write_durably(target / name, data, 0o644)
        files.append(str(Path(target.parent.name, target.name, name)))

    for record in scanner:
        if copied == count:
            break
        if record.path != segment_path:
            flush_segment()
            segment_path = record.path
        segment_end = record.offset + 8 + len(record.payload)
        if visit is not None:
            visit(record.payload)
        copied += 1
    else:
        _refuse_damage(scanner, str(source))
    flush_segment()
    fsync_directory(target)
    return copied


def _write_durably(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
