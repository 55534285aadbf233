"""The ledger's errors and its registry of stable error codes.

Every error the ledger package raises carries a ``code``: a dotted, stable, machine-readable
string whose prefix names the module family that raises it (``ledger.*`` the facade, keys and
proofs; ``block.*`` block decoding and rules; ``checkpoint.*``, ``receipt.*``, ``recordlog.*``;
``audit.*`` the ``venue-audit`` verifier). :data:`ERROR_CODES` lists every one of them with a
one-line meaning, so that there is exactly one place a code is defined; a test walks ``ledger/``
and fails on any code string not listed here. Codes are public API: never rename one or take
one away, only add (a superseded code stays, marked deprecated).

:data:`LEDGER_CODES` is the ``ledger.*`` part: what the :class:`~ledger.ledger.Ledger` facade,
``ledger.keys`` and ``ledger.proof`` raise to their callers. The venue's registry
(``venue/errors.py``) includes it rather than restating it; the dependency goes venue -> ledger,
never back.

A block that :meth:`Ledger.append <ledger.ledger.Ledger.append>` refuses raises
:class:`LedgerRefusedError` with ``ledger.<rule>``, the ``ledger.*`` twin of the ``block.<rule>``
that block.py raised (kept as ``block_code``); :data:`REFUSAL_CODES` is that mapping.

The error classes of the facade live here too: :class:`LedgerError` and its subclasses
(refused, corrupt, failed, closed). The lower modules keep their own small error types
(``BlockError``, ``CheckpointError``, ``ReceiptError``, ``RecordLogError``, ``KeyFileError``,
``ProofError``) so that each can be used, and read, on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: this module imports nothing of the ledger's at run time
    from ledger.block import BlockError
    from ledger.recordlog import RecordLogCorruptError

__all__ = [
    "ERROR_CODES",
    "LEDGER_CODES",
    "REFUSAL_CODES",
    "LedgerClosedError",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerFailedError",
    "LedgerRefusedError",
]


ERROR_CODES: dict[str, str] = {
    # --- ledger.*: the facade (ledger.ledger), ledger.keys and ledger.proof -------------------
    "ledger.error": "A ledger error of no more specific kind (the base class's code).",
    "ledger.refused": "A block was refused before anything was written (no more specific rule).",
    "ledger.corrupt": "The stored ledger is damaged (not a torn tail): refused, never repaired.",
    "ledger.write_failed": (
        "A write, fsync or the signer failed; the ledger accepts nothing more until reopened."
    ),
    "ledger.closed": "The ledger was closed.",
    "ledger.held_back": (
        "The ledger closed with blocks its caller had held back and never released; they were "
        "not written (their commands never became durable in the caller's journal)."
    ),
    "ledger.internal": "An internal invariant of the ledger broke: a bug, not bad input.",
    "ledger.origin_mismatch": "The origin given on opening is not the one recorded in genesis.",
    "ledger.wrong_signing_key": "The signing key given on opening is not the key in force.",
    "ledger.no_such_block": "No durable block at the requested height.",
    "ledger.no_such_trade": "No fill with this trade id is on the ledger.",
    "ledger.unknown_trade": (
        "Deprecated alias of ledger.no_such_trade, which is what the ledger raises; "
        "kept registered because codes are never removed."
    ),
    "ledger.bad_height": "A requested block height is not inside the requested tree size.",
    "ledger.bad_tree_size": "A requested tree size is zero or beyond the ledger's current size.",
    "ledger.proof_mismatch": (
        "A Merkle proof, hash or tree size does not check out (raised by ledger.proof)."
    ),
    "ledger.bad_checkpoint": (
        "A checkpoint handed in does not parse or its signature does not verify "
        "(for callers refusing one; ledger.checkpoint itself raises checkpoint.*)."
    ),
    "ledger.key_file": "A signing-key file is missing, unreadable or too permissive.",
    "ledger.key_format": "A signing or public key is not in an accepted format.",
    "ledger.public_key_mismatch": (
        "The public key file beside the signing key holds another key than the signing key's."
    ),
    # Refusals of a new block by Ledger.append / rotate_key (ledger.<rule> for block.<rule>):
    "ledger.bad_kind": (
        "The block kind is unknown, or one only the ledger writes itself (genesis, key_rotation)."
    ),
    "ledger.duplicate_trade": "A fill's trade id is already on the ledger.",
    "ledger.bad_version": "Refused: the block's format version is not supported.",
    "ledger.bad_field": "Refused: a payload field or delta is missing, malformed or out of range.",
    "ledger.bad_payload": "Refused: the payload is not a JSON object of allowed values.",
    "ledger.noncanonical_deltas": "Refused: the deltas are not unique and sorted.",
    "ledger.not_conserved": "Refused: for some asset the block's deltas do not sum to zero.",
    "ledger.not_dvp": "Refused: a fill's deltas are not exactly its delivery versus payment.",
    "ledger.bad_deltas": "Refused: the deltas are not the ones the block's kind requires.",
    "ledger.bad_link": "Refused: the block does not continue the chain (height or hash link).",
    "ledger.wrong_key": "Refused: the block names a key other than the one that must sign it.",
    "ledger.negative_balance": (
        "Refused: the block would leave an account outside external: with a negative balance."
    ),
    # --- block.*: BlockError, from decoding a block or checking its rules (ledger.block) ------
    "block.truncated": "A block record ends before its header, payload, deltas or signature do.",
    "block.bad_magic": "A block record does not start with the magic ABSL.",
    "block.bad_version": "A block's format version is not supported.",
    "block.bad_kind": "A block's kind is unknown, or genesis appears other than first.",
    "block.trailing_bytes": "Bytes follow a block's deltas or signature.",
    "block.bad_payload": "A block's payload is not a JSON object of allowed values.",
    "block.noncanonical_payload": "A block's payload is not in canonical JSON form.",
    "block.bad_field": "A payload field, header field or delta is missing, malformed or invalid.",
    "block.noncanonical_deltas": "A block's deltas are not unique and sorted by account, asset.",
    "block.not_conserved": "For some asset a block's deltas do not sum to zero.",
    "block.not_dvp": "A fill's deltas are not exactly its delivery versus payment and fees.",
    "block.bad_deltas": "A block's deltas are not the ones its kind requires.",
    "block.negative_balance": "A block would leave an account outside external: negative.",
    "block.bad_link": "A block's prev_hash is not the previous block's hash.",
    "block.bad_height": "A block's height does not follow the previous one's.",
    "block.wrong_key": "A block names a key other than the key in force.",
    "block.bad_signature": "A block's Ed25519 signature does not verify.",
    # --- checkpoint.*: CheckpointError (ledger.checkpoint) ------------------------------------
    "checkpoint.malformed": "A checkpoint note does not follow the C2SP checkpoint format.",
    "checkpoint.origin_mismatch": "A checkpoint names another log's origin.",
    "checkpoint.unknown_key": "A checkpoint carries no signature by the expected key.",
    "checkpoint.bad_signature": "A checkpoint's signature by the expected key does not verify.",
    # --- receipt.*: ReceiptError (ledger.receipt) ---------------------------------------------
    "receipt.malformed": "A receipt is not a well-formed abs-venue-receipt/1 document.",
    "receipt.bad_key": "A public key given to check a receipt is not usable.",
    "receipt.bad_block": "A receipt's block does not decode strictly.",
    "receipt.not_a_fill": "A receipt's block is not a fill.",
    "receipt.bad_signature": "A receipt's block is not validly signed by a trusted key.",
    "receipt.bad_checkpoint": "A receipt's checkpoint is malformed or not signed by a trusted key.",
    "receipt.origin_mismatch": "A receipt's checkpoint names another origin than expected.",
    "receipt.not_included": "A receipt's inclusion proof does not lead to the checkpoint's root.",
    # --- recordlog.*: RecordLogError (ledger.recordlog) ---------------------------------------
    "recordlog.error": "A record log error of no more specific kind (the base class's code).",
    "recordlog.corrupt": "A record log holds damage that is not a torn tail.",
    "recordlog.write_failed": "A record log write or fsync failed; it is unusable until reopened.",
    "recordlog.closed": "The record log was closed.",
    "recordlog.locked": "Another open record log holds the directory's lock.",
    "recordlog.no_such_record": "The requested record is not (yet) durable in the log.",
    # --- audit.*: problems venue-audit verify reports (ledger.audit) -------------------------
    "audit.bad_record": "A stored block record is damaged (length or checksum).",
    "audit.bad_checkpoint": "A stored checkpoint is unreadable, or not signed by the key in force.",
    "audit.checkpoint_mismatch": "A stored checkpoint's root does not match the blocks.",
    "audit.missing_blocks": "A stored checkpoint covers more blocks than exist.",
    "audit.duplicate_trade": "A trade id is settled by more than one fill.",
    "audit.untrusted_key": "The genesis key is not the public key the auditor pinned.",
    "audit.public_key_mismatch": (
        "The data directory's public key file does not hold the ledger's key in force."
    ),
    "audit.empty": "The ledger holds no blocks.",
    "audit.usage": "venue-audit was given a command line or data directory it cannot use.",
    "audit.failed": "What venue-audit was asked for is not there or does not check out.",
}
"""Every code the ledger package raises -> its one-line meaning, grouped by prefix."""

LEDGER_CODES: dict[str, str] = {
    code: meaning for code, meaning in ERROR_CODES.items() if code.startswith("ledger.")
}
"""The ``ledger.*`` codes: what the facade, keys and proofs raise (the venue registers these)."""

# The block rules a new block can break in Ledger.append or rotate_key (the other block.* codes
# are decoding failures, which only a stored block can have).
_REFUSABLE_RULES = (
    "bad_version",
    "bad_kind",
    "bad_field",
    "bad_payload",
    "noncanonical_deltas",
    "not_conserved",
    "not_dvp",
    "bad_deltas",
    "bad_link",
    "wrong_key",
    "negative_balance",
)
REFUSAL_CODES: dict[str, str] = {f"block.{rule}": f"ledger.{rule}" for rule in _REFUSABLE_RULES}
"""``block.<rule>`` -> the ``ledger.<rule>`` a refused append raises."""


class LedgerError(Exception):
    """Base of ledger errors; ``code`` is stable and machine-readable (see ERROR_CODES)."""

    code = "ledger.error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class LedgerRefusedError(LedgerError):
    """A block was refused before anything was written; the ledger is unchanged.

    ``code`` is ``ledger.<rule>`` (e.g. ``ledger.negative_balance``, ``ledger.not_conserved``,
    ``ledger.not_dvp``, ``ledger.bad_field``, ``ledger.bad_payload``, ``ledger.duplicate_trade``,
    ``ledger.bad_kind``); ``block_code`` keeps the ``block.*`` code when the rule is block.py's.
    """

    code = "ledger.refused"

    def __init__(self, message: str, code: str, block_code: str | None = None) -> None:
        super().__init__(message, code)
        self.block_code = block_code

    @classmethod
    def from_block_error(cls, error: BlockError) -> LedgerRefusedError:
        """The refusal for a broken block rule: ``ledger.<rule>`` (see REFUSAL_CODES)."""
        return cls(error.message, REFUSAL_CODES.get(error.code, cls.code), error.code)


class LedgerCorruptError(LedgerError):
    """The stored ledger is damaged (not a torn tail); it is refused, never repaired.

    ``path``/``offset`` locate the damage when the record log found it; ``height`` names the
    block.
    """

    code = "ledger.corrupt"

    def __init__(
        self, message: str, height: int, path: str | None = None, offset: int | None = None
    ) -> None:
        super().__init__(message)
        self.height = height
        self.path = path
        self.offset = offset

    @classmethod
    def from_record_log(cls, error: RecordLogCorruptError) -> LedgerCorruptError:
        """The block log's record number is the block height."""
        return cls(
            f"block {error.record_number}: {error}", error.record_number, error.path, error.offset
        )


class LedgerFailedError(LedgerError):
    """A write, fsync or the signer failed; the ledger accepts nothing more until reopened."""

    code = "ledger.write_failed"


class LedgerClosedError(LedgerError):
    """The ledger was closed."""

    code = "ledger.closed"
