"""Durable state snapshots: they bound restart time (replay starts after the snapshot's seq).

A snapshot file ``snapshot-<seq>.json`` is one header line ``{"format": 1, "seq": N, "sha256":
HEX}`` followed by the JSON body whose SHA-256 the header names. It is written to a temporary
file, fsynced, renamed into place and the directory fsynced, so a crash leaves either the old set
of snapshots or the new one, never a half-written file under the final name. A snapshot whose
checksum does not match is refused loudly (:class:`SnapshotError`): it is never skipped silently,
because skipping it could hide disk corruption. The newest ``keep`` snapshots are kept.

**Order archive.** Closed orders never change again, so a snapshot does not rewrite them: the
sequencer's snapshots hold the live state (open orders among it), and the orders that closed
since the previous snapshot go, just before it, into ``orders-<seq>.json`` (same framing, body
``{"order_fields": [...], "orders": [rows]}``). A snapshot at seq S relies on every archive at
or before S; opening merges them into the state as ``"archived_orders"``. An archive newer than
the newest snapshot (its snapshot was never written) is deleted on opening: replay from the
older snapshot rebuilds those orders, and the next snapshot archives them again. So a snapshot's
size and cost follow the live state, not every order ever placed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec

from ledger.recordlog import fsync_directory

FORMAT = 1
_NAME = re.compile(r"snapshot-(\d{12})\.json")
_ARCHIVE_NAME = re.compile(r"orders-(\d{12})\.json")


class SnapshotError(Exception):
    """A snapshot file is unreadable or fails its checksum."""


def write_snapshot(directory: Path, seq: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Durably write ``state`` as the snapshot taken after journal record ``seq``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = _write_checked(directory / f"snapshot-{seq:012d}.json", seq, state)
    for old in list_snapshots(directory)[:-keep]:
        old.unlink()
    return final


def write_order_archive(directory: Path, seq: int, order_fields: list, rows: Any) -> Path:
    """Durably write the rows of orders that closed up to journal record ``seq`` (before the
    snapshot at ``seq`` that leaves them out); ``rows`` is anything msgspec encodes as a JSON
    array of rows (a list of rows or of ``Order`` structs, or a ``msgspec.Raw`` of one)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {"order_fields": order_fields, "orders": rows}
    return _write_checked(directory / f"orders-{seq:012d}.json", seq, body)


def _write_checked(final: Path, seq: int, value: Any) -> Path:
    """Header line + JSON body, via a temporary file, fsynced, renamed, directory fsynced.

    msgspec encodes (and decodes) the body several times faster than the standard library; that
    matters because the encoder holds the GIL for the whole body, stalling the event loop.
    """
    body = msgspec.json.encode(value)
    header = json.dumps({"format": FORMAT, "seq": seq, "sha256": hashlib.sha256(body).hexdigest()})
    temporary = final.parent / f".{final.name}.tmp"
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
    fsync_directory(final.parent)
    return final


def _list(directory: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = ((pattern.fullmatch(path.name), path) for path in directory.iterdir())
    return sorted((int(match.group(1)), path) for match, path in found if match)


def list_snapshots(directory: Path) -> list[Path]:
    """Snapshot files oldest first."""
    return [path for _seq, path in _list(directory, _NAME)]


def load_latest_snapshot(directory: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest snapshot as ``(seq, state)``, or ``None`` if there is none.

    ``state["archived_orders"]`` holds the rows of every order archive the snapshot relies on
    (module docstring); archives newer than the snapshot are deleted.
    """
    snapshots = list_snapshots(directory)
    archives = _list(directory, _ARCHIVE_NAME)
    if not snapshots:
        for _seq, path in archives:  # no snapshot relies on them
            path.unlink()
        return None
    seq, state = _read_checked(snapshots[-1])
    if int(_NAME.fullmatch(snapshots[-1].name).group(1)) != seq:
        raise SnapshotError(f"{snapshots[-1]}: header seq {seq} does not match the file name")
    archived: list = []
    for archive_seq, path in archives:
        if archive_seq > seq:
            path.unlink()
            continue
        _archive_seq, body = _read_checked(path)
        if body["order_fields"] != state.get("order_fields"):
            raise SnapshotError(f"{path}: written with another order field layout")
        archived.extend(body["orders"])
    state["archived_orders"] = archived
    return seq, state


def newest_intact_snapshot_seq(directory: Path) -> int | None:
    """The seq of the newest snapshot, once its checksum is checked (its body is not decoded);
    None if there is none. ``SnapshotError`` if it is corrupt.

    What the journal may be retired up to (``venue.core.journal.retire_journal``): the file
    exists under its final name only once it is durable (``_write_checked``), and the checksum
    shows it is still whole, so recovery can start from it.
    """
    snapshots = list_snapshots(directory)
    if not snapshots:
        return None
    seq, _body = _checked_body(snapshots[-1])
    if int(_NAME.fullmatch(snapshots[-1].name).group(1)) != seq:
        raise SnapshotError(f"{snapshots[-1]}: header seq {seq} does not match the file name")
    return seq


def _checked_body(path: Path) -> tuple[int, bytes]:
    """``(seq, body bytes)`` of a snapshot or archive file whose checksum matches."""
    data = path.read_bytes()
    header_line, _, body = data.partition(b"\n")
    try:
        header = json.loads(header_line)
        if header.get("format") != FORMAT:
            raise SnapshotError(f"{path}: unknown snapshot format {header.get('format')!r}")
        if hashlib.sha256(body).hexdigest() != header["sha256"]:
            raise SnapshotError(f"{path}: checksum mismatch; refusing a corrupt snapshot")
        return header["seq"], body
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"{path}: unreadable snapshot: {exc}") from None


def _read_checked(path: Path) -> tuple[int, Any]:
    seq, body = _checked_body(path)
    try:
        return seq, msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"{path}: unreadable snapshot: {exc}") from None
