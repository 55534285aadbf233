"""Ledger blocks: model, canonical versioned encoding, hashing, signing and validation.

Byte layout (format version 1; all integers big-endian; full field table in docs/LEDGER.md)::

    magic "ABSL" | version u8 | kind u8 | height u64 | timestamp_ns u64 | prev_hash 32
    | key_id 8 | payload_length u32 | payload (canonical JSON) | delta_count u32
    | delta_count x (account_length u16 | account | asset_length u16 | asset | amount i64)

The *encoding* is everything above; ``block hash = SHA-256(encoding)``; the signature is
Ed25519 over the 32-byte block hash. The stored record is ``encoding || signature (64 bytes)``.
Canonical JSON = sorted keys, no whitespace, ASCII only (``\\uXXXX`` escapes), integers only (no
floats, NaN or duplicate keys); deltas sorted by (account, asset), unique, non-zero. Decoding is
strict: any deviation from the canonical form is a ``BlockError``, so one block has exactly one
encoding and ``encode(decode(x)) == x``.

API for the store engineer and the venue:

- ``KINDS``, ``KIND_CODES``; ``KEY_KINDS``/``KEY_KIND_CODES`` (genesis, key_rotation: the kinds
  that bring in a key); ``KIND_OFFSET`` (where the kind code sits in an encoding);
  ``CASH_ASSET = "CNY"``; ``FEE_ACCOUNT = "venue:fees"``; ``EXTERNAL_PREFIX``, ``VENUE_PREFIX``.
- ``Delta(account, asset, amount)``, ``make_deltas(triples) -> tuple[Delta, ...]`` (merges,
  drops zeros, sorts: the canonical form).
- ``Block(height, prev_hash, timestamp_ns, kind, key_id, payload, deltas, version=1)`` with
  ``encode() -> bytes``; ``GENESIS_PREV_HASH`` (32 zero bytes).
- ``Signer(private_key)``: ``.key_id``, ``.public_key``, ``.sign(block) -> SignedBlock``;
  ``.sign_hash(block_hash) -> bytes`` if you encoded and hashed yourself (e.g. to sign on
  another thread or process; ``sign`` releases the GIL).
- ``SignedBlock(block, encoded, block_hash, signature)``: ``to_bytes()`` is the record;
  ``leaf_hash`` is the Merkle leaf hash of this block.
- ``decode_signed_block(record) -> SignedBlock``; ``decode_block(encoding) -> Block``.
- ``check_fill_record(record) -> CheckedFill | None``: the audit's fast path for fill records
  (decode + ``check_block_rules`` in one pass, about 5x cheaper); ``None`` means "use the
  reference path", which then accepts the record or names the problem.
- ``verify_block_signature(signed, public_key) -> None``.
- ``validate_and_encode(block) -> bytes``: ``validate_block`` + ``encode_block`` in one pass
  (the writer's hot path: nothing is checked twice).
- ``validate_block(block) -> None``: structure, per-kind payload schema, delta rules
  (conservation of every asset for every kind; exact DvP + fee deltas for fills; exact deltas for
  deposits and withdrawals; none for genesis, admissions, key rotations, instrument updates).
- ``check_block_rules(block) -> None``: ``validate_block`` minus the structural checks that
  decoding already enforces (for decoded blocks; the audit's hot path).
- ``validate_successor(previous, block) -> None``: height sequence and hash link.
- ``next_signing_key(block, current) -> Ed25519PublicKey``: the key that must sign the block
  *after* ``block`` (genesis introduces it, a key rotation replaces it).
- ``check_signing_key(block, current) -> None``: ``block`` names the expected key id.
- ``fill_deltas(payload)``, ``deposit_deltas(...)``, ``withdrawal_deltas(...)``,
  ``pool_report_deltas(payload)``, ``distribution_deltas(payload)``: the only delta sets those
  kinds accept, for building blocks.

One rule, one place: the rules below are needed by the ledger, the audit and the venue alike,
and each is stated only here (fast enough for every hot path, so nobody needs a twin):

- ``fill_deltas(payload) -> tuple[Delta, ...]``: delivery versus payment plus fees.
- ``check_non_negative(balances, deltas) -> None``: ``BlockError("block.negative_balance")``
  if a delta would leave an account outside ``external:`` below zero; ``apply_deltas(balances,
  deltas)`` checks, then applies. ``balances`` maps ``(account, asset) -> int``.
  ``is_external_account(account)``, ``is_participant_account(account)``: who may go negative,
  who may trade.
- ``introduced_key(block) -> bytes | None``: the raw public key a genesis or key rotation
  brings in; ``check_key_rotation(new_key, current_key)``: a rotation must change the key.

Every refusal is a ``BlockError`` (a ``ValueError``) with a stable ``code`` such as
``block.truncated``, ``block.bad_version``, ``block.trailing_bytes``, ``block.bad_payload``,
``block.bad_field``, ``block.not_conserved``, ``block.not_dvp``, ``block.negative_balance``,
``block.bad_link``, ``block.bad_height``, ``block.wrong_key``, ``block.bad_signature``.
"""

from __future__ import annotations

import json
import re
import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping
from hashlib import sha256
from operator import itemgetter
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.hasher import leaf_hash
from ledger.keys import key_id, public_key_bytes

__all__ = [
    "CASH_ASSET",
    "EXTERNAL_PREFIX",
    "FEE_ACCOUNT",
    "FORMAT_VERSION",
    "GENESIS_PREV_HASH",
    "HEADER",
    "KEY_KINDS",
    "KEY_KIND_CODES",
    "KINDS",
    "KIND_CODES",
    "KIND_OFFSET",
    "MAGIC",
    "SIGNATURE_SIZE",
    "VENUE_PREFIX",
    "Block",
    "BlockError",
    "CheckedFill",
    "Delta",
    "SignedBlock",
    "Signer",
    "apply_deltas",
    "check_block_rules",
    "check_fill_record",
    "check_key_rotation",
    "check_non_negative",
    "check_signing_key",
    "decode_block",
    "decode_signed_block",
    "deposit_deltas",
    "distribution_deltas",
    "encode_block",
    "fill_deltas",
    "introduced_key",
    "is_external_account",
    "is_participant_account",
    "make_deltas",
    "next_signing_key",
    "pool_report_deltas",
    "validate_and_encode",
    "validate_block",
    "validate_successor",
    "verify_block_signature",
    "withdrawal_deltas",
]

FORMAT_VERSION = 1
MAGIC = b"ABSL"
KINDS = (
    "genesis",
    "instrument_listed",
    "participant_admitted",
    "deposit",
    "withdrawal",
    "fill",
    "factor_update",
    "key_rotation",
    "instrument_updated",
    # a deal's life (venue/domain/disclosures.py, venue/domain/waterfall.py; docs/DEALS.md)
    "deal_listed",
    "pool_report",
    "distribution",
)
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
# The kinds that bring in a signing key (see introduced_key), and their codes.
KEY_KINDS = frozenset(("genesis", "key_rotation"))
KEY_KIND_CODES = frozenset(KIND_CODES[kind] for kind in KEY_KINDS)
CASH_ASSET = "CNY"
VENUE_PREFIX = "venue:"  # the venue's own accounts
FEE_ACCOUNT = "venue:fees"
EXTERNAL_PREFIX = "external:"  # the outside world: the only accounts that may go negative
SEGMENTS = ("interbank", "exchange")
ROLES = ("broker", "market_maker", "clerk", "operator", "servicer")
FACTOR_ONE = 1_000_000  # pool factors are integers in millionths: 1_000_000 == 1.0
SIGNATURE_SIZE = 64
HASH_SIZE = 32
DEAL_ACCOUNT_PREFIX = "venue:deal:"  # a deal's collection account: venue:deal:<deal_id>
GENESIS_PREV_HASH = bytes(HASH_SIZE)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

