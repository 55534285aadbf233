"""The journal's record format: one accepted command, stamped with its sequence number and time.

A record is the UTF-8 JSON object ``{"seq": N, "ts": NS, "type": TYPE, ...the command's fields}``
with its keys sorted and no whitespace (``docs/LEDGER.md`` describes the framing the record log
puts around it). JSON keeps the journal readable with ordinary tools; ``msgspec`` encodes it
about ten times faster than the standard library (0.6 us against 6 us per order on this
machine), which matters because every accepted command is encoded once on the sequencer's
path. The bytes are exactly those of ``json.dumps(record, separators=(",", ":"),
sort_keys=True, ensure_ascii=False)``, so a record written by either can be read by both.
"""

from __future__ import annotations

import msgspec

from venue.core.commands import Command, command_from_record

_ENCODER = msgspec.json.Encoder(order="sorted")
_DECODER = msgspec.json.Decoder(dict)


class JournalRecordError(ValueError):
    """A journal record is not a well-formed command record."""


def encode_record(seq: int, ts: int, command: Command) -> bytes:
    """The journal record of ``command`` accepted as number ``seq`` at ``ts`` (ns)."""
    record = command.to_record()
    record["seq"] = seq
    record["ts"] = ts
    return _ENCODER.encode(record)


def decode_record(data: bytes) -> tuple[int, int, Command]:
    """``(seq, ts, command)`` of a journal record; :class:`JournalRecordError` if malformed."""
    try:
        record = _DECODER.decode(data)
        return record["seq"], record["ts"], command_from_record(record)
    except (msgspec.DecodeError, KeyError, TypeError) as error:
        raise JournalRecordError(f"malformed journal record: {error}") from None
