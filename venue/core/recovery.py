"""Recovery: rebuild the venue from its newest snapshot and the journal after it.

Load the newest snapshot (if any, with the order archives it relies on), then replay every
journal record after it through the same deterministic :class:`Exchange`. Ledger blocks are only
ever written after their command is durable in the journal, so the ledger can only be *behind*
the journal: the replay re-creates the blocks of the trailing commands, checks each one the
ledger already holds against the one it recomputes, and appends the missing ones. Anything that
does not line up is refused loudly (:class:`RecoveryError`), never patched over.
"""

from __future__ import annotations

from pathlib import Path

from ledger.block import fill_deltas, make_deltas
from ledger.ledger import Ledger
from ledger.recordlog import RecordLog
from venue.core.exchange import Exchange, LedgerEntry
from venue.core.journal import JournalRecordError, decode_record
from venue.core.snapshots import load_latest_snapshot
from venue.domain import demo
from venue.domain.pricing import FeeSchedule
from venue.errors import VenueError


class RecoveryError(RuntimeError):
    """The journal, snapshots and ledger do not line up; nothing was repaired."""


def _check_block_matches(
    ledger: Ledger, height: int, entry: LedgerEntry, ledger_blocks: int
) -> None:
    """The block already at ``height`` must be the one replay recomputes, or recovery stops.

    A fill is checked through the ledger's trade index (its trade id must sit at exactly this
    height): decoding every block again would double the restart time of a busy venue, and the
    full content of every block is what ``venue-audit verify`` checks. Every other block, and
    the newest one, is decoded and compared field by field.
    """
    if entry.kind == "fill" and height < ledger_blocks - 1:
        if ledger.find_fill(entry.payload["trade_id"]) != height:
            raise RecoveryError(
                f"ledger block {height} is not fill {entry.payload['trade_id']}, which the "
                "journal replay produces there"
            )
        return
    block = ledger.block(height).block
    if entry.deltas is None:  # a fill: its deltas follow from its payload
        expected_deltas = fill_deltas(entry.payload)
    else:
        expected_deltas = make_deltas(entry.deltas)
    if (
        block.kind != entry.kind
        or dict(block.payload) != entry.payload
        or tuple(block.deltas) != expected_deltas
    ):
        raise RecoveryError(
            f"ledger block {height} ({block.kind}) differs from the one the journal replay "
            f"produces ({entry.kind}); refusing to guess which is right"
        )


def recover(data_dir: Path, journal: RecordLog, ledger: Ledger) -> tuple[Exchange, dict]:
    """Snapshot + journal replay; re-create the ledger blocks the crash cut off."""
    snapshot = load_latest_snapshot(data_dir / "snapshots")
    if snapshot is None:
        exchange = Exchange(FeeSchedule.from_wire(demo.FEE_SCHEDULE))
        expected_blocks = 1  # the genesis block the ledger writes itself
    else:
        _seq, state = snapshot
        exchange = Exchange.restore(state)
        expected_blocks = state["ledger_blocks"]
    if journal.first_record > exchange.seq:
        raise RecoveryError(
            f"recovery must replay the journal from record {exchange.seq} (the newest snapshot "
            f"is at seq {exchange.seq}), but records before {journal.first_record} were retired "
            "after a newer snapshot that is now missing; restore that snapshot, or the retired "
            "segments from journal-archive/ into journal/ (then delete journal/RETIRED)"
        )
    if journal.durable_count < exchange.seq:
        raise RecoveryError(
            f"snapshot is at seq {exchange.seq} but the journal holds only "
            f"{journal.durable_count} records"
        )
    ledger_blocks = ledger.height + 1
    if ledger_blocks < expected_blocks:
        raise RecoveryError(
            f"the ledger holds {ledger_blocks} blocks, fewer than the {expected_blocks} the "
            "snapshot had made durable"
        )
    next_height = expected_blocks
    replayed = appended = 0
    exchange.emit_events = False
    handles = []
    for number, data in journal.records(start=exchange.seq):
        try:
            seq, ts, command = decode_record(data)
        except JournalRecordError as exc:
            raise RecoveryError(f"journal record {number}: {exc}") from None
        if seq != number + 1 or seq != exchange.seq + 1:
            raise RecoveryError(f"journal record {number} has seq {seq}")
        try:
            outcome = exchange.apply(command, ts)
        except VenueError as exc:
            raise RecoveryError(f"journal seq {seq} no longer applies: {exc}") from exc
        replayed += 1
        for entry in outcome.ledger_entries:
            if next_height < ledger_blocks:
                _check_block_matches(ledger, next_height, entry, ledger_blocks)
            else:
                handles.append(ledger.append(entry.kind, entry.payload, entry.deltas))
                appended += 1
            next_height += 1
    for handle in handles:
        handle.result()
    if next_height != ledger.height + 1:
        raise RecoveryError(
            f"the ledger holds {ledger.height + 1} blocks but the journal accounts for "
            f"{next_height}: the ledger is ahead of the journal"
        )
    exchange.emit_events = True
    exchange.validate()
    return exchange, {
        "snapshot_seq": None if snapshot is None else snapshot[0],
        "replayed_commands": replayed,
        "reappended_blocks": appended,
        "seq": exchange.seq,
        "ledger_blocks": ledger.height + 1,
        # bytes of a torn tail (a crash mid-write) that opening cut from each log
        "journal_truncated_bytes": journal.recovery.truncated_bytes,
        "ledger_truncated_bytes": ledger.recovery.truncated_bytes,
    }