HEADER = struct.Struct(">4sBBQQ32s8sI")
KIND_OFFSET = 5  # byte offset of the kind code in an encoding (after magic and version)
_COUNT = struct.Struct(">I")
_LENGTH = struct.Struct(">H")
_AMOUNT = struct.Struct(">q")

# Accounts, assets and ids: printable ASCII without spaces, commas or quotes, so they are safe in
# CSV exports and file names and compare in byte order exactly as Python orders str.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/@\-]{0,127}")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
HEX_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
HEX_SIGNATURE_PATTERN = re.compile(r"[0-9a-f]{128}")
DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DECIMAL_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")

_canonical_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
).encode


class BlockError(ValueError):
    """A block could not be decoded, or breaks a rule; ``code`` is stable, ``message`` human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Delta(NamedTuple):
    """One balance change a block applies: ``amount`` (signed int) of ``asset`` to ``account``.

    A named tuple rather than a dataclass: fills create five per block and tuple construction is
    several times cheaper than a frozen dataclass's.
    """

    account: str
    asset: str
    amount: int


class Block(NamedTuple):
    """An unsigned block. ``payload`` must not be mutated after construction.

    ``deltas`` must be in canonical form (see ``make_deltas``); ``key_id`` is the 16-hex-char id
    of the key that signs this block. A named tuple (immutable, like a frozen dataclass) because
    it is built for every block written and every block audited, and tuple construction is
    several times cheaper.
    """

    height: int
    prev_hash: bytes
    timestamp_ns: int
    kind: str
    key_id: str
    payload: dict[str, Any]
    deltas: tuple[Delta, ...]
    version: int = FORMAT_VERSION

    def encode(self) -> bytes:
        """The canonical byte encoding (what is hashed and signed)."""
        return encode_block(self)


class SignedBlock(NamedTuple):
    """A block with its canonical encoding, hash and Ed25519 signature over that hash."""

    block: Block
    encoded: bytes
    block_hash: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """The stored record: ``encoding || signature``."""
        return self.encoded + self.signature

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def leaf_hash(self) -> bytes:
        """This block's Merkle leaf hash: ``SHA-256(0x00 || block_hash)``."""
        return leaf_hash(self.block_hash)


def make_deltas(changes: Iterable[tuple[str, str, int]]) -> tuple[Delta, ...]:
    """Canonical deltas from (account, asset, amount) triples: summed per key, zeros dropped,
    sorted by (account, asset)."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for account, asset, amount in changes:
        totals[account, asset] += amount
    return tuple(
        Delta(account, asset, amount)
        for (account, asset), amount in sorted(totals.items())
        if amount
    )


# --------------------------------------------------------------------------- encoding


_SCALAR_TYPES = (str, bool, type(None))


def _check_canonical_value(value: Any, where: str) -> None:
    """Payload values: int (not float), str, bool, None, list, dict with str keys — recursively.

    The loop over a dict's items is the hot path (a fill payload is one flat dict), so scalars
    are checked inline by exact type before falling back to the recursive case.
    """
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise BlockError("block.bad_field", f"{where} has a non-string key {key!r}")
            item_type = type(item)
            if item_type is str:
                continue
            if item_type is int:
                if not INT64_MIN <= item <= INT64_MAX:
                    raise BlockError("block.bad_field", f"{where}.{key} is outside int64")
                continue
            _check_canonical_value(item, f"{where}.{key}")
        return
    if type(value) is list:
        for index, item in enumerate(value):
            _check_canonical_value(item, f"{where}[{index}]")
        return
    if type(value) is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise BlockError("block.bad_field", f"{where} is outside the 64-bit integer range")
        return
    if type(value) in _SCALAR_TYPES:
        return
    raise BlockError("block.bad_field", f"{where} has a {type(value).__name__}, not allowed")


# Names already seen to match NAME_PATTERN. Accounts and assets repeat in every block, so a set
# lookup replaces two regex matches per delta; bounded so hostile input cannot grow it forever.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_LIMIT = 100_000


def _is_valid_name(name: object) -> bool:
    if name in _VALID_NAMES:
        return True
    if not (type(name) is str and NAME_PATTERN.fullmatch(name)):
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_LIMIT:
        _VALID_NAMES.add(name)
    return True


# Encoded (length-prefixed) delta names, memoised: the same few accounts and assets appear in
# every block. Bounded like _VALID_NAMES; only names that passed validation are stored.
_ENCODED_NAMES: dict[str, bytes] = {}


def _encode_name(name: str) -> bytes:
    encoded = _ENCODED_NAMES.get(name)
    if encoded is None:
        raw = name.encode("ascii")
        encoded = _LENGTH.pack(len(raw)) + raw
        if len(_ENCODED_NAMES) < _VALID_NAMES_LIMIT:
            _ENCODED_NAMES[name] = encoded
    return encoded


def encode_block(block: Block) -> bytes:
    """Canonical encoding of ``block``; ``BlockError`` if a field cannot be encoded canonically.

    Checks only what encoding needs (field ranges, payload value types, delta form); the
    business rules live in ``validate_block``. To do both, ``validate_and_encode`` is cheaper.
    """
    kind_code = KIND_CODES.get(block.kind)
    if kind_code is None:
        raise BlockError("block.bad_kind", f"unknown kind {block.kind!r}")
    if not isinstance(block.payload, dict):
        raise BlockError("block.bad_payload", "payload must be a dict")
    _check_canonical_value(block.payload, "payload")
    _check_deltas_form(block.deltas)
    return _encode_checked(block, kind_code)


def validate_and_encode(block: Block) -> bytes:
    """``validate_block`` then the canonical encoding, without checking anything twice.

    The writer's hot path: the delta form is checked once, and a fill's payload value types
    are already pinned down by its schema (no free-form fields), so only other kinds get the
    generic canonical-value walk.
    """
    validate_block(block)
    if block.kind == "fill":
        return _encode_checked(block, KIND_CODES["fill"], _validated_fill_json(block.payload))
    _check_canonical_value(block.payload, "payload")
    return _encode_checked(block, KIND_CODES[block.kind])


# The canonical JSON of a fill whose schema has been validated, as one %-format: keys in sorted
# order; ints with %d (the schema refuses bools); names with quotes and no escaping (the name
# pattern allows no quote, backslash, control or non-ASCII character); the two order ids are
# either, so they are rendered first. Equal byte for byte to _canonical_json (tested); about
# twice as fast, on the writer's hot path.
_FILL_JSON_TEMPLATE = (
    '{"accrued":%d,"aggressor":"%s","buyer":"%s","buyer_fee":%d,"buyer_segment":"%s",'
    '"factor":%d,"instrument":"%s","maker_order_id":%s,"price":%d,"qty":%d,"seller":"%s",'
    '"seller_fee":%d,"seller_segment":"%s","settlement_amount":%d,"taker_order_id":%s,'
    '"timestamp_ns":%d,"trade_id":"%s"}'
)


def _order_id_json(value: int | str) -> str:
    return str(value) if type(value) is int else f'"{value}"'


def _validated_fill_json(payload: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of a fill payload that passed ``_validate_fill``."""
    text = _FILL_JSON_TEMPLATE % (
        payload["accrued"],
        payload["aggressor"],
        payload["buyer"],
        payload["buyer_fee"],
        payload["buyer_segment"],
        payload["factor"],
        payload["instrument"],
        _order_id_json(payload["maker_order_id"]),
        payload["price"],
        payload["qty"],
        payload["seller"],
        payload["seller_fee"],
        payload["seller_segment"],
        payload["settlement_amount"],
        _order_id_json(payload["taker_order_id"]),
        payload["timestamp_ns"],
        payload["trade_id"],
    )
    return text.encode("ascii")


