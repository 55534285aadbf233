"""Servicer disclosures: a collection period's asset tape, its Merkle root and the signed report.

Investors in IP-backed securities cannot see the pool; this module is how they can. Each
collection period the deal's servicer publishes a *tape* -- one line per receivable -- and a
*report* over it. Each line's canonical encoding is one leaf of an RFC 6962 tree
(``ledger/hasher.py``, ``ledger/proof.py``, reused as they are); the report carries the tree's
root, the asset count and the period totals, and the servicer signs the report with its own
Ed25519 key, so a line's authenticity rests on the source and not only on the venue's word.
Anyone holding the report and one line with its inclusion proof can check the line offline.

Everything is an integer: money in fen, days as whole days. Pure: no I/O, no clock.

The tape line (``AssetLine``)
-----------------------------
==============  =============================================================================
asset_id        the receivable's id within the deal (a name: 1-64 of ``A-Z a-z 0-9 . _ : / -``)
licensee        the pseudonymous licensee (same alphabet; the servicer keeps the key to names)
licence_id      the licensed patent or licence id (same alphabet)
scheduled       fen the licence agreement scheduled for the period (>= 0)
collected       fen actually collected in the period (>= 0; may exceed scheduled: catch-up, prepaid)
balance         fen still owed under the receivable at the period's end (>= 0)
days_past_due   whole days the oldest unpaid amount is overdue at the period's end (>= 0)
status          ``AssetStatus``: performing, delinquent, defaulted, disputed, prepaid
==============  =============================================================================

Status rules (the tape is refused otherwise): ``performing`` has 0 days past due;
``delinquent`` at least 1; ``prepaid`` has 0 days past due and a zero balance; ``defaulted`` and
``disputed`` (a licensee contesting the licence, or the patent challenged or infringed) any.

A tape lists each asset once, sorted by ``asset_id`` (byte order), so one set of lines has one
root; a line's leaf index is its position.

Canonical encodings
-------------------
* Leaf data of a line = its canonical JSON (``AssetLine.to_record``: sorted keys, no whitespace,
  ASCII, integers only), e.g. ``{"asset_id":"L001","balance":...,"status":"performing"}``; its
  leaf hash is ``ledger.hasher.leaf_hash(data)``.
* The signed message of a report = ``REPORT_DOMAIN`` + canonical JSON of ``PoolReport.to_record``
  without ``signature``. The prefix keeps a report signature from ever being valid for any other
  message the servicer's key might sign.

Totals (``ReportTotals``, derived from the tape, never typed in): scheduled, collected, pool
balance (the balance of every line *except defaulted ones*: a default is written off the pool, so
it shows up in the waterfall as principal the tranches are owed but the pool no longer covers),
defaulted balance, and the count of lines per status. ``pool_balance_start`` is the servicer's
statement of the pool balance at the period's start (the previous report's end balance; the venue
checks that link).

Public API::

    class AssetStatus(StrEnum): PERFORMING, DELINQUENT, DEFAULTED, DISPUTED, PREPAID
    @dataclass(frozen=True) AssetLine(asset_id, licensee, licence_id, scheduled, collected,
                                      balance, days_past_due, status)
        .to_record() -> dict   AssetLine.from_record(dict)   .encode() -> bytes   .leaf_hash
    @dataclass(frozen=True) ReportTotals(scheduled, collected, pool_balance, defaulted_balance,
                                         counts)   ReportTotals.of(lines)
    @dataclass(frozen=True) PoolReport(deal_id, period, period_start, period_end,
                                       pool_balance_start, asset_count, tape_root, totals,
                                       servicer_public_key, signature)
        .to_record() / PoolReport.from_record(dict) / .signing_message() -> bytes
    check_tape(lines) -> tuple[AssetLine, ...]          # order, uniqueness, each line valid
    tape_root(lines) -> bytes
    build_report(deal_id, period, period_start, period_end, pool_balance_start, lines,
                 servicer_public_key) -> PoolReport     # unsigned (signature b"")
    sign_report(report, private_key) -> PoolReport
    verify_report(report, public_key_hex, lines=None) -> None   # signature, and the tape if given
    @dataclass(frozen=True) LineProof(index, size, line, proof)  .to_record() / from_record
    line_proof(lines, index) -> LineProof
    verify_line(report, line_proof) -> None              # offline, against the signed report
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from itertools import pairwise
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.hasher import HASH_SIZE, leaf_hash
from ledger.keys import public_key_bytes
from ledger.proof import MerkleTree, ProofError, verify_inclusion
from venue.domain.money import MAX_CASH_FEN, parse_enum, parse_iso_date
from venue.errors import ErrorCode, VenueError

REPORT_DOMAIN = b"abs-venue pool report v1\n"
MAX_DAYS_PAST_DUE = 36_500  # a century: anything larger is a data error
MAX_TAPE_LINES = 1_000_000
MAX_PERIOD = 10_000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,63}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")

_canonical_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


class AssetStatus(StrEnum):
    """A receivable's state at the period's end (module docstring for the rules)."""

    PERFORMING = "performing"
    DELINQUENT = "delinquent"
    DEFAULTED = "defaulted"
    DISPUTED = "disputed"  # licence contested, or the licensed patent challenged or infringed
    PREPAID = "prepaid"


def _line_error(message: str, **details: Any) -> VenueError:
    return VenueError(ErrorCode.BAD_ASSET_LINE, message, **details)


def _report_error(message: str, **details: Any) -> VenueError:
    return VenueError(ErrorCode.BAD_POOL_REPORT, message, **details)


def _check_id(value: object, field: str, error: Any) -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise error(f"{field} must be 1-64 of A-Z a-z 0-9 . _ : / - (not starting with a sign)",
                    field=field)  # fmt: skip
    return value


def _check_amount(value: object, field: str, error: Any, maximum: int = MAX_CASH_FEN) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise error(f"{field} must be a whole number in [0, {maximum}]", field=field)
    return value


@dataclass(frozen=True, slots=True)
class AssetLine:
    """One receivable on the tape; every field validated on construction (module docstring)."""

    asset_id: str
    licensee: str
    licence_id: str
    scheduled: int
    collected: int
    balance: int
    days_past_due: int
    status: AssetStatus

    def __post_init__(self) -> None:
        if not isinstance(self.status, AssetStatus):
            status = parse_enum(AssetStatus, self.status, "status", ErrorCode.BAD_ASSET_LINE)
            object.__setattr__(self, "status", status)
        for field in ("asset_id", "licensee", "licence_id"):
            _check_id(getattr(self, field), field, _line_error)
        for field in ("scheduled", "collected", "balance"):
            _check_amount(getattr(self, field), field, _line_error)
        _check_amount(self.days_past_due, "days_past_due", _line_error, MAX_DAYS_PAST_DUE)
        status, overdue = self.status, self.days_past_due
        if status in (AssetStatus.PERFORMING, AssetStatus.PREPAID) and overdue:
            raise _line_error(f"a {status} asset has 0 days past due", asset_id=self.asset_id)
        if status is AssetStatus.DELINQUENT and not overdue:
            raise _line_error("a delinquent asset is at least 1 day past due",
                              asset_id=self.asset_id)  # fmt: skip
        if status is AssetStatus.PREPAID and self.balance:
            raise _line_error("a prepaid asset has a zero balance", asset_id=self.asset_id)

    def to_record(self) -> dict[str, Any]:
        """The line as a JSON-safe dict of ints and strings (journal, snapshot, leaf data)."""
        return {
            "asset_id": self.asset_id,
            "licensee": self.licensee,
            "licence_id": self.licence_id,
            "scheduled": self.scheduled,
            "collected": self.collected,
            "balance": self.balance,
            "days_past_due": self.days_past_due,
            "status": self.status.value,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AssetLine:
        """Inverse of ``to_record``; exactly its keys (``validation.bad_asset_line`` else)."""
        if not isinstance(record, Mapping) or set(record) != _LINE_FIELDS:
            raise _line_error(f"a tape line has exactly the fields {sorted(_LINE_FIELDS)}")
        return cls(**record)

    def encode(self) -> bytes:
        """The leaf data: canonical JSON of ``to_record``."""
        return _canonical_json(self.to_record()).encode("ascii")

    @property
    def leaf_hash(self) -> bytes:
        """``SHA-256(0x00 || encode())``: this line's leaf in the tape tree."""
        return leaf_hash(self.encode())


