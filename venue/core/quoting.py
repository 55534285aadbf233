"""Market makers' commands: mass quotes and market maker protection (MMP).

A **quote set** is the orders one ``MassQuote`` placed for a participant in one instrument. The
next ``MassQuote`` there replaces it in one command (one journal record: after a crash either
the whole new set or the whole old one stands, never half):

1. every check first, nothing changed on a refusal: the participant trades, the instrument is
   open, MMP has not been triggered there, ``quote_id`` is new (1-48 printable characters), at
   most ``MAX_QUOTE_LEVELS`` per side, each level a valid price in the band and a valid
   quantity, bids strictly descending and asks strictly ascending, the best bid below the best
   ask, and the cash and units the new set needs fit what the participant has available once
   the old set's reservations are released;
2. the old set's open orders are cancelled (reason ``user_cancel``), then the new levels are
   entered in order, bids then asks, as GTC limit orders (self-trade ``cancel_taker``) named
   ``<quote_id>.b1``, ``.b2``, ..., ``<quote_id>.a1``, ...; a level that crosses the book trades
   as any limit order does (a quote is not post-only).

The result is ``{"quote_id", "symbol", "canceled": [order ids], "orders": [order reports]}``.

**MMP**: ``SetMmp(participant, symbol, window_ms, qty_limit)``. Every fill of one of the
participant's resting orders in the instrument (it was the maker: its quotes were hit) counts;
once the quantity filled within the last ``window_ms`` (by the commands' own timestamps, so
replay does the same) exceeds ``qty_limit``, the participant's quote set there is pulled at the
end of that command (orders cancelled with reason ``mmp_triggered``) and further mass quotes in
the instrument are refused with ``risk.mmp_triggered`` until ``ResetMmp``. Ordinary orders are
not refused: protection is about quotes.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from venue.core.commands import MassQuote, ResetMmp, SetMmp
from venue.core.integrity import IntegrityError
from venue.core.order_entry import (
    instrument_of,
    tradable_instrument,
    trade_date,
    trader_of,
)
from venue.core.risk import CASH
from venue.errors import ErrorCode, VenueError

if TYPE_CHECKING:
    from datetime import date

    from venue.core.exchange import Exchange, Outcome

MAX_QUOTE_LEVELS = 10  # per side
MAX_QUOTE_ID_LENGTH = 48  # leaves room for ".b10" within the 64 of a client_order_id
MAX_MMP_WINDOW_MS = 86_400_000
MMP_REASON = "mmp_triggered"


class MmpState:
    """One participant's protection in one instrument, and the fills inside its window."""

    __slots__ = ("filled", "fills", "qty_limit", "triggered", "window_ns")

    def __init__(self, window_ns: int, qty_limit: int) -> None:
        self.window_ns = window_ns
        self.qty_limit = qty_limit
        self.fills: deque[tuple[int, int]] = deque()  # (ts, qty), oldest first
        self.filled = 0  # sum of the quantities in ``fills``
        self.triggered = False

    def note(self, qty: int, ts: int) -> bool:
        """Count a fill; True if this one pushes the window's total over the limit."""
        fills = self.fills
        fills.append((ts, qty))
        self.filled += qty
        horizon = ts - self.window_ns
        while fills and fills[0][0] <= horizon:
            self.filled -= fills.popleft()[1]
        return not self.triggered and self.filled > self.qty_limit

    def to_wire(self) -> list:
        return [self.window_ns, self.qty_limit, [list(fill) for fill in self.fills],
                self.triggered]  # fmt: skip

    @classmethod
    def from_wire(cls, wire: list) -> MmpState:
        window_ns, qty_limit, fills, triggered = wire
        state = cls(window_ns, qty_limit)
        state.fills.extend((ts, qty) for ts, qty in fills)
        state.filled = sum(qty for _ts, qty in state.fills)
        state.triggered = triggered
        return state


# ====================================================================== mass quotes
def _bad_quote(message: str, **details: Any) -> VenueError:
    return VenueError(ErrorCode.BAD_QUOTE, message, **details)