def _encode_checked(block: Block, kind_code: int, payload: bytes | None = None) -> bytes:
    """The encoding of a block whose payload values and delta form have been checked."""
    if payload is None:
        payload = _canonical_json(block.payload).encode("ascii")
    try:
        header = HEADER.pack(
            MAGIC,
            block.version,
            kind_code,
            block.height,
            block.timestamp_ns,
            block.prev_hash,
            bytes.fromhex(block.key_id),
            len(payload),
        )
    except (struct.error, ValueError, TypeError) as error:
        raise BlockError("block.bad_field", f"header field out of range: {error}") from error
    if len(block.prev_hash) != HASH_SIZE or len(block.key_id) != 16:
        raise BlockError("block.bad_field", "prev_hash must be 32 bytes and key_id 16 hex chars")
    parts = [header, payload, _COUNT.pack(len(block.deltas))]
    pack_amount = _AMOUNT.pack
    for account, asset, amount in block.deltas:
        parts.append(_encode_name(account))
        parts.append(_encode_name(asset))
        parts.append(pack_amount(amount))
    return b"".join(parts)


def _check_deltas_form(deltas: tuple[Delta, ...]) -> None:
    """Deltas must be canonical: valid names, non-zero int64 amounts, strictly sorted keys."""
    if not isinstance(deltas, tuple):
        raise BlockError("block.bad_field", "deltas must be a tuple of Delta")
    previous: tuple[str, str] | None = None
    for delta in deltas:
        if type(delta) is not Delta:
            raise BlockError("block.bad_field", "deltas must be a tuple of Delta")
        account, asset, amount = delta
        if not _is_valid_name(account):
            raise BlockError("block.bad_field", f"bad delta account {account!r}")
        if not _is_valid_name(asset):
            raise BlockError("block.bad_field", f"bad delta asset {asset!r}")
        if type(amount) is not int or amount == 0 or not INT64_MIN <= amount <= INT64_MAX:
            raise BlockError(
                "block.bad_field", f"delta amount must be a non-zero int64: {amount!r}"
            )
        key = (account, asset)
        if previous is not None and key <= previous:
            raise BlockError(
                "block.noncanonical_deltas", "deltas must be unique and sorted by account, asset"
            )
        previous = key


def _reject_non_integer(text: str) -> Any:
    raise BlockError("block.bad_payload", f"payload holds a non-integer number {text}")


# Built once: ``json.loads`` with keyword arguments would build a new decoder for every block.
_json_decoder = json.JSONDecoder(
    parse_float=_reject_non_integer, parse_constant=_reject_non_integer
)


def decode_block(encoded: bytes) -> Block:
    """Strictly decode a block encoding (without signature); ``BlockError`` on any deviation."""
    block, end = _decode_prefix(encoded)
    if end != len(encoded):
        raise BlockError("block.trailing_bytes", f"{len(encoded) - end} bytes after the deltas")
    return block


