"""Order entry: every check an order request must pass before anything changes. Pure.

Each function takes the exchange's state and a command and either raises
:class:`venue.errors.VenueError` (the venue is unchanged) or returns an immutable *ticket*: the
checked values the exchange then acts on (the resolved limit price, what to reserve). Checks run
in a fixed order, so the same bad request always gets the same code.

These run for every order; they are written as plain ``if``/``raise`` rather than through a
helper taking keyword arguments, which would build a dict of details per check even when the
check passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta, timezone
from functools import lru_cache
from typing import Any

import matching
from venue.core.commands import PlaceOrder, ReplaceOrder
from venue.core.orders import Order
from venue.core.risk import CASH
from venue.domain import pricing
from venue.domain.instruments import Instrument, Side
from venue.domain.participants import Participant
from venue.errors import ErrorCode, VenueError

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")

SIDES = {"buy": matching.BUY, "sell": matching.SELL}
TIMES_IN_FORCE = {
    "gtc": matching.GTC,
    "day": matching.DAY,
    "ioc": matching.IOC,
    "fok": matching.FOK,
}
SELF_TRADE_MODES = {
    "cancel_taker": matching.CANCEL_TAKER,
    "cancel_maker": matching.CANCEL_MAKER,
    "cancel_both": matching.CANCEL_BOTH,
}

_NS_PER_DAY = 86_400 * 1_000_000_000
_CST_OFFSET_NS = 8 * 3_600 * 1_000_000_000


def trade_date(ts: int) -> date:
    """The trading (and accrual) date of a nanosecond UTC timestamp: the calendar date in China."""
    return _date_of_day_number((ts + _CST_OFFSET_NS) // _NS_PER_DAY)


@lru_cache(maxsize=64)
def _date_of_day_number(day_number: int) -> date:
    """Days since 1970-01-01 (China Standard Time) -> date; cached: it is asked on every order."""
    return date(1970, 1, 1) + timedelta(days=day_number)


def fingerprint(command: PlaceOrder) -> str:
    """Identity of an order request's body, for client_order_id idempotency (deterministic)."""
    return (
        f"{command.symbol}|{command.side}|{command.order_type}|{command.price}|{command.qty}|"
        f"{command.time_in_force}|{int(command.post_only)}|{command.self_trade}"
    )


@dataclass(frozen=True, slots=True)
class NewOrderTicket:
    """A checked new order: place it at ``price`` reserving ``need`` of ``asset``."""

    participant: Participant
    instrument: Instrument
    price: int  # the limit in ticks (a market order's band edge)
    need: int
    asset: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ReplaceTicket:
    """A checked replace of ``order``: new limit ``price``, new remaining ``qty``, ``need``."""

    order: Order
    price: int
    qty: int
    need: int


def participant_of(state: Any, participant_id: str) -> Participant:
    """The admitted participant, or ``validation.unknown_participant``."""
    participant = state.participants.get(participant_id)
    if participant is None:
        raise VenueError(
            ErrorCode.UNKNOWN_PARTICIPANT,
            f"no participant {participant_id!r}",
            participant=participant_id,
        )
    return participant


def trader_of(state: Any, participant_id: str) -> Participant:
    """The participant, if its role trades (brokers, market makers)."""
    participant = participant_of(state, participant_id)
    if not participant.can_trade:
        raise VenueError(
            ErrorCode.PARTICIPANT_CANNOT_TRADE,
            f"a {participant.role} does not trade",
            participant=participant_id,
        )
    return participant


def instrument_of(state: Any, symbol: str) -> Instrument:
    """The listed instrument, or ``validation.unknown_instrument``."""
    instrument = state.instruments.get(symbol)
    if instrument is None:
        raise VenueError(ErrorCode.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}", symbol=symbol)
    return instrument


def tradable_instrument(state: Any, symbol: str, day: date) -> Instrument:
    """The instrument, if it is open and ``day`` lies in its current coupon period."""
    instrument = instrument_of(state, symbol)
    instrument.check_open()
    pricing.check_trade_date(instrument, day)
    return instrument


def open_order_of(state: Any, participant_id: str, order_id: int) -> Order:
    """The participant's own open order ``order_id`` (unknown, closed or another's: refused)."""
    order = state.orders.get(order_id) if type(order_id) is int else None
    if order is None or not order.is_open:
        raise VenueError(ErrorCode.UNKNOWN_ORDER, f"no open order {order_id!r}", order_id=order_id)
    if order.participant != participant_id:
        raise VenueError(
            ErrorCode.NOT_ORDER_OWNER, f"order {order_id} is not yours", order_id=order_id
        )
    return order