def _levels(raw: Any, side: str, instrument: Any) -> list[tuple[int, int]]:
    """The side's levels as checked ``(price, qty)`` pairs, best first."""
    if not isinstance(raw, (list, tuple)):
        raise _bad_quote(f"{side} must be a list of [price, qty] levels", field=side)
    if len(raw) > MAX_QUOTE_LEVELS:
        raise _bad_quote(f"at most {MAX_QUOTE_LEVELS} {side} levels", field=side)
    levels = []
    for level in raw:
        if not (isinstance(level, (list, tuple)) and len(level) == 2):
            raise _bad_quote(f"each of the {side} is a [price, qty] pair", field=side)
        price, qty = level
        if type(price) is not int:
            raise VenueError(ErrorCode.BAD_PRICE, "a quote price must be ticks", field=side)
        if type(qty) is not int:
            raise VenueError(ErrorCode.BAD_QUANTITY, "a quote qty must be units", field=side)
        instrument.check_in_band(instrument.check_price_ticks(price))
        instrument.check_qty(qty)
        levels.append((price, qty))
    prices = [price for price, _qty in levels]
    ordered = sorted(set(prices), reverse=side == "bids")
    if prices != ordered:
        direction = "descending" if side == "bids" else "ascending"
        raise _bad_quote(f"{side} prices must be strictly {direction}", field=side)
    return levels


def _open_quotes(exchange: Exchange, key: tuple[str, str]) -> list[Any]:
    orders = exchange.orders
    return [orders[oid] for oid in exchange.quotes.get(key, ()) if orders[oid].is_open]


def mass_quote(exchange: Exchange, command: MassQuote, ts: int) -> Outcome:
    participant = trader_of(exchange, command.participant)
    pid = participant.participant_id
    day = trade_date(ts)
    instrument = tradable_instrument(exchange, command.symbol, day)
    symbol = instrument.symbol
    key = (pid, symbol)
    mmp = exchange.mmp.get(key)
    if mmp is not None and mmp.triggered:
        raise VenueError(
            ErrorCode.MMP_TRIGGERED,
            f"market maker protection is triggered for {pid} in {symbol}",
            symbol=symbol,
        )
    quote_id = command.quote_id
    if not (
        type(quote_id) is str
        and 0 < len(quote_id) <= MAX_QUOTE_ID_LENGTH
        and quote_id.isprintable()
    ):
        raise VenueError(
            ErrorCode.BAD_PARAMETER,
            f"quote_id must be 1-{MAX_QUOTE_ID_LENGTH} printable characters",
            field="quote_id",
        )
    bids = _levels(command.bids, "bids", instrument)
    asks = _levels(command.asks, "asks", instrument)
    if bids and asks and bids[0][0] >= asks[0][0]:
        raise _bad_quote("the best bid must be below the best ask", bid=bids[0][0],
                         ask=asks[0][0])  # fmt: skip
    names = [f"{quote_id}.b{n}" for n in range(1, len(bids) + 1)]
    names += [f"{quote_id}.a{n}" for n in range(1, len(asks) + 1)]
    if any((pid, name) in exchange.client_orders for name in names):
        raise VenueError(
            ErrorCode.DUPLICATE_CLIENT_ORDER_ID,
            f"quote_id {quote_id!r} was already used",
            client_order_id=quote_id,
        )
    # What the new set needs against what is available once the old set is released.
    old = _open_quotes(exchange, key)
    accounts = exchange.accounts
    rule = exchange.reservation_rule
    bid_needs = [rule.buy_need(instrument, participant.segment, p, q, day) for p, q in bids]
    freed_cash = sum(accounts.reservation_of(o.order_id) for o in old if o.side == "buy")
    freed_units = sum(accounts.reservation_of(o.order_id) for o in old if o.side == "sell")
    accounts.check_available(pid, CASH, sum(bid_needs) - freed_cash)
    accounts.check_available(pid, symbol, sum(q for _p, q in asks) - freed_units)

    # ---- everything is checked: from here on the state changes ----
    seq = exchange.next_seq()
    settled = exchange.new_settlement()
    book = exchange.books[symbol]
    for order in old:
        exchange.process_engine_events(book.cancel(order.order_id), ts, day, settled)
    placed = []
    levels = [("buy", level, need) for level, need in zip(bids, bid_needs, strict=True)]
    levels += [("sell", level, level[1]) for level in asks]
    try:
        for name, (side, (price, qty), need) in zip(names, levels, strict=True):
            order, engine_events = exchange.enter_order(
                pid, name, symbol, side, "limit", price, qty, "gtc", False, "cancel_taker",
                f"{symbol}|quote|{quote_id}", CASH if side == "buy" else symbol, need, ts,
            )  # fmt: skip
            placed.append(order)
            exchange.process_engine_events(engine_events, ts, day, settled)
    except VenueError as error:  # every level was checked above: this is a bug
        raise IntegrityError(f"a checked mass quote was refused half way: {error}") from error
    exchange.quotes[key] = tuple(order.order_id for order in placed)
    pull_tripped(exchange, ts, day, settled)
    result = {
        "quote_id": quote_id,
        "symbol": symbol,
        "canceled": [order.order_id for order in old],
        "orders": [settled.reports.get(o.order_id) or exchange.order_report(o) for o in placed],
    }
    return exchange.outcome(seq, result, settled.entries, settled.events)


