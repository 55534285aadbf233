"""Durable state snapshots: they bound restart time (replay starts after the snapshot's seq).

A snapshot file ``snapshot-<seq>.json`` is one header line ``{"format": 1, "seq": N, "sha256":
HEX}`` followed by the JSON body whose SHA-256 the header names. It is written to a temporary
file, fsynced, renamed into place and the directory fsynced, so a crash leaves either the old set
of snapshots or the new one, never a half-written file under the final name. A snapshot whose
checksum does not match is refused loudly (:class:`SnapshotError`): it is never skipped silently,
because skipping it could hide disk corruption. The newest ``keep`` snapshots are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from ledger.recordlog import fsync_directory

FORMAT = 1
_NAME = re.compile(r"snapshot-(\d{12})\.json")


class SnapshotError(Exception):
    """A snapshot file is unreadable or fails its checksum."""


def write_snapshot(directory: Path, seq: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Durably write ``state`` as the snapshot taken after journal record ``seq``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps(state, separators=(",", ":")).encode()
    header = json.dumps({"format": FORMAT, "seq": seq, "sha256": hashlib.sha256(body).hexdigest()})
    final = directory / f"snapshot-{seq:012d}.json"
    temporary = directory / f".{final.name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, header.encode() + b"\n")
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)
    fsync_directory(directory)
    for old in list_snapshots(directory)[:-keep]:
        old.unlink()
    return final


def list_snapshots(directory: Path) -> list[Path]:
    """Snapshot files oldest first."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if _NAME.fullmatch(path.name))


def load_latest_snapshot(directory: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest snapshot as ``(seq, state)``, or ``None`` if there is none."""
    snapshots = list_snapshots(directory)
    if not snapshots:
        return None
    path = snapshots[-1]
    data = path.read_bytes()
    header_line, _, body = data.partition(b"\n")
    try:
        header = json.loads(header_line)
        if header.get("format") != FORMAT:
            raise SnapshotError(f"{path}: unknown snapshot format {header.get('format')!r}")
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            raise SnapshotError(f"{path}: checksum mismatch; refusing a corrupt snapshot")
        if int(_NAME.fullmatch(path.name).group(1)) != header["seq"]:
            raise SnapshotError(f"{path}: header seq {header['seq']} does not match the file name")
        return header["seq"], json.loads(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: unreadable snapshot: {exc}") from None