def _decode_prefix(data: bytes) -> tuple[Block, int]:
    if type(data) is not bytes:  # bytearray/memoryview slices are not hashable (name cache)
        data = bytes(data)
    if len(data) < HEADER.size:
        raise BlockError("block.truncated", f"{len(data)} bytes is shorter than the header")
    magic, version, kind_code, height, timestamp_ns, prev_hash, raw_key_id, payload_length = (
        HEADER.unpack_from(data, 0)
    )
    if magic != MAGIC:
        raise BlockError("block.bad_magic", f"magic is {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BlockError("block.bad_version", f"format version {version} is not {FORMAT_VERSION}")
    if kind_code >= len(KINDS):
        raise BlockError("block.bad_kind", f"unknown kind code {kind_code}")
    position = HEADER.size
    payload_bytes = data[position : position + payload_length]
    if len(payload_bytes) != payload_length:
        raise BlockError("block.truncated", "payload runs past the end of the record")
    position += payload_length
    try:
        payload = _json_decoder.decode(payload_bytes.decode("ascii"))
    except BlockError:
        raise
    except ValueError as error:  # includes JSONDecodeError and UnicodeDecodeError
        raise BlockError("block.bad_payload", f"payload is not ASCII JSON: {error}") from error
    if not isinstance(payload, dict):
        raise BlockError("block.bad_payload", "payload must be a JSON object")
    # Re-encoding must reproduce the bytes exactly: catches whitespace, key order, duplicate keys,
    # escapes, "1e3"-style numbers and anything else that is not the one canonical form.
    if _canonical_json(payload).encode("ascii") != payload_bytes:
        raise BlockError("block.noncanonical_payload", "payload is not canonical JSON")
    # Parsed JSON can only hold dict/list/str/int/bool/None (floats and constants are refused
    # above); the walk adds the int64 range check. (A regex prefilter for long digit runs was
    # measured slower than this walk: 6.5 us against 1.3 us per fill payload.)
    _check_canonical_value(payload, "payload")
    if len(data) < position + _COUNT.size:
        raise BlockError("block.truncated", "record ends before the delta count")
    (count,) = _COUNT.unpack_from(data, position)
    position += _COUNT.size
    deltas: list[Delta] = []
    # One inline loop (no helper calls) because audits decode every block: names are sliced,
    # decoded and checked against the cache of known-valid names; order, uniqueness and non-zero
    # amounts are checked on the fly. Short data shows up as a struct.error or a short slice.
    unpack_length, unpack_amount = _LENGTH.unpack_from, _AMOUNT.unpack_from
    previous_key: tuple[str, str] | None = None
    try:
        for _ in range(count):
            (length,) = unpack_length(data, position)
            account_bytes = data[position + 2 : position + 2 + length]
            position += 2 + length
            (length,) = unpack_length(data, position)
            asset_bytes = data[position + 2 : position + 2 + length]
            position += 2 + length
            (amount,) = unpack_amount(data, position)
            position += 8
            account = _DECODED_NAMES.get(account_bytes) or _decode_name(account_bytes)
            asset = _DECODED_NAMES.get(asset_bytes) or _decode_name(asset_bytes)
            if amount == 0:
                raise BlockError("block.bad_field", "delta amount must be non-zero")
            key = (account, asset)
            if previous_key is not None and key <= previous_key:
                raise BlockError(
                    "block.noncanonical_deltas",
                    "deltas must be unique and sorted by account, asset",
                )
            previous_key = key
            deltas.append(Delta(account, asset, amount))
    except struct.error:
        raise BlockError("block.truncated", "record ends inside the deltas") from None
    block = Block(
        height, prev_hash, timestamp_ns, KINDS[kind_code], raw_key_id.hex(), payload, tuple(deltas)
    )
    return block, position


# Raw delta name bytes already decoded and found valid -> the name. The same few accounts and
# assets appear in every block, so one dict lookup replaces decoding and validating each name.
_DECODED_NAMES: dict[bytes, str] = {}


def _decode_name(raw: bytes) -> str:
    """Decode and validate one delta name (the cache-miss path of block decoding)."""
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BlockError("block.bad_field", "delta names must be ASCII") from None
    if not _is_valid_name(name):
        raise BlockError("block.bad_field", f"bad delta name {name!r}")
    if len(_DECODED_NAMES) < _VALID_NAMES_LIMIT:
        _DECODED_NAMES[raw] = name
    return name


def decode_signed_block(record: bytes) -> SignedBlock:
    """Decode a stored record ``encoding || signature``; the signature is *not* verified here."""
    block, end = _decode_prefix(record)
    remaining = len(record) - end
    if remaining < SIGNATURE_SIZE:
        raise BlockError("block.truncated", f"signature is {remaining} bytes, expected 64")
    if remaining > SIGNATURE_SIZE:
        raise BlockError(
            "block.trailing_bytes", f"{remaining - SIGNATURE_SIZE} bytes after signature"
        )
    encoded = bytes(record[:end])
    return SignedBlock(block, encoded, sha256(encoded).digest(), bytes(record[end:]))


# --------------------------------------------------------------------------- fast fill check

# The audit's hot path. A fill record is accepted here only if it is, byte for byte, what the
# writer produces for a valid fill; anything else returns None and goes through the reference
# path (decode_signed_block + check_block_rules), which names the problem. So this path can only
# say "valid" for records the reference path also accepts (property-tested in test_block.py).
#
# Why a regular expression can replace parse + re-encode: the pattern spells out the one
# canonical text of a fill payload -- every field, in sorted key order, no whitespace; names in
# quotes drawn from the name alphabet (no quote, backslash, escape or non-ASCII character can
# occur); integers in canonical decimal (no sign on zero, no leading zero) and small enough to
# be inside int64 -- so a match is exactly a payload that json parses to a fill whose canonical
# re-encoding is the same bytes. Rarer values the reference accepts (a 19-digit fee or order id)
# simply take the reference path.
_NAME_RE = rb"[A-Za-z0-9][A-Za-z0-9:._/@\-]{0,127}"
_SIGNED_RE = rb"0|-?[1-9][0-9]{0,17}"  # 18 digits at most: inside int64 whatever they are
_UNSIGNED_RE = rb"0|[1-9][0-9]{0,17}"
_POSITIVE_RE = rb"[1-9][0-9]{0,17}"
# Nanoseconds since 1970 have 19 digits; led by 1-8 they are below 2**63 (a leading 9, after
# the year 2255, takes the reference path).
_TIMESTAMP_RE = rb"0|[1-9][0-9]{0,17}|[1-8][0-9]{18}"
_SEGMENT_RE = rb"interbank|exchange"
_FACTOR_RE = rb"1000000|[1-9][0-9]{0,5}"  # 1 ... FACTOR_ONE
# Captured, in order: buyer, buyer_fee, instrument, qty, seller, seller_fee, settlement_amount,
# trade_id; the other fields need no value, only their form.
_FILL_PAYLOAD_PATTERN = re.compile(
    b'\\{"accrued":(?:%(u)s),"aggressor":"(?:buy|sell)","buyer":"(%(n)s)","buyer_fee":(%(s)s),'
    b'"buyer_segment":"(?:%(g)s)","factor":(?:%(f)s),"instrument":"(%(n)s)",'
    b'"maker_order_id":(?:%(s)s|"%(n)s"),"price":(?:%(p)s),"qty":(%(p)s),"seller":"(%(n)s)",'
    b'"seller_fee":(%(s)s),"seller_segment":"(?:%(g)s)","settlement_amount":(%(p)s),'
    b'"taker_order_id":(?:%(s)s|"%(n)s"),"timestamp_ns":(?:%(t)s),"trade_id":"(%(n)s)"\\}'
    % {
        b"u": _UNSIGNED_RE,
        b"s": _SIGNED_RE,
        b"p": _POSITIVE_RE,
        b"n": _NAME_RE,
        b"g": _SEGMENT_RE,
        b"f": _FACTOR_RE,
        b"t": _TIMESTAMP_RE,
    }
)
_FILL_KIND_CODE = KINDS.index("fill")
_HEADER_SIZE = HEADER.size
_SHORTEST_FILL_RECORD = HEADER.size + SIGNATURE_SIZE


class CheckedFill(NamedTuple):
    """What the audit needs from a fill record that ``check_fill_record`` accepted.

    ``key_id`` is the raw 8 bytes of the header. ``delta_keys[i]`` = ``(account, asset)`` and
    ``delta_amounts[i]`` = amount of the block's ``i``-th delta, in canonical order (together
    equal to ``block.deltas``).
    """

    height: int
    prev_hash: bytes
    key_id: bytes
    block_hash: bytes
    signature: bytes
    trade_id: str
    delta_keys: tuple[tuple[str, str], ...]
    delta_amounts: tuple[int, ...]


class _FillDeltaPlan(NamedTuple):
    """The byte layout of one fill's deltas for given parties, instrument and zero amounts.

    ``names`` unpacks the delta count and the encoded names (skipping amounts) and must give
    ``expected_names``; ``amounts`` unpacks just the amounts, which must equal ``order`` applied
    to the five slot amounts of ``fill_deltas`` (buyer cash, seller cash, fees, buyer units,
    seller units). Two C-level unpacks instead of a Python loop per delta.
    """

    names: struct.Struct
    expected_names: tuple[Any, ...]
    amounts: struct.Struct
    order: Any  # operator.itemgetter over the five slot amounts
    keys: tuple[tuple[str, str], ...]


# (buyer, seller, instrument, which of the three cash amounts are non-zero) -> plan. Parties and
# instruments repeat, so sorting, encoding and the party checks happen once per combination: a
# plan exists only for distinct participant parties and a non-cash instrument. Bounded like the
# name caches so hostile input cannot grow it forever.
_FILL_DELTA_PLANS: dict[tuple[bytes, bytes, bytes, bool, bool, bool], _FillDeltaPlan] = {}
_PLAN_LIMIT = 10_000


def _fill_delta_plan(
    plan_key: tuple[bytes, bytes, bytes, bool, bool, bool],
) -> _FillDeltaPlan | None:
    """The plan for ``plan_key``, or None if the parties or instrument break the fill schema."""
    buyer, seller, instrument = (name.decode("ascii") for name in plan_key[:3])
    if (
        instrument == CASH_ASSET
        or buyer == seller
        or not is_participant_account(buyer)
        or not is_participant_account(seller)
    ):
        return None
    keys = [slot[:2] for slot in _fill_slots(buyer, seller, instrument, 0, 0, 0, 0)]
    present = [slot for slot in range(5) if slot >= 3 or plan_key[3 + slot]]  # qty is >= 1
    order = sorted(present, key=keys.__getitem__)
    encoded = [_encode_name(keys[slot][0]) + _encode_name(keys[slot][1]) for slot in order]
    names_format = ">I" + "".join(f"{len(names)}s8x" for names in encoded)
    amounts_format = ">4x" + "".join(f"{len(names)}xq" for names in encoded)
    plan = _FillDeltaPlan(
        struct.Struct(names_format),
        (len(order), *encoded),
        struct.Struct(amounts_format),
        itemgetter(*order) if len(order) > 1 else lambda amounts: (amounts[order[0]],),
        tuple(keys[slot] for slot in order),
    )
    if len(_FILL_DELTA_PLANS) < _PLAN_LIMIT:
        _FILL_DELTA_PLANS[plan_key] = plan
    return plan


def check_fill_record(record: bytes) -> CheckedFill | None:
    """Decode and rule-check a stored fill record in one pass, or ``None`` to use the reference.

    Accepts only a record that ``decode_signed_block`` decodes to a fill passing
    ``check_block_rules``, and then returns the same facts. ``None`` means "not decided here":
    another kind, or anything unusual or wrong -- the caller runs the reference path, which
    accepts it or raises the precise ``BlockError``. Never raises for any input bytes.
    """
    if type(record) is not bytes or len(record) < _SHORTEST_FILL_RECORD:
        return None
    magic, version, kind_code, height, _, prev_hash, raw_key_id, payload_length = (
        HEADER.unpack_from(record, 0)
    )
    if magic != MAGIC or version != FORMAT_VERSION or kind_code != _FILL_KIND_CODE:
        return None
    payload_end = _HEADER_SIZE + payload_length
    end = len(record) - SIGNATURE_SIZE
    if payload_end > end:
        return None
    match = _FILL_PAYLOAD_PATTERN.fullmatch(record, _HEADER_SIZE, payload_end)
    if match is None:
        return None
    buyer, buyer_fee, instrument, qty, seller, seller_fee, amount, trade_id = match.groups()
    # fill_deltas' slot amounts, by its own arithmetic; the slots' names are in the plan.
    slot_amounts = _fill_slot_amounts(int(amount), int(buyer_fee), int(seller_fee), int(qty))
    plan_key = (buyer, seller, instrument, slot_amounts[0] != 0, slot_amounts[1] != 0,
                slot_amounts[2] != 0)  # fmt: skip
    plan = _FILL_DELTA_PLANS.get(plan_key) or _fill_delta_plan(plan_key)
    if plan is None:
        return None
    # The exact deltas of fill_deltas must fill the record up to the signature: that checks
    # delta form, order, non-zero amounts and the DvP rule at once. (An expected amount outside
    # int64 can never equal an unpacked one.)
    if payload_end + plan.names.size != end:
        return None
    if plan.names.unpack_from(record, payload_end) != plan.expected_names:
        return None
    delta_amounts = plan.amounts.unpack_from(record, payload_end)
    if delta_amounts != plan.order(slot_amounts):
        return None
    return CheckedFill(
        height,
        prev_hash,
        raw_key_id,
        sha256(record[:end]).digest(),
        record[end:],
        trade_id.decode("ascii"),
        plan.keys,
        delta_amounts,
    )


# --------------------------------------------------------------------------- signing


class Signer:
    """Signs blocks with one Ed25519 private key; caches its public key and key id.

    ``Ed25519PrivateKey.sign`` releases the GIL, so several threads may share one ``Signer``.
    """

    __slots__ = ("key_id", "private_key", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, block: Block) -> SignedBlock:
        """Encode, hash and sign ``block``; ``BlockError`` if it names another key id."""
        if block.key_id != self.key_id:
            raise BlockError(
                "block.wrong_key", f"block names key {block.key_id}, signer is {self.key_id}"
            )
        encoded = encode_block(block)
        block_hash = sha256(encoded).digest()
        return SignedBlock(block, encoded, block_hash, self.private_key.sign(block_hash))

    def sign_hash(self, block_hash: bytes) -> bytes:
        """The raw Ed25519 signature over a 32-byte block hash."""
        return self.private_key.sign(block_hash)


def verify_block_signature(signed: SignedBlock, public_key: Ed25519PublicKey) -> None:
    """Check the block names ``public_key``'s id and its signature over the hash verifies."""
    expected = key_id(public_key)
    if signed.block.key_id != expected:
        raise BlockError(
            "block.wrong_key", f"block names key {signed.block.key_id}, expected {expected}"
        )
    try:
        public_key.verify(signed.signature, signed.block_hash)
    except InvalidSignature:
        raise BlockError("block.bad_signature", "Ed25519 signature does not verify") from None


# --------------------------------------------------------------------------- payload schemas


def _field(payload: Mapping[str, Any], name: str) -> Any:
    if name not in payload:
        raise BlockError("block.bad_field", f"payload lacks {name!r}")
    return payload[name]


def _int(
    payload: Mapping[str, Any], name: str, minimum: int = INT64_MIN, maximum: int = INT64_MAX
) -> int:
    value = _field(payload, name)
    if type(value) is not int or not minimum <= value <= maximum:
        raise BlockError("block.bad_field", f"{name} must be an integer in [{minimum}, {maximum}]")
    return value


def _str(payload: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = _field(payload, name)
    if pattern is NAME_PATTERN:
        valid = _is_valid_name(value)
    else:
        valid = isinstance(value, str) and bool(value) and (not pattern or pattern.fullmatch(value))
    if not valid:
        raise BlockError("block.bad_field", f"{name} must be a valid non-empty string")
    return value


def _choice(payload: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = _field(payload, name)
    if value not in choices:
        raise BlockError("block.bad_field", f"{name} must be one of {', '.join(choices)}")
    return value


def _external(payload: Mapping[str, Any], name: str) -> str:
    value = _str(payload, name, NAME_PATTERN)
    if not is_external_account(value):
        raise BlockError("block.bad_field", f"{name} must be an {EXTERNAL_PREFIX} account")
    return value


def _participant(payload: Mapping[str, Any], name: str) -> str:
    value = _str(payload, name, NAME_PATTERN)
    if not is_participant_account(value):
        raise BlockError("block.bad_field", f"{name} must be a participant account")
    return value


def _fields_exactly(payload: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = payload.keys() - required - optional
    if unknown:
        raise BlockError("block.bad_field", f"unknown payload fields {sorted(unknown)}")
    missing = required - payload.keys()
    if missing:
        raise BlockError("block.bad_field", f"payload lacks {sorted(missing)}")


def _optional(payload: Mapping[str, Any], name: str, kind: type) -> None:
    if name in payload and not isinstance(payload[name], kind):
        raise BlockError("block.bad_field", f"{name} must be a {kind.__name__}")


_FILL_FIELDS = {
    "trade_id", "instrument", "price", "qty", "accrued", "factor", "settlement_amount",
    "buyer_fee", "seller_fee", "maker_order_id", "taker_order_id", "buyer", "seller",
    "buyer_segment", "seller_segment", "aggressor", "timestamp_ns",
}  # fmt: skip


def _validate_genesis(payload: Mapping[str, Any]) -> None:
    _fields_exactly(payload, {"venue", "origin", "public_key"}, {"params"})
    _str(payload, "venue")
    _str(payload, "origin", NAME_PATTERN)
    _str(payload, "public_key", HEX_KEY_PATTERN)
    _optional(payload, "params", dict)


def _validate_instrument_listed(payload: Mapping[str, Any]) -> None:
    required = {"symbol", "currency", "face_per_unit", "tick_size", "pool_factor"}
    _fields_exactly(payload, required, {"min_qty", "qty_increment", "reference"})
    _str(payload, "symbol", NAME_PATTERN)
    _str(payload, "currency", NAME_PATTERN)
    _int(payload, "face_per_unit", 1)
    tick = _str(payload, "tick_size", DECIMAL_PATTERN)
    if not tick.strip("0."):
        raise BlockError("block.bad_field", "tick_size must be positive")
    _int(payload, "pool_factor", 1, FACTOR_ONE)
    for name in ("min_qty", "qty_increment"):
        if name in payload:
            _int(payload, name, 1)
    _optional(payload, "reference", dict)


def _validate_participant_admitted(payload: Mapping[str, Any]) -> None:
    """Trading roles belong to a segment; a clerk, operator or servicer never trades: ``null``."""
    _fields_exactly(payload, {"participant_id", "segment", "role"}, {"name", "reference"})
    _participant(payload, "participant_id")
    role = _choice(payload, "role", ROLES)
    if role in ("clerk", "operator", "servicer"):
        if payload["segment"] is not None:
            raise BlockError("block.bad_field", f"a {role} has no segment (null)")
    else:
        _choice(payload, "segment", SEGMENTS)
    _optional(payload, "name", str)
    _optional(payload, "reference", dict)


def _validate_transfer(payload: Mapping[str, Any], counterparty: str) -> None:
    _fields_exactly(payload, {"account", "asset", "amount", counterparty}, {"reference"})
    _participant(payload, "account")
    _str(payload, "asset", NAME_PATTERN)
    _int(payload, "amount", 1)
    _external(payload, counterparty)
    _optional(payload, "reference", str)


# (field, minimum, maximum) of the fill's integer fields, checked in one loop: fills are the hot
# path of both writing and auditing, so this avoids a helper call per field.
_FILL_INT_RANGES = (
    ("price", 1, INT64_MAX),
    ("qty", 1, INT64_MAX),
    ("accrued", 0, INT64_MAX),
    ("factor", 1, FACTOR_ONE),
    ("settlement_amount", 1, INT64_MAX),
    ("buyer_fee", INT64_MIN, INT64_MAX),
    ("seller_fee", INT64_MIN, INT64_MAX),
    ("timestamp_ns", 0, INT64_MAX),
)


def _validate_fill(payload: Mapping[str, Any]) -> None:
    if len(payload) != len(_FILL_FIELDS) or payload.keys() != _FILL_FIELDS:
        _fields_exactly(payload, _FILL_FIELDS, set())
    for name, minimum, maximum in _FILL_INT_RANGES:
        value = payload[name]
        if type(value) is not int or not minimum <= value <= maximum:
            raise BlockError(
                "block.bad_field", f"{name} must be an integer in [{minimum}, {maximum}]"
            )
    for name in ("trade_id", "instrument"):
        if not _is_valid_name(payload[name]):
            raise BlockError("block.bad_field", f"{name} must be a valid name")
    if payload["instrument"] == CASH_ASSET:
        raise BlockError("block.bad_field", "a fill's instrument cannot be the cash asset")
    for name in ("maker_order_id", "taker_order_id"):
        value = payload[name]
        if not (type(value) is int or _is_valid_name(value)):
            raise BlockError("block.bad_field", f"{name} must be an integer or a valid name")
    if _participant(payload, "buyer") == _participant(payload, "seller"):
        raise BlockError("block.bad_field", "buyer and seller must differ")
    if payload["buyer_segment"] not in SEGMENTS or payload["seller_segment"] not in SEGMENTS:
        raise BlockError("block.bad_field", f"segments must be one of {', '.join(SEGMENTS)}")
    if payload["aggressor"] not in ("buy", "sell"):
        raise BlockError("block.bad_field", "aggressor must be buy or sell")


def _validate_factor_update(payload: Mapping[str, Any]) -> None:
    _fields_exactly(payload, {"instrument", "factor"}, {"effective_date", "reference"})
    _str(payload, "instrument", NAME_PATTERN)
    _int(payload, "factor", 1, FACTOR_ONE)
    _optional(payload, "effective_date", str)
    _optional(payload, "reference", dict)


INSTRUMENT_CHANGES = ("coupon_roll", "status")


def _validate_instrument_updated(payload: Mapping[str, Any]) -> None:
    """A reference-data change other than the pool factor: a coupon roll or a halt/resume."""
    _fields_exactly(payload, {"symbol", "change", "reference"}, {"effective_date"})
    _str(payload, "symbol", NAME_PATTERN)
    _choice(payload, "change", INSTRUMENT_CHANGES)
    _optional(payload, "reference", dict)
    _optional(payload, "effective_date", str)


def _validate_key_rotation(payload: Mapping[str, Any]) -> None:
    _fields_exactly(payload, {"new_public_key"}, {"reason"})
    _str(payload, "new_public_key", HEX_KEY_PATTERN)
    _optional(payload, "reason", str)


def _collection_account(payload: Mapping[str, Any]) -> str:
    value = _str(payload, "collection_account", NAME_PATTERN)
    if value != DEAL_ACCOUNT_PREFIX + payload["deal_id"]:
        raise BlockError("block.bad_field", f"collection_account is {DEAL_ACCOUNT_PREFIX}<deal_id>")
    return value


def _validate_deal_listed(payload: Mapping[str, Any]) -> None:
    """A deal's terms, stated once at listing (``venue.domain.waterfall.DealTerms``)."""
    _fields_exactly(payload, {"deal_id", "terms", "pool_balance", "collection_account"}, set())
    _str(payload, "deal_id", NAME_PATTERN)
    _collection_account(payload)
    _int(payload, "pool_balance", 0)
    _optional(payload, "terms", dict)


_POOL_REPORT_FIELDS = {
    "deal_id", "period", "period_start", "period_end", "pool_balance_start", "asset_count",
    "tape_root", "totals", "servicer_public_key", "signature", "servicer", "collection_account",
}  # fmt: skip


def _validate_pool_report(payload: Mapping[str, Any]) -> None:
    """A servicer's signed report (``venue.domain.disclosures.PoolReport.to_record``) with the
    servicer's account, which remits the period's collections to the collection account."""
    _fields_exactly(payload, _POOL_REPORT_FIELDS, set())
    _str(payload, "deal_id", NAME_PATTERN)
    _collection_account(payload)
    _participant(payload, "servicer")
    _int(payload, "period", 1)
    _int(payload, "pool_balance_start", 0)
    _int(payload, "asset_count", 1)
    for name in ("period_start", "period_end"):
        _str(payload, name, DATE_PATTERN)
    _str(payload, "tape_root", HEX_KEY_PATTERN)  # a 32-byte hash: 64 hex, like a key
    _str(payload, "servicer_public_key", HEX_KEY_PATTERN)
    _str(payload, "signature", HEX_SIGNATURE_PATTERN)
    totals = _field(payload, "totals")
    if not isinstance(totals, dict):
        raise BlockError("block.bad_field", "totals must be an object")
    _int(totals, "collected", 0)
    _int(totals, "pool_balance", 0)


def _validate_distribution(payload: Mapping[str, Any]) -> None:
    """A payment date: the waterfall's figures and every payment (``distribution_deltas``)."""
    required = {"deal_id", "period", "payment_date", "collection_account", "servicer",
                "trustee_account", "servicer_fee", "trustee_fee", "payments", "waterfall",
                "factors"}  # fmt: skip
    _fields_exactly(payload, required, set())
    _str(payload, "deal_id", NAME_PATTERN)
    _collection_account(payload)
    _participant(payload, "servicer")
    _external(payload, "trustee_account")
    _int(payload, "period", 1)
    _str(payload, "payment_date", DATE_PATTERN)
    _int(payload, "servicer_fee", 0)
    _int(payload, "trustee_fee", 0)
    _optional(payload, "waterfall", dict)
    factors = _field(payload, "factors")
    if not isinstance(factors, dict) or not all(
        _is_valid_name(symbol) and type(factor) is int and 0 <= factor <= FACTOR_ONE
        for symbol, factor in factors.items()
    ):
        raise BlockError("block.bad_field", "factors maps instruments to factors in [0, 1e6]")
    payments = _field(payload, "payments")
    if not isinstance(payments, list):
        raise BlockError("block.bad_field", "payments must be a list")
    for entry in payments:
        if not (
            isinstance(entry, list)
            and len(entry) == 5
            and _is_valid_name(entry[0])
            and not entry[0].startswith(VENUE_PREFIX)
            and _is_valid_name(entry[1])
            and all(type(amount) is int and 0 <= amount <= INT64_MAX for amount in entry[2:])
        ):
            raise BlockError(
                "block.bad_field",
                "a payment is [holder, instrument, interest, principal, residual], amounts >= 0",
            )


_PAYLOAD_VALIDATORS = {
    "genesis": _validate_genesis,
    "instrument_listed": _validate_instrument_listed,
    "participant_admitted": _validate_participant_admitted,
    "deposit": lambda payload: _validate_transfer(payload, "source"),
    "withdrawal": lambda payload: _validate_transfer(payload, "destination"),
    "fill": _validate_fill,
    "factor_update": _validate_factor_update,
    "key_rotation": _validate_key_rotation,
    "instrument_updated": _validate_instrument_updated,
    "deal_listed": _validate_deal_listed,
    "pool_report": _validate_pool_report,
    "distribution": _validate_distribution,
}


# --------------------------------------------------------------------------- delta rules


def fill_deltas(payload: Mapping[str, Any]) -> tuple[Delta, ...]:
    """The exact delivery-versus-payment + fee deltas of a fill, in canonical form.

    The one statement of the DvP rule: the ledger derives a fill's deltas with it, checks the
    deltas given with a fill against it, and the audit (through ``check_block_rules`` and
    ``check_fill_record``) verifies every stored fill by it. With ``A = settlement_amount``:
    buyer cash ``-(A + buyer_fee)``, seller cash ``+(A - seller_fee)``, ``venue:fees`` cash
    ``+(buyer_fee + seller_fee)`` (fees may be negative: a rebate), buyer units ``+qty``, seller
    units ``-qty``; zero entries left out; sorted by (account, asset).

    ``payload`` needs ``settlement_amount``, ``buyer_fee``, ``seller_fee``, ``qty`` (ints) and
    ``buyer``, ``seller``, ``instrument`` (names); other fields are ignored. ``KeyError`` or
    ``TypeError`` for a payload without them. For a payload that passes the fill schema the
    five keys are distinct, so the result conserves every asset.

    On the append hot path (about 1.4 us here): no named-tuple ``__new__`` (see ``_fill_slots``),
    and the general ``make_deltas`` merge is not needed, only dropping zeros and one sort.
    """
    deltas = _fill_slots(
        payload["buyer"],
        payload["seller"],
        payload["instrument"],
        payload["settlement_amount"],
        payload["buyer_fee"],
        payload["seller_fee"],
        payload["qty"],
    )
    if not (deltas[0][2] and deltas[1][2] and deltas[2][2] and deltas[3][2]):  # rare: a zero
        deltas = [delta for delta in deltas if delta[2]]
    deltas.sort()
    return tuple(deltas)


_new_tuple = tuple.__new__  # Delta(...) without the named tuple's Python-level __new__


def _fill_slots(
    buyer: str,
    seller: str,
    instrument: str,
    amount: int,
    buyer_fee: int,
    seller_fee: int,
    qty: int,
) -> list[Delta]:
    """The five entries of a fill's DvP rule in slot order -- buyer cash, seller cash, fees,
    buyer units, seller units -- zero amounts kept (``fill_deltas`` drops them and sorts;
    ``check_fill_record`` lays a stored fill's deltas out by these slots)."""
    buyer_cash, seller_cash, fees, buyer_units, seller_units = _fill_slot_amounts(
        amount, buyer_fee, seller_fee, qty
    )
    return [
        _new_tuple(Delta, (buyer, CASH_ASSET, buyer_cash)),
        _new_tuple(Delta, (seller, CASH_ASSET, seller_cash)),
        _new_tuple(Delta, (FEE_ACCOUNT, CASH_ASSET, fees)),
        _new_tuple(Delta, (buyer, instrument, buyer_units)),
        _new_tuple(Delta, (seller, instrument, seller_units)),
    ]


def _fill_slot_amounts(
    amount: int, buyer_fee: int, seller_fee: int, qty: int
) -> tuple[int, int, int, int, int]:
    """The DvP arithmetic: the amounts of ``_fill_slots``, in slot order."""
    return -(amount + buyer_fee), amount - seller_fee, buyer_fee + seller_fee, qty, -qty


def deposit_deltas(
    account: str, asset: str, amount: int, source: str = "external:bank"
) -> tuple[Delta, ...]:
    """Deltas of a deposit: ``amount`` of ``asset`` from the ``external:`` source to ``account``."""
    return make_deltas([(account, asset, amount), (source, asset, -amount)])


def withdrawal_deltas(
    account: str, asset: str, amount: int, destination: str = "external:bank"
) -> tuple[Delta, ...]:
    """Deltas of a withdrawal: ``amount`` of ``asset`` from ``account`` to ``destination``."""
    return make_deltas([(account, asset, -amount), (destination, asset, amount)])


def pool_report_deltas(payload: Mapping[str, Any]) -> tuple[Delta, ...]:
    """The only deltas a pool report accepts: the period's collections (``totals.collected``)
    move from the servicer's cash to the deal's collection account."""
    collected = payload["totals"]["collected"]
    return make_deltas(
        [
            (payload["servicer"], CASH_ASSET, -collected),
            (payload["collection_account"], CASH_ASSET, collected),
        ]
    )


def distribution_deltas(payload: Mapping[str, Any]) -> tuple[Delta, ...]:
    """The only deltas a distribution accepts: the collection account pays the servicer's fee,
    the trustee's fee and every payment to a holder of record (interest + principal +
    residual), all in cash; so cash is conserved and nothing else moves."""
    fees = payload["servicer_fee"] + payload["trustee_fee"]
    paid = fees + sum(sum(entry[2:]) for entry in payload["payments"])
    changes = [
        (payload["collection_account"], CASH_ASSET, -paid),
        (payload["servicer"], CASH_ASSET, payload["servicer_fee"]),
        (payload["trustee_account"], CASH_ASSET, payload["trustee_fee"]),
    ]
    changes += [(entry[0], CASH_ASSET, sum(entry[2:])) for entry in payload["payments"]]
    return make_deltas(changes)


def _check_conservation(deltas: tuple[Delta, ...]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for delta in deltas:
        totals[delta.asset] += delta.amount
    unbalanced = sorted(asset for asset, total in totals.items() if total)
    if unbalanced:
        raise BlockError("block.not_conserved", f"deltas do not sum to zero for {unbalanced}")


def validate_block(block: Block) -> None:
    """All rules one block must satisfy on its own; ``BlockError`` names the first broken one.

    Structure and encodability, the per-kind payload schema, conservation of every asset, and
    the kind's delta rule (fills: exactly ``fill_deltas``; deposits/withdrawals: exactly the
    transfer; genesis, admissions, key rotations: no deltas). Genesis must sit at height 0 with
    the all-zero previous hash and be signed by the key it introduces.
    """
    if block.version != FORMAT_VERSION:
        raise BlockError("block.bad_version", f"format version {block.version} is not supported")
    if block.kind not in KIND_CODES:
        raise BlockError("block.bad_kind", f"unknown kind {block.kind!r}")
    if type(block.height) is not int or not 0 <= block.height <= UINT64_MAX:
        raise BlockError("block.bad_field", "height must be an unsigned 64-bit integer")
    if type(block.timestamp_ns) is not int or not 0 <= block.timestamp_ns <= UINT64_MAX:
        raise BlockError("block.bad_field", "timestamp_ns must be an unsigned 64-bit integer")
    if not isinstance(block.prev_hash, bytes) or len(block.prev_hash) != HASH_SIZE:
        raise BlockError("block.bad_field", "prev_hash must be 32 bytes")
    if not isinstance(block.key_id, str) or not KEY_ID_PATTERN.fullmatch(block.key_id):
        raise BlockError("block.bad_field", "key_id must be 16 lowercase hex characters")
    if type(block.payload) is not dict:
        raise BlockError("block.bad_payload", "payload must be a dict")
    # Value types of free-form fields (``reference``, ``params``) are checked by encode_block,
    # which every block passes through before it is signed; decoded blocks are canonical already.
    _check_deltas_form(block.deltas)
    check_block_rules(block)


def check_block_rules(block: Block) -> None:
    """The business rules of ``validate_block`` alone: payload schema and delta rules.

    For blocks from ``decode_block``/``decode_signed_block``, whose structure and canonical form
    decoding has already enforced (the audit calls this on every block, so the repeated
    structural checks are worth skipping). Any other block goes through ``validate_block``.
    """
    kind, payload = block.kind, block.payload
    _PAYLOAD_VALIDATORS[kind](payload)
    if kind == "fill":
        expected = fill_deltas(payload)
    elif kind == "deposit":
        expected = deposit_deltas(
            payload["account"], payload["asset"], payload["amount"], payload["source"]
        )
    elif kind == "withdrawal":
        expected = withdrawal_deltas(
            payload["account"], payload["asset"], payload["amount"], payload["destination"]
        )
    elif kind == "pool_report":
        expected = pool_report_deltas(payload)
    elif kind == "distribution":
        expected = distribution_deltas(payload)
    elif kind in ("genesis", "participant_admitted", "key_rotation", "instrument_updated",
                  "deal_listed"):  # fmt: skip
        expected = ()
    else:  # instrument_listed, factor_update: any deltas that conserve every asset
        _check_conservation(block.deltas)
        return
    # The exact delta sets above conserve every asset by construction (their accounts are
    # distinct, which the schemas guarantee), so equality implies conservation.
    if block.deltas != expected:
        code = "block.not_dvp" if kind == "fill" else "block.bad_deltas"
        if kind != "fill":
            _check_conservation(block.deltas)  # name the sharper failure when it applies
        raise BlockError(code, f"{kind} deltas do not match its payload")
    if kind == "genesis":
        if block.height != 0 or block.prev_hash != GENESIS_PREV_HASH:
            raise BlockError("block.bad_link", "genesis must be height 0 with a zero prev_hash")
        if key_id(introduced_key(block)) != block.key_id:
            raise BlockError("block.wrong_key", "genesis must be signed by the key it introduces")


def validate_successor(previous: SignedBlock | None, block: Block) -> None:
    """Chain rules: genesis first and only first; height + 1; prev_hash = previous block hash."""
    if previous is None:
        if block.kind != "genesis" or block.height != 0:
            raise BlockError("block.bad_height", "the first block must be genesis at height 0")
        return
    if block.kind == "genesis":
        raise BlockError("block.bad_kind", "genesis may only be the first block")
    if block.height != previous.block.height + 1:
        raise BlockError(
            "block.bad_height", f"height {block.height} follows {previous.block.height}"
        )
    if block.prev_hash != previous.block_hash:
        raise BlockError("block.bad_link", "prev_hash is not the previous block's hash")


def check_signing_key(block: Block, current: Ed25519PublicKey | None) -> None:
    """``block`` must name the key currently in force (genesis names the key it introduces)."""
    if block.kind == "genesis":
        return
    if current is None:
        raise BlockError("block.wrong_key", "no signing key in force before genesis")
    expected = key_id(current)
    if block.key_id != expected:
        raise BlockError("block.wrong_key", f"block names key {block.key_id}, expected {expected}")


# The payload field that names the key a key kind introduces.
_INTRODUCED_KEY_FIELDS = {"genesis": "public_key", "key_rotation": "new_public_key"}


def introduced_key(block: Block) -> bytes | None:
    """The raw 32-byte public key ``block`` introduces, or None if it introduces none.

    The one answer to "which key does this block bring in": genesis names the first signing
    key in ``public_key``, a key rotation the next one in ``new_public_key``; every other kind
    (``KEY_KINDS`` are the two that do) keeps the key in force. Used wherever the chain of keys
    is followed: the ledger on opening, the audit, ``next_signing_key``. ``BlockError``
    (``block.bad_field``) if the field is missing or not 64 lowercase hex characters, so a
    block whose schema was never checked cannot smuggle in a malformed key.
    """
    field = _INTRODUCED_KEY_FIELDS.get(block.kind)
    if field is None:
        return None
    text = block.payload.get(field)
    if type(text) is not str or not HEX_KEY_PATTERN.fullmatch(text):
        raise BlockError("block.bad_field", f"{block.kind} {field} must be 64 lowercase hex chars")
    return bytes.fromhex(text)


def check_key_rotation(new_key: bytes, current_key: bytes | None) -> None:
    """A key rotation must bring in a key other than the one in force (raw 32-byte keys);
    ``BlockError("block.bad_field")`` otherwise."""
    if new_key == current_key:
        raise BlockError("block.bad_field", "key rotation must introduce a different key")


def next_signing_key(block: Block, current: Ed25519PublicKey | None) -> Ed25519PublicKey:
    """The key that must sign the block after ``block``.

    Genesis introduces its key; a key rotation (signed by the old key) introduces a new one,
    which must differ from the old key (``check_key_rotation``); other kinds keep ``current``.
    """
    new_raw = introduced_key(block)
    if block.kind == "genesis":
        return Ed25519PublicKey.from_public_bytes(new_raw)
    if current is None:
        raise BlockError("block.wrong_key", "no signing key in force before genesis")
    if new_raw is None:
        return current
    check_key_rotation(new_raw, public_key_bytes(current))
    return Ed25519PublicKey.from_public_bytes(new_raw)


# --------------------------------------------------------------------------- balances


def is_external_account(account: str) -> bool:
    """Whether ``account`` stands for the outside world (``external:bank``, ``external:issuer``):
    the only accounts whose balances may be negative (money and units enter and leave there)."""
    return account.startswith(EXTERNAL_PREFIX)


def is_participant_account(account: str) -> bool:
    """Whether ``account`` may be a participant's: neither ``external:`` nor ``venue:``."""
    return not account.startswith((EXTERNAL_PREFIX, VENUE_PREFIX))


def check_non_negative(
    balances: Mapping[tuple[str, str], int], deltas: Iterable[tuple[str, str, int]]
) -> None:
    """The no-negative-balance rule: ``BlockError("block.negative_balance")`` naming the first
    delta that would leave an account outside ``external:`` below zero; else nothing.

    ``balances`` maps ``(account, asset)`` to the balance before the block (absent: 0);
    ``deltas`` are ``(account, asset, amount)`` triples (``Delta``s are) with distinct
    ``(account, asset)`` keys, as canonical deltas are, so each is checked against the old
    balance. Changes nothing: apply the deltas after it passes (``apply_deltas`` does both).
    The ledger checks every block with it before writing, on opening, and the audit on replay.
    On the append hot path, hence one inline loop.
    """
    get = balances.get
    for account, asset, amount in deltas:
        value = get((account, asset), 0) + amount
        if value < 0 and not is_external_account(account):
            raise BlockError("block.negative_balance", f"{account} would hold {value} {asset}")


def apply_deltas(
    balances: MutableMapping[tuple[str, str], int], deltas: Iterable[tuple[str, str, int]]
) -> None:
    """Apply ``deltas`` to ``balances``, or refuse them by ``check_non_negative`` (a
    ``BlockError``) having changed nothing. ``deltas`` must have distinct keys (canonical)."""
    deltas = tuple(deltas)
    check_non_negative(balances, deltas)
    for account, asset, amount in deltas:
        balances[account, asset] = balances.get((account, asset), 0) + amount
