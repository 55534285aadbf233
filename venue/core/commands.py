"""Immutable commands: the only way anything changes in the venue.

Every command the sequencer accepts is journaled as ``{"seq", "ts", "type", ...fields}`` before it
is acknowledged, and replaying the journal through :class:`venue.core.exchange.Exchange` rebuilds
the venue exactly. Commands therefore carry only plain integers and strings (wire decimals are
already converted to ticks, units and fen by the API edge or the CLI), and the sequencer stamps
each with its sequence number and timestamp so replay never consults a clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Command:
    """Base class. ``TYPE`` names the command in the journal."""

    TYPE: ClassVar[str] = ""

    def to_record(self) -> dict[str, Any]:
        """``{"type": TYPE, field: value, ...}``: the journal record without seq and ts."""
        record = {"type": self.TYPE}
        for name in field_names(type(self)):
            record[name] = getattr(self, name)
        return record


@dataclass(frozen=True, slots=True)
class PlaceOrder(Command):
    """A new order. ``price`` is in ticks (``None`` for a market order), ``qty`` in units."""

    TYPE: ClassVar[str] = "place_order"
    participant: str
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    order_type: str  # "limit" | "market"
    price: int | None
    qty: int
    time_in_force: str = "gtc"  # gtc | day | ioc | fok
    post_only: bool = False
    self_trade: str = "cancel_taker"  # cancel_taker | cancel_maker | cancel_both


@dataclass(frozen=True, slots=True)
class CancelOrder(Command):
    TYPE: ClassVar[str] = "cancel_order"
    participant: str
    order_id: int


@dataclass(frozen=True, slots=True)
class ReplaceOrder(Command):
    """New limit price (ticks) and new *remaining* quantity (units); ``None`` keeps the current."""

    TYPE: ClassVar[str] = "replace_order"
    participant: str
    order_id: int
    price: int | None
    qty: int | None


@dataclass(frozen=True, slots=True)
class CancelAll(Command):
    TYPE: ClassVar[str] = "cancel_all"
    participant: str
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class CancelOrders(Command):
    """Cancel the listed orders of ``participant`` in one command (cancel-on-disconnect: a
    session's orders). Orders that have already ended are skipped; another's is refused."""

    TYPE: ClassVar[str] = "cancel_orders"
    participant: str
    order_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MassQuote(Command):
    """Replace this participant's quote set in ``symbol`` with ``bids`` and ``asks``, atomically.

    Levels are ``(price_ticks, qty_units)`` pairs, best first (bids strictly descending, asks
    strictly ascending); either side may be empty, both empty withdraws the quotes. ``quote_id``
    (1-48 printable characters, new for this participant) names the set: its orders get the
    client_order_ids ``<quote_id>.b1``, ``.b2``, ... and ``<quote_id>.a1``, ... One command and
    one journal record, so after a crash either the whole new set or the whole old one stands.
    See ``venue/core/quoting.py`` for the rules.
    """

    TYPE: ClassVar[str] = "mass_quote"
    participant: str
    quote_id: str
    symbol: str
    bids: tuple[tuple[int, int], ...] = ()
    asks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SetMmp(Command):
    """Market maker protection for ``participant`` in ``symbol``: once more than ``qty_limit``
    units of its resting orders are filled within ``window_ms``, its quotes there are pulled and
    new quotes refused until :class:`ResetMmp`. ``qty_limit`` 0 turns protection off."""

    TYPE: ClassVar[str] = "set_mmp"
    participant: str
    symbol: str
    window_ms: int
    qty_limit: int


@dataclass(frozen=True, slots=True)
class ResetMmp(Command):
    """Lift a triggered market maker protection (the fills counted so far are forgotten)."""

    TYPE: ClassVar[str] = "reset_mmp"
    participant: str
    symbol: str


@dataclass(frozen=True, slots=True)
class ListInstrument(Command):
    """``instrument`` is the wire form accepted by ``Instrument.from_wire``."""

    TYPE: ClassVar[str] = "list_instrument"
    instrument: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AdmitParticipant(Command):
    """Admits a participant; ``key_id``/``secret`` are its first API credentials."""

    TYPE: ClassVar[str] = "admit_participant"
    participant: str
    name: str
    segment: str | None  # None for clerks and operators, who never trade
    role: str
    key_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class IssueApiKey(Command):
    """Registers one more API key of ``participant`` (key rotation: issue, then revoke the old).

    ``secret`` is the credential as ``venue.domain.participants`` encodes it: an HMAC secret, or
    ``"ed25519:" + public key hex`` for an Ed25519 key (the venue then holds no secret)."""

    TYPE: ClassVar[str] = "issue_api_key"
    participant: str
    key_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class RevokeApiKey(Command):
    """Revokes ``key_id``, which must belong to ``participant``: it authenticates nothing more."""

    TYPE: ClassVar[str] = "revoke_api_key"
    participant: str
    key_id: str


@dataclass(frozen=True, slots=True)
class Deposit(Command):
    """Cash (asset ``"CNY"``, amount in fen) or tranche units (asset = symbol, amount in units)."""

    TYPE: ClassVar[str] = "deposit"
    participant: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class Withdraw(Command):
    TYPE: ClassVar[str] = "withdraw"
    participant: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class SetTradingStatus(Command):
    """Halt (``"halted"``) or resume (``"open"``) trading in one instrument."""

    TYPE: ClassVar[str] = "set_trading_status"
    symbol: str
    status: str


@dataclass(frozen=True, slots=True)
class UpdateFactor(Command):
    """New pool factor in micro-units (1_000_000 = 1.0); later fills settle at it."""

    TYPE: ClassVar[str] = "update_factor"
    symbol: str
    factor: int


@dataclass(frozen=True, slots=True)
class RollCouponPeriod(Command):
    """Move an instrument to the coupon period containing the trade date (issued by the venue
    at each day start once ``next_coupon_date`` is reached)."""

    TYPE: ClassVar[str] = "roll_coupon_period"
    symbol: str


@dataclass(frozen=True, slots=True)
class ListDeal(Command):
    """A deal's terms (``venue.domain.waterfall.DealTerms.to_record``) over tranches already
    listed, and the pool balance in fen at listing; from then on the tranches' factors come
    from the waterfall (docs/DEALS.md)."""

    TYPE: ClassVar[str] = "list_deal"
    terms: dict[str, Any]
    pool_balance: int


@dataclass(frozen=True, slots=True)
class PublishPoolReport(Command):
    """The servicer's signed report for the deal's next period (``PoolReport.to_record``) with
    its tape (``AssetLine.to_record`` each); the period's collections are remitted with it."""

    TYPE: ClassVar[str] = "publish_pool_report"
    participant: str
    report: dict[str, Any]
    lines: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Distribute(Command):
    """The payment date of the deal's reported ``period``, on the command's trade date: the
    waterfall, every holder of record paid, factors and coupon periods moved on."""

    TYPE: ClassVar[str] = "distribute"
    deal_id: str
    period: int


@dataclass(frozen=True, slots=True)
class ExpireDay(Command):
    """Session end: every resting DAY order expires."""

    TYPE: ClassVar[str] = "expire_day"


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.TYPE: cls
    for cls in (
        PlaceOrder,
        CancelOrder,
        ReplaceOrder,
        CancelAll,
        CancelOrders,
        MassQuote,
        SetMmp,
        ResetMmp,
        ListInstrument,
        AdmitParticipant,
        IssueApiKey,
        RevokeApiKey,
        Deposit,
        Withdraw,
        SetTradingStatus,
        UpdateFactor,
        RollCouponPeriod,
        ListDeal,
        PublishPoolReport,
        Distribute,
        ExpireDay,
    )
}


_FIELD_NAMES: dict[type[Command], tuple[str, ...]] = {}


def field_names(cls: type[Command]) -> tuple[str, ...]:
    """The command class's field names, in order (cached: journaling asks for every command)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in dataclasses.fields(cls))
    return names


def command_from_record(record: dict[str, Any]) -> Command:
    """Rebuild a command from its journal record (extra keys such as seq/ts are ignored)."""
    cls = COMMAND_TYPES[record["type"]]
    return cls(**{name: record[name] for name in field_names(cls) if name in record})