_LINE_FIELDS = frozenset(AssetLine.__dataclass_fields__)


def check_tape(lines: Iterable[AssetLine]) -> tuple[AssetLine, ...]:
    """The tape as a tuple, refused unless non-empty, sorted by ``asset_id`` and unique."""
    tape = tuple(lines)
    if not tape:
        raise _report_error("a tape has at least one line")
    if len(tape) > MAX_TAPE_LINES:
        raise _report_error(f"a tape has at most {MAX_TAPE_LINES} lines")
    for line in tape:
        if type(line) is not AssetLine:
            raise TypeError(f"tape lines are AssetLine, not {type(line).__name__}")
    for earlier, later in pairwise(tape):
        if not earlier.asset_id < later.asset_id:
            raise _report_error(
                "tape lines must be sorted by asset_id, each asset once",
                asset_id=later.asset_id,
            )
    return tape


def _tree(tape: Sequence[AssetLine]) -> MerkleTree:
    return MerkleTree.from_leaf_hashes(line.leaf_hash for line in tape)


def tape_root(lines: Iterable[AssetLine]) -> bytes:
    """The RFC 6962 root of a checked tape's leaves."""
    return _tree(check_tape(lines)).root()


@dataclass(frozen=True, slots=True)
class ReportTotals:
    """The period totals of a tape (module docstring): all fen, ``counts`` per status value."""

    scheduled: int
    collected: int
    pool_balance: int
    defaulted_balance: int
    counts: tuple[tuple[str, int], ...]  # (status value, lines), every status, in enum order

    @classmethod
    def of(cls, lines: Iterable[AssetLine]) -> ReportTotals:
        """Sum a tape. The pool balance leaves out defaulted lines (written off)."""
        counts = dict.fromkeys(AssetStatus, 0)
        scheduled = collected = pool = defaulted = 0
        for line in lines:
            counts[line.status] += 1
            scheduled += line.scheduled
            collected += line.collected
            if line.status is AssetStatus.DEFAULTED:
                defaulted += line.balance
            else:
                pool += line.balance
        return cls(
            scheduled,
            collected,
            pool,
            defaulted,
            tuple((status.value, count) for status, count in counts.items()),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "scheduled": self.scheduled,
            "collected": self.collected,
            "pool_balance": self.pool_balance,
            "defaulted_balance": self.defaulted_balance,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ReportTotals:
        fields = {"scheduled", "collected", "pool_balance", "defaulted_balance", "counts"}
        if not isinstance(record, Mapping) or set(record) != fields:
            raise _report_error(f"report totals have exactly the fields {sorted(fields)}")
        counts = record["counts"]
        if not isinstance(counts, Mapping) or set(counts) != {s.value for s in AssetStatus}:
            raise _report_error("totals.counts has one count per status")
        for name in ("scheduled", "collected", "pool_balance", "defaulted_balance"):
            _check_amount(record[name], f"totals.{name}", _report_error)
        ordered = tuple(
            (status.value, _check_amount(counts[status.value], "totals.counts", _report_error))
            for status in AssetStatus
        )
        return cls(
            record["scheduled"],
            record["collected"],
            record["pool_balance"],
            record["defaulted_balance"],
            ordered,
        )


@dataclass(frozen=True, slots=True)
class PoolReport:
    """A servicer's report on one collection period ``[period_start, period_end)``.

    ``tape_root`` is 32 bytes, ``signature`` 64 bytes (``b""`` before signing),
    ``servicer_public_key`` the raw Ed25519 key as 64 lowercase hex characters.
    """

    deal_id: str
    period: int
    period_start: date
    period_end: date
    pool_balance_start: int
    asset_count: int
    tape_root: bytes
    totals: ReportTotals
    servicer_public_key: str
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_id(self.deal_id, "deal_id", _report_error)
        if type(self.period) is not int or not 1 <= self.period <= MAX_PERIOD:
            raise _report_error(f"period must be a number in [1, {MAX_PERIOD}]", field="period")
        for field in ("period_start", "period_end"):
            if type(getattr(self, field)) is not date:
                raise TypeError(f"PoolReport.{field} must be a date")
        if not self.period_start < self.period_end:
            raise _report_error("a collection period ends after it starts", field="period_end")
        _check_amount(self.pool_balance_start, "pool_balance_start", _report_error)
        _check_amount(self.asset_count, "asset_count", _report_error, MAX_TAPE_LINES)
        if not isinstance(self.tape_root, bytes) or len(self.tape_root) != HASH_SIZE:
            raise _report_error("tape_root is a 32-byte hash", field="tape_root")
        if type(self.totals) is not ReportTotals:
            raise TypeError("PoolReport.totals must be ReportTotals")
        if sum(count for _status, count in self.totals.counts) != self.asset_count:
            raise _report_error("the status counts do not add up to asset_count")
        if not isinstance(self.servicer_public_key, str) or not _HEX_KEY.fullmatch(
            self.servicer_public_key
        ):
            raise _report_error("servicer_public_key is 64 lowercase hex characters")
        if not isinstance(self.signature, bytes) or len(self.signature) not in (0, 64):
            raise _report_error("signature is 64 bytes (empty before signing)")

    def to_record(self) -> dict[str, Any]:
        """JSON-safe form: dates ISO, hashes and the signature lowercase hex."""
        return {
            "deal_id": self.deal_id,
            "period": self.period,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "pool_balance_start": self.pool_balance_start,
            "asset_count": self.asset_count,
            "tape_root": self.tape_root.hex(),
            "totals": self.totals.to_record(),
            "servicer_public_key": self.servicer_public_key,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PoolReport:
        """Inverse of ``to_record`` (``validation.bad_pool_report`` for anything malformed)."""
        if not isinstance(record, Mapping) or set(record) != _REPORT_FIELDS:
            raise _report_error(f"a pool report has exactly the fields {sorted(_REPORT_FIELDS)}")
        root, signature = record["tape_root"], record["signature"]
        if not isinstance(root, str) or not _HEX_HASH.fullmatch(root):
            raise _report_error("tape_root is 64 lowercase hex characters")
        if not isinstance(signature, str) or not (
            signature == "" or _HEX_SIGNATURE.fullmatch(signature)
        ):
            raise _report_error("signature is 128 lowercase hex characters")
        try:
            period_start = parse_iso_date(record["period_start"], field="period_start")
            period_end = parse_iso_date(record["period_end"], field="period_end")
        except VenueError as error:
            raise _report_error(error.message) from None
        return cls(
            deal_id=record["deal_id"],
            period=record["period"],
            period_start=period_start,
            period_end=period_end,
            pool_balance_start=record["pool_balance_start"],
            asset_count=record["asset_count"],
            tape_root=bytes.fromhex(root),
            totals=ReportTotals.from_record(record["totals"]),
            servicer_public_key=record["servicer_public_key"],
            signature=bytes.fromhex(signature),
        )

    def signing_message(self) -> bytes:
        """What the servicer signs: ``REPORT_DOMAIN`` + canonical JSON without the signature."""
        body = self.to_record()
        del body["signature"]
        return REPORT_DOMAIN + _canonical_json(body).encode("ascii")

    def with_signature(self, signature: bytes) -> PoolReport:
        """The same report carrying ``signature`` (not verified here: ``verify_report``)."""
        return PoolReport(
            self.deal_id, self.period, self.period_start, self.period_end,
            self.pool_balance_start, self.asset_count, self.tape_root, self.totals,
            self.servicer_public_key, signature,
        )  # fmt: skip


_REPORT_FIELDS = frozenset(PoolReport.__dataclass_fields__)


def build_report(
    deal_id: str,
    period: int,
    period_start: date,
    period_end: date,
    pool_balance_start: int,
    lines: Iterable[AssetLine],
    servicer_public_key: str,
) -> PoolReport:
    """The unsigned report over a tape: root, asset count and totals computed from the lines."""
    tape = check_tape(lines)
    return PoolReport(
        deal_id=deal_id,
        period=period,
        period_start=period_start,
        period_end=period_end,
        pool_balance_start=pool_balance_start,
        asset_count=len(tape),
        tape_root=_tree(tape).root(),
        totals=ReportTotals.of(tape),
        servicer_public_key=servicer_public_key,
    )


def sign_report(report: PoolReport, private_key: Ed25519PrivateKey) -> PoolReport:
    """The report signed by the servicer's key (which must be the key the report names)."""
    public_hex = public_key_bytes(private_key).hex()
    if public_hex != report.servicer_public_key:
        raise ValueError("the signing key is not the servicer key the report names")
    return report.with_signature(private_key.sign(report.signing_message()))


def verify_report(
    report: PoolReport, public_key_hex: str, lines: Iterable[AssetLine] | None = None
) -> None:
    """Check a report is the named servicer's and, given its tape, that it describes the tape.

    ``public_key_hex`` is the servicer key the verifier trusts (stated in the deal's terms at
    listing), never the one the report carries. Refusals: ``validation.bad_report_signature``
    (another key, no signature, or a signature that does not verify: any changed field breaks
    it), ``validation.bad_pool_report`` (the lines give another root, count or totals).
    """
    if report.servicer_public_key != public_key_hex:
        raise VenueError(
            ErrorCode.BAD_REPORT_SIGNATURE,
            "the report names another servicer key than the deal's",
            deal_id=report.deal_id,
            period=report.period,
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(report.signature, report.signing_message())
    except (InvalidSignature, ValueError):
        raise VenueError(
            ErrorCode.BAD_REPORT_SIGNATURE,
            "the servicer's signature over the report does not verify",
            deal_id=report.deal_id,
            period=report.period,
        ) from None
    if lines is None:
        return
    tape = check_tape(lines)
    if len(tape) != report.asset_count:
        raise _report_error(f"the tape has {len(tape)} lines, the report {report.asset_count}")
    if _tree(tape).root() != report.tape_root:
        raise _report_error("the tape's root is not the report's tape_root")
    if ReportTotals.of(tape) != report.totals:
        raise _report_error("the tape's totals are not the report's totals")


@dataclass(frozen=True, slots=True)
class LineProof:
    """One tape line with its RFC 6962 inclusion proof in a tape of ``size`` lines."""

    index: int
    size: int
    line: AssetLine
    proof: tuple[bytes, ...]

    def to_record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "size": self.size,
            "line": self.line.to_record(),
            "proof": [node.hex() for node in self.proof],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LineProof:
        fields = {"index", "size", "line", "proof"}
        if not isinstance(record, Mapping) or set(record) != fields:
            raise VenueError(ErrorCode.PROOF_MISMATCH, f"a line proof has the fields {fields}")
        proof = record["proof"]
        if not isinstance(proof, list) or not all(
            isinstance(node, str) and _HEX_HASH.fullmatch(node) for node in proof
        ):
            raise VenueError(ErrorCode.PROOF_MISMATCH, "proof is a list of 64-hex-digit hashes")
        for name in ("index", "size"):
            if type(record[name]) is not int:
                raise VenueError(ErrorCode.PROOF_MISMATCH, f"{name} is an integer")
        return cls(
            record["index"],
            record["size"],
            AssetLine.from_record(record["line"]),
            tuple(bytes.fromhex(node) for node in proof),
        )


def line_proof(lines: Iterable[AssetLine], index: int) -> LineProof:
    """Line ``index`` of a checked tape with its inclusion proof (what the venue serves)."""
    tape = check_tape(lines)
    if not 0 <= index < len(tape):
        raise _report_error(f"line {index} is outside the tape [0, {len(tape)})")
    proof = tuple(_tree(tape).inclusion_proof(index))
    return LineProof(index, len(tape), tape[index], proof)


def verify_line(report: PoolReport, proof: LineProof) -> None:
    """Offline: ``proof.line`` is line ``proof.index`` of the tape ``report`` is signed over.

    Check the report first (``verify_report`` with the deal's servicer key); this then needs only
    the line's bytes, its proof and the report's root and count. ``ledger.proof_mismatch`` if a
    single byte of the line, the proof, the index or the size differs.
    """
    if proof.size != report.asset_count:
        raise VenueError(
            ErrorCode.PROOF_MISMATCH,
            f"the proof is for a tape of {proof.size} lines, the report has {report.asset_count}",
        )
    try:
        verify_inclusion(proof.index, proof.size, proof.line.leaf_hash, proof.proof,
                         report.tape_root)  # fmt: skip
    except ProofError as error:
        raise VenueError(
            ErrorCode.PROOF_MISMATCH, f"the line is not in the reported tape: {error}",
            asset_id=proof.line.asset_id,
        ) from None  # fmt: skip