def check_post_only(book: Any, side: int, price: int) -> None:
    """Refuse a post-only price that would take liquidity (the engine would reject it too, but
    only after the venue had reserved for it: checking first keeps a refusal change-free)."""
    opposite = book.best_ask() if side == matching.BUY else book.best_bid()
    if opposite is not None and (price >= opposite if side == matching.BUY else price <= opposite):
        raise VenueError(
            ErrorCode.POST_ONLY_WOULD_CROSS,
            "a post-only order would take liquidity",
            price=price,
            opposite=opposite,
        )


def _bad_parameter(message: str, field: str) -> VenueError:
    return VenueError(ErrorCode.BAD_PARAMETER, message, field=field)


def check_client_order_id(client_order_id: Any) -> None:
    """1-64 printable characters (the retry key of an order request)."""
    if not (
        type(client_order_id) is str
        and 0 < len(client_order_id) <= 64
        and client_order_id.isprintable()
    ):
        raise _bad_parameter("client_order_id must be 1-64 printable characters", "client_order_id")


def check_new_order(
    state: Any, participant: Participant, command: PlaceOrder, day: date
) -> NewOrderTicket:
    """Every check of a new order after its client_order_id (see ``Exchange``): instrument,
    enumerations, quantity, price and band, post-only, and the reservation it needs."""
    instrument = tradable_instrument(state, command.symbol, day)
    side = SIDES.get(command.side)
    if side is None:
        raise VenueError(ErrorCode.BAD_SIDE, "side must be buy or sell")
    if command.time_in_force not in TIMES_IN_FORCE:
        raise _bad_parameter("time_in_force must be one of gtc, day, ioc, fok", "time_in_force")
    if command.self_trade not in SELF_TRADE_MODES:
        raise _bad_parameter(
            "self_trade must be one of cancel_taker, cancel_maker, cancel_both", "self_trade"
        )
    if type(command.post_only) is not bool:
        raise _bad_parameter("post_only must be a boolean", "post_only")
    instrument.check_qty(command.qty)
    if command.order_type == "market":
        if command.price is not None:
            raise _bad_parameter("a market order has no price", "price")
        if command.time_in_force not in ("ioc", "fok"):
            raise _bad_parameter("a market order must be ioc or fok", "time_in_force")
        if command.post_only:
            raise _bad_parameter("a market order cannot be post-only", "post_only")
        price = instrument.market_limit_ticks(Side(command.side))
    else:
        if command.order_type != "limit":
            raise _bad_parameter("order_type must be limit or market", "order_type")
        if type(command.price) is not int:
            raise VenueError(ErrorCode.BAD_PRICE, "a limit order needs a price", field="price")
        price = instrument.check_in_band(instrument.check_price_ticks(command.price))
    if command.post_only:
        check_post_only(state.books[instrument.symbol], side, price)
    if side == matching.BUY:
        asset = CASH
        need = state.reservation_rule.buy_need(
            instrument, participant.segment, price, command.qty, day
        )
    else:
        asset, need = instrument.symbol, command.qty
    state.accounts.check_available(participant.participant_id, asset, need)
    return NewOrderTicket(participant, instrument, price, need, asset, fingerprint(command))


def check_replace(state: Any, command: ReplaceOrder, day: date) -> ReplaceTicket:
    """Every check of a replace: ownership, the new price and quantity, post-only, and that any
    increase of the reservation fits."""
    participant = trader_of(state, command.participant)
    order = open_order_of(state, command.participant, command.order_id)
    instrument = tradable_instrument(state, order.symbol, day)
    price = order.price if command.price is None else command.price
    qty = order.leaves_qty if command.qty is None else command.qty
    if type(price) is not int:
        raise VenueError(ErrorCode.BAD_PRICE, "price must be ticks", field="price")
    if type(qty) is not int:
        raise VenueError(ErrorCode.BAD_QUANTITY, "qty must be units", field="qty")
    if price == order.price and qty == order.leaves_qty:
        raise VenueError(ErrorCode.NO_CHANGE, "replace changes neither price nor quantity")
    if price != order.price:
        instrument.check_in_band(instrument.check_price_ticks(price))
    if qty != order.leaves_qty:
        instrument.check_qty(qty)
    keeps_priority = price == order.price and qty <= order.leaves_qty
    if order.post_only and not keeps_priority:
        check_post_only(state.books[order.symbol], SIDES[order.side], price)
    if order.side == "buy":
        need = state.reservation_rule.buy_need(instrument, participant.segment, price, qty, day)
        asset = CASH
    else:
        need, asset = qty, order.symbol
    increase = need - state.accounts.reservation_of(order.order_id)
    if increase > 0:
        state.accounts.check_available(order.participant, asset, increase)
    return ReplaceTicket(order, price, qty, need)
