"""The REST API's wire types: msgspec structs that the handlers decode requests into and encode
responses from, and that ``venue/api/openapi.py`` turns into the OpenAPI document's schemas.

One definition serves both, so the document cannot drift from what the server accepts: a field
the document calls required is one msgspec refuses the request without, a pattern in the
document is the very regular expression msgspec checks.

Request structs forbid unknown fields (a misspelt optional field is refused, never ignored) and
bound every string and number: decimal strings by pattern and length (their value is then
converted to ticks, units or fen by ``venue.domain`` at the edge, with the instrument's own
rules), integers by range. Every price, quantity and amount on the wire is a decimal string;
times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# ---------------------------------------------------------------- scalar types
Decimal = Annotated[
    str,
    Meta(
        pattern=r"^(0|[1-9][0-9]*)(\.[0-9]+)?$",
        max_length=40,
        description="A non-negative decimal string (no exponent, sign or spaces).",
        examples=["99.8750"],
    ),
]
SignedDecimal = Annotated[
    str, Meta(pattern=r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$", description="A decimal string.")
]
Units = Annotated[
    str,
    Meta(
        pattern=r"^[1-9][0-9]*$",
        max_length=20,
        description="A whole, positive number of units as a string.",
        examples=["1000"],
    ),
]
UnitsOut = Annotated[str, Meta(pattern=r"^(0|[1-9][0-9]*)$", description="Units (a string).")]
Cny = Annotated[
    str,
    Meta(
        pattern=r"^-?(0|[1-9][0-9]*)\.[0-9]{2}$",
        description="CNY with exactly two decimals.",
        examples=["78604.41"],
    ),
]
Amount = Annotated[
    str,
    Meta(
        pattern=r"^(0|[1-9][0-9]*)(\.[0-9]{1,2})?$",
        max_length=24,
        description="CNY (at most 2 decimals) for cash, whole units for a tranche.",
        examples=["1000000.00"],
    ),
]
Symbol = Annotated[
    str,
    Meta(
        pattern=r"^[A-Z0-9]+(-[A-Z0-9]+)*$",
        min_length=1,
        max_length=32,
        examples=["IPABS-2025-1-A"],
    ),
]
Asset = Annotated[
    str,
    Meta(
        pattern=r"^[A-Z0-9]+(-[A-Z0-9]+)*$",
        max_length=32,
        description="'CNY' for cash, else an instrument symbol.",
    ),
]
# Characters that need no escaping in a URL path: what client-chosen ids may hold, so that every
# such id can be looked up by its path (``/v1/orders/by-client-id/{id}``).
URL_SAFE_CHARACTERS = "A-Za-z0-9._~:@!$&'()*+,;=-"
ClientOrderId = Annotated[
    str,
    Meta(
        pattern=rf"^[{URL_SAFE_CHARACTERS}]{{1,64}}$",
        description="1-64 characters that need no escaping in a URL path (letters, digits and "
        "._~:@!$&'()*+,;=-); unique per participant.",
        examples=["my-order-0001"],
    ),
]
ParticipantId = Annotated[
    str, Meta(pattern=r"^P-[A-Z0-9]{1,16}$", max_length=18, examples=["P-BRK1"])
]
KeyId = Annotated[str, Meta(pattern=r"^vk_[0-9a-f]{16}$", examples=["vk_0123456789abcdef"])]
PublicKeyHex = Annotated[
    str, Meta(pattern=r"^[0-9a-f]{64}$", description="A raw Ed25519 public key, 64 hex.")
]
Name = Annotated[str, Meta(min_length=1, max_length=120, pattern=r"^\S(.*\S)?$")]
IsoDate = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", examples=["2026-11-26"])]
Timestamp = Annotated[
    str,
    Meta(description="RFC 3339 UTC time with milliseconds.", examples=["2026-11-26T02:00:00.000Z"]),
]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
OrderId = Annotated[int, Meta(ge=1, le=2**62)]
Limit = Annotated[int, Meta(ge=1, le=1000, description="At most this many items (1-1000).")]
Cursor = Annotated[
    str,
    Meta(
        pattern=r"^[0-9A-Z]{1,24}$",
        description="The next_cursor of the previous page; absent for the first page.",
    ),
]

Side = Literal["buy", "sell"]
OrdStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]
ExecType = Literal["new", "trade", "canceled", "replaced", "expired", "order_status"]
TimeInForce = Literal["gtc", "day", "ioc", "fok"]
SelfTrade = Literal["cancel_taker", "cancel_maker", "cancel_both"]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """Base of every request body and query: unknown fields are refused.

    ``gc=False`` (inherited): wire structs hold only strings, numbers and lists or dicts of
    those, never anything that refers back to them, so the cyclic collector need not track the
    several a request allocates (as for the venue's orders, ``venue/core/orders.py``)."""


class Response(msgspec.Struct, kw_only=True, gc=False):
    """Base of every response body (``gc=False``: see ``Request``)."""


# ---------------------------------------------------------------- queries
class NoQuery(Request):
    """No query parameters."""


class BookQuery(Request):
    depth: Annotated[int, Meta(ge=1, le=100)] = 10


class TradesQuery(Request):
    limit: Annotated[int, Meta(ge=1, le=100)] = 50


class ConsistencyQuery(Request):
    from_: Annotated[int, Meta(ge=1, le=2**62)] = msgspec.field(name="from")
    to: Annotated[int, Meta(ge=1, le=2**62)] | None = None


class OrdersQuery(Request):
    status: Literal["open", "closed", "all"] = "open"
    symbol: Symbol | None = None
    side: Side | None = None
    participant: ParticipantId | None = None
    limit: Limit = 100
    cursor: Cursor | None = None


class FillsQuery(Request):
    symbol: Symbol | None = None
    order_id: OrderId | None = None
    participant: ParticipantId | None = None
    limit: Limit = 100
    cursor: Cursor | None = None


class AccountsQuery(Request):
    participant: ParticipantId | None = None


# ---------------------------------------------------------------- bodies
class PlaceOrderRequest(Request):
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: Units
    order_type: Literal["limit", "market"] = "limit"
    price: Decimal | None = None
    time_in_force: TimeInForce = "gtc"
    post_only: bool = False
    self_trade: SelfTrade = "cancel_taker"


class ReplaceOrderRequest(Request):
    """A new limit price and/or a new *remaining* quantity (at least one)."""

    price: Decimal | None = None
    qty: Units | None = None


class CancelAllRequest(Request):
    symbol: Symbol | None = None


class RegisterKeyRequest(Request):
    public_key: PublicKeyHex


class IssueKeyRequest(Request):
    """No ``public_key``: an HMAC key (its secret is shown once); else an Ed25519 key."""

    public_key: PublicKeyHex | None = None


class AdmitRequest(Request):
    participant_id: ParticipantId
    name: Name
    role: Literal["broker", "market_maker", "clerk", "operator"]
    segment: Literal["interbank", "exchange"] | None = None
    public_key: PublicKeyHex | None = None


class TransferRequest(Request):
    participant: ParticipantId
    asset: Asset
    amount: Amount


class FactorRequest(Request):
    pool_factor: Annotated[str, Meta(pattern=r"^(0|1)\.[0-9]{1,6}$|^1$", examples=["0.780000"])]


class ListInstrumentRequest(Request):
    """An instrument's reference data, as ``venue.domain.instruments.Instrument.from_wire``
    reads it."""

    symbol: Symbol
    deal_name: Text
    tranche_class: Literal["senior", "mezzanine", "subordinated", "equity"]
    seniority_rank: Annotated[int, Meta(ge=1, le=99)]
    rating: Annotated[str, Meta(pattern=r"^[A-Za-z0-9+\-]{1,16}$")]
    underlying: Text
    coupon_rate: Decimal
    coupon_frequency: Literal[1, 2, 4, 12]
    day_count: Literal["ACT/365F", "ACT/360", "30/360", "ACT/ACT"]
    accrual_start: IsoDate
    next_coupon_date: IsoDate
    maturity_date: IsoDate
    min_qty: Units
    qty_increment: Units
    price_band_pct: Decimal
    reference_price: Decimal
    isin: Annotated[str, Meta(pattern=r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")] | None = None
    currency: Literal["CNY"] = "CNY"
    face_per_unit: Decimal = "100.00"
    pool_factor: Decimal = "1.000000"
    tick_size: Decimal = "0.0001"
    status: Literal["open", "halted"] = "open"


# ---------------------------------------------------------------- responses
class Problem(Response):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str
    field: str | None = None
    details: dict[str, Any] = {}


class TimeView(Response):
    time: Timestamp
    epoch_ms: int


class FactorPoint(Response):
    effective_date: IsoDate
    pool_factor: Decimal


class InstrumentView(Response):
    symbol: str
    isin: str | None
    deal_name: str
    tranche_class: str
    seniority_rank: int
    rating: str
    underlying: str
    currency: str
    face_per_unit: Decimal
    pool_factor: Decimal
    coupon_rate: Decimal
    coupon_frequency: int
    day_count: str
    accrual_start: IsoDate
    next_coupon_date: IsoDate
    maturity_date: IsoDate
    tick_size: Decimal
    min_qty: UnitsOut
    qty_increment: UnitsOut
    price_band_pct: Decimal
    reference_price: Decimal
    status: Literal["open", "halted"]
    band_lower: Decimal
    band_upper: Decimal
    factor_history: list[FactorPoint]


class InstrumentList(Response):
    instruments: list[InstrumentView]


class Level(Response):
    price: Decimal
    qty: UnitsOut
    orders: int


class BookView(Response):
    symbol: str
    bids: list[Level]
    asks: list[Level]
    last_seq: int


class TradeView(Response):
    trade_id: str
    symbol: str
    price: Decimal
    qty: UnitsOut
    aggressor_side: Side
    time: Timestamp


class TradeList(Response):
    symbol: str
    trades: list[TradeView]


class ConsistencyView(Response):
    from_: int = msgspec.field(name="from")
    to: int
    proof: list[str]
    """Base64 hashes, RFC 6962 order."""


class PublicKeyView(Response):
    public_key: PublicKeyHex
    key_id: str
    origin: str
    """The checkpoints' origin line (the C2SP signed-note key name)."""


class OrderReport(Response):
    """An order's state with FIX field names."""

    order_id: int
    client_order_id: str
    participant: str
    symbol: str
    side: Side
    order_type: Literal["limit", "market"]
    price: Decimal
    qty: UnitsOut
    time_in_force: TimeInForce
    post_only: bool
    self_trade: SelfTrade
    ord_status: OrdStatus
    exec_type: ExecType
    cum_qty: UnitsOut
    leaves_qty: UnitsOut
    avg_px: Decimal | None
    last_px: Decimal | None
    last_qty: UnitsOut | None
    settlement_amount: Cny
    """The sum of the order's fills' settlement amounts."""
    fees: Cny
    """The order's own fees over its fills (negative: a rebate)."""
    reserved: str
    reserved_asset: Asset
    reason: str | None
    created_at: Timestamp
    updated_at: Timestamp
    trade_ids: list[str]


class OrderList(Response):
    orders: list[OrderReport]
    next_cursor: str | None


class CancelAllResult(Response):
    canceled: list[int]


class Execution(Response):
    """One fill of one of the participant's orders (an execution report, FIX names)."""

    trade_id: str
    order_id: int
    client_order_id: str
    symbol: str
    side: Side
    liquidity: Literal["maker", "taker"]
    last_px: Decimal
    last_qty: UnitsOut
    accrued: Decimal
    """Accrued interest per 100 face (10 decimals)."""
    factor: Decimal
    settlement_amount: Cny
    fee: Cny
    """This side's fee (negative: a rebate)."""
    cash: Cny
    """What this side's cash changed by: -(amount + fee) for a buy, amount - fee for a sell."""
    segment: str
    counterparty_segment: str
    time: Timestamp


class ExecutionList(Response):
    fills: list[Execution]
    next_cursor: str | None


class Balance(Response):
    asset: str
    balance: str
    reserved: str
    available: str


class Reservation(Response):
    order_id: int
    asset: str
    amount: str


class AccountView(Response):
    participant: str
    balances: list[Balance]
    reservations: list[Reservation]


class Receipt(Response):
    """A fill receipt: checked offline by ``ledger.receipt.verify_receipt`` with the venue's
    public key alone (docs/LEDGER.md)."""

    format: str
    block: str
    leaf_index: int
    tree_size: int
    inclusion_proof: list[str]
    checkpoint: str


class ApiKeyView(Response):
    participant_id: str
    key_id: str
    key_type: Literal["hmac", "ed25519"]
    secret: str | None
    """The HMAC secret, shown only in the answer that issues it; None for Ed25519 keys."""
    scopes: list[str]


class KeySummary(Response):
    key_id: str
    key_type: Literal["hmac", "ed25519"]


class KeyList(Response):
    participant_id: str
    keys: list[KeySummary]


class RevokedKey(Response):
    participant_id: str
    key_id: str


class ParticipantView(Response):
    participant_id: str
    name: str
    role: str
    segment: str | None
    keys: list[KeySummary]


class ParticipantList(Response):
    participants: list[ParticipantView]


class AdmittedView(Response):
    participant_id: str
    name: str
    role: str
    segment: str | None
    key_id: str
    key_type: Literal["hmac", "ed25519"]
    secret: str | None
    scopes: list[str]


class TransferView(Response):
    participant: str
    asset: str
    amount: str
    balance: str
    kind: Literal["deposit", "withdrawal"]