# ====================================================================== MMP
def set_mmp(exchange: Exchange, command: SetMmp, ts: int) -> Outcome:
    trader_of(exchange, command.participant)
    instrument_of(exchange, command.symbol)
    window_ms, qty_limit = command.window_ms, command.qty_limit
    if type(window_ms) is not int or not 0 < window_ms <= MAX_MMP_WINDOW_MS:
        raise VenueError(ErrorCode.BAD_PARAMETER, f"window_ms must be 1-{MAX_MMP_WINDOW_MS}",
                         field="window_ms")  # fmt: skip
    if type(qty_limit) is not int or qty_limit < 0:
        raise VenueError(ErrorCode.BAD_PARAMETER, "qty_limit must be units >= 0 (0: off)",
                         field="qty_limit")  # fmt: skip
    seq = exchange.next_seq()
    key = (command.participant, command.symbol)
    if qty_limit == 0:
        exchange.mmp.pop(key, None)
    else:
        state = MmpState(window_ms * 1_000_000, qty_limit)
        previous = exchange.mmp.get(key)
        state.triggered = previous is not None and previous.triggered  # only a reset lifts it
        exchange.mmp[key] = state
    result = {"symbol": command.symbol, "window_ms": window_ms, "qty_limit": qty_limit}
    return exchange.outcome(seq, result, [], [])


def reset_mmp(exchange: Exchange, command: ResetMmp, ts: int) -> Outcome:
    trader_of(exchange, command.participant)
    instrument_of(exchange, command.symbol)
    state = exchange.mmp.get((command.participant, command.symbol))
    if state is None:
        raise VenueError(
            ErrorCode.BAD_PARAMETER,
            f"no market maker protection is set in {command.symbol}",
            field="symbol",
        )
    seq = exchange.next_seq()
    state.triggered = False
    state.fills.clear()
    state.filled = 0
    return exchange.outcome(seq, {"symbol": command.symbol, "triggered": False}, [], [])


def note_maker_fill(exchange: Exchange, maker: Any, qty: int, ts: int) -> None:
    """A fill of ``maker`` (a resting order): count it against its owner's protection."""
    key = (maker.participant, maker.symbol)
    state = exchange.mmp.get(key)
    if state is not None and state.note(qty, ts):
        state.triggered = True
        exchange.mmp_tripped.append(key)


def pull_tripped(exchange: Exchange, ts: int, day: date, settled: Any) -> None:
    """At the end of a command: cancel the quote sets whose protection it triggered."""
    tripped = exchange.mmp_tripped
    while tripped:
        key = tripped.pop(0)
        book = exchange.books[key[1]]
        for order in _open_quotes(exchange, key):
            exchange.process_engine_events(book.cancel(order.order_id), ts, day, settled,
                                           cancel_reason=MMP_REASON)  # fmt: skip


HANDLERS = {MassQuote: mass_quote, SetMmp: set_mmp, ResetMmp: reset_mmp}
