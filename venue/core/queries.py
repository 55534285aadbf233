"""Read-only queries over the exchange's state and the ledger, for the APIs. No HTTP here.

Everything returns the venue's own integer values (ticks, units, fen, ns); the API edge formats
them. Nothing here changes the exchange: the single writer (the sequencer) stays the only one,
and every query runs on the event loop between two batches, so it sees a state that is whole.

Who may see what is decided by the caller (``participant`` arguments): a query given a
participant returns only that participant's orders, fills and accounts, and refuses another's
order with the same codes the order path uses (``matching.unknown_order``,
``matching.not_order_owner``).

Cost: the exchange keeps every order by id (``Exchange.orders``, insertion = id order) but no
index by participant, so :class:`OrderIndex` keeps one, brought up to date lazily (it looks only
at the orders accepted since it last looked). Fill details live in the ledger's fill blocks:
:class:`FillDetails` keeps the payloads of recent fills from the venue's events and reads older
ones from the ledger.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Iterator
from itertools import islice
from typing import Any

from venue.core.order_entry import trade_date
from venue.core.orders import Order
from venue.errors import ErrorCode, VenueError

ORDER_STATUSES = ("open", "closed", "all")
FILL_CACHE_SIZE = 100_000  # fill payloads kept in memory (older ones are read from the ledger)


class OrderIndex:
    """Order ids by participant, in id (= time) order, kept up to date on demand."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self._by_participant: dict[str, list[int]] = {}
        self._next_id = 1  # the first order id not looked at yet

    def _catch_up(self) -> None:
        exchange = self.exchange
        orders = exchange.orders
        by_participant = self._by_participant
        for order_id in range(self._next_id, exchange.next_order_id):
            order = orders.get(order_id)
            if order is not None:
                by_participant.setdefault(order.participant, []).append(order_id)
        self._next_id = exchange.next_order_id

    def order_ids(self, participant: str) -> list[int]:
        """Every order id of ``participant``, oldest first (a live list: do not modify)."""
        self._catch_up()
        return self._by_participant.get(participant, [])


def order_of(exchange: Any, participant: str | None, order_id: int) -> Order:
    """Order ``order_id`` (open or closed); ``participant`` given: it must be theirs."""
    order = exchange.orders.get(order_id)
    if order is None:
        raise VenueError(ErrorCode.UNKNOWN_ORDER, f"no order {order_id}", order_id=order_id)
    if participant is not None and order.participant != participant:
        raise VenueError(
            ErrorCode.NOT_ORDER_OWNER, f"order {order_id} is not yours", order_id=order_id
        )
    return order


def order_by_client_id(exchange: Any, participant: str, client_order_id: str) -> Order:
    """``participant``'s order placed under ``client_order_id``."""
    order_id = exchange.client_orders.get((participant, client_order_id))
    if order_id is None:
        raise VenueError(
            ErrorCode.UNKNOWN_ORDER,
            "no order with this client_order_id",
            client_order_id=client_order_id,
        )
    return order_of(exchange, participant, order_id)


def _matches(order: Order, status: str, symbol: str | None, side: str | None) -> bool:
    if symbol is not None and order.symbol != symbol:
        return False
    if side is not None and order.side != side:
        return False
    if status == "open":
        return order.is_open
    if status == "closed":
        return not order.is_open
    return True


def list_orders(
    exchange: Any,
    index: OrderIndex,
    participant: str | None,
    *,
    status: str = "open",
    symbol: str | None = None,
    side: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[Order], int | None]:
    """Orders with ids above ``after``, oldest first, at most ``limit``; and the cursor to pass
    as ``after`` for the next page (``None``: there is none). ``participant`` None: everyone's
    (auditors)."""
    if status not in ORDER_STATUSES:
        raise VenueError(ErrorCode.BAD_PARAMETER, "status must be open, closed or all")
    candidates: Iterator[Order]
    if participant is not None:
        orders = exchange.orders
        ids = index.order_ids(participant)
        candidates = (orders[order_id] for order_id in islice(ids, bisect_right(ids, after), None))
    elif status == "open":
        candidates = (order for order in exchange.open_orders.values() if order.order_id > after)
    else:
        candidates = (order for order in exchange.orders.values() if order.order_id > after)
    page: list[Order] = []
    for order in candidates:
        if _matches(order, status, symbol, side):
            if len(page) == limit:
                return page, page[-1].order_id
            page.append(order)
    return page, None


def participant_trades(
    exchange: Any,
    index: OrderIndex,
    participant: str,
    *,
    symbol: str | None = None,
    order_id: int | None = None,
    after: str = "",
    limit: int = 100,
) -> tuple[list[tuple[str, Order]], str | None]:
    """``participant``'s fills as ``(trade_id, its order)``, in trade order, those with trade
    ids above ``after`` (trade ids sort as they were made), at most ``limit``, and the next
    cursor."""
    orders = exchange.orders
    if order_id is not None:
        ids = [order_of(exchange, participant, order_id).order_id]
    else:
        ids = index.order_ids(participant)
    fills = []
    for oid in ids:
        order = orders[oid]
        if order.fills and (symbol is None or order.symbol == symbol):
            fills.extend((trade_id, order) for trade_id in order.fills if trade_id > after)
    fills.sort(key=lambda pair: pair[0])
    if len(fills) > limit:
        return fills[:limit], fills[limit - 1][0]
    return fills, None


def account_balances(exchange: Any, participant: str) -> list[tuple[str, int, int]]:
    """``(asset, balance, reserved)`` for cash and every listed instrument, cash first."""
    accounts = exchange.accounts
    assets = ["CNY", *sorted(exchange.instruments)]
    return [
        (asset, accounts.balance(participant, asset), accounts.reserved_amount(participant, asset))
        for asset in assets
    ]


def account_reservations(exchange: Any, participant: str) -> list[tuple[int, str, int]]:
    """``(order_id, asset, amount)`` of every open order of ``participant`` holding a
    reservation, in order id order."""
    return sorted(
        (order_id, asset, amount)
        for order_id, (account, asset, amount) in exchange.accounts.reservations.items()
        if account == participant
    )


def instrument_of(exchange: Any, symbol: str) -> Any:
    instrument = exchange.instruments.get(symbol)
    if instrument is None:
        raise VenueError(ErrorCode.UNKNOWN_INSTRUMENT, f"no instrument {symbol!r}", symbol=symbol)
    return instrument


def book_depth(exchange: Any, symbol: str, levels: int) -> tuple[list, list]:
    """``(bids, asks)`` of ``(price_ticks, qty, order_count)``, best first, ``levels`` each."""
    instrument_of(exchange, symbol)
    return exchange.books[symbol].depth(levels)


def recent_trades(exchange: Any, symbol: str, limit: int) -> list[dict[str, Any]]:
    """The instrument's most recent public prints, newest first (the venue keeps 100)."""
    instrument_of(exchange, symbol)
    trades = exchange.last_trades.get(symbol, [])
    return list(reversed(trades[-limit:])) if limit > 0 else []


class FillDetails:
    """Fill block payloads by trade id: recent ones from the venue's ``fill`` events (the
    sequencer publishes them just before it answers the command that made them), older ones
    read from the ledger (``Ledger.find_fill`` + ``Ledger.block``)."""

    def __init__(self, ledger: Any, cache_size: int = FILL_CACHE_SIZE) -> None:
        self.ledger = ledger
        self.cache_size = cache_size
        self._recent: dict[str, dict[str, Any]] = {}

    def on_events(self, events: list[tuple]) -> None:
        """A sequencer listener: keeps each fill's payload (shared, read-only)."""
        recent = self._recent
        for event in events:
            if event[0] == "fill":
                payload = event[1]
                recent[payload["trade_id"]] = payload
        while len(recent) > self.cache_size:
            del recent[next(iter(recent))]

    def get(self, trade_id: str) -> dict[str, Any]:
        payload = self._recent.get(trade_id)
        if payload is not None:
            return payload
        height = self.ledger.find_fill(trade_id)
        if height is None:
            raise VenueError("ledger.no_such_trade", f"no fill {trade_id!r}", trade_id=trade_id)
        return dict(self.ledger.block(height).block.payload)


class FactorHistory:
    """Each instrument's pool factor over time: ``(effective_date, factor)``, oldest first.

    Built once from the ledger's ``instrument_listed`` and ``factor_update`` blocks (reading
    only the blocks that are not fills: the exchange's trade numbers name every fill, and the
    ledger says where each is), then kept up to date from the venue's ``instrument`` events.
    Call :meth:`load` (in a worker thread) after subscribing :meth:`on_events`, before any
    operator can change a factor.
    """

    def __init__(self) -> None:
        self._history: dict[str, list[tuple[str, int]]] = {}
        self._lock = threading.Lock()
        self.loaded = threading.Event()

    def load(self, ledger: Any, trade_count: int) -> None:
        ledger.flush()
        size = ledger.durable_count
        fill_heights = set()
        for number in range(1, trade_count + 1):
            height = ledger.find_fill(f"T{number:012d}")
            if height is not None:
                fill_heights.add(height)
        history: dict[str, list[tuple[str, int]]] = {}
        for height in range(size):
            if height in fill_heights:
                continue
            block = ledger.block(height).block
            payload = block.payload
            if block.kind == "instrument_listed":
                effective = trade_date(block.timestamp_ns).isoformat()
                history[payload["symbol"]] = [(effective, payload["pool_factor"])]
            elif block.kind == "factor_update":
                history.setdefault(payload["instrument"], []).append(
                    (payload["effective_date"], payload["factor"])
                )
        with self._lock:
            for symbol, entries in history.items():
                later = self._history.get(symbol, [])
                self._history[symbol] = entries + later
        self.loaded.set()

    def on_events(self, events: list[tuple]) -> None:
        """A sequencer listener: a factor that changed is a new entry (the trade date of the
        event is the instrument's own: the one the ledger block records)."""
        for event in events:
            if event[0] != "instrument":
                continue
            wire = event[1]
            factor = _micro(wire["pool_factor"])
            with self._lock:
                entries = self._history.setdefault(wire["symbol"], [])
                if not entries or entries[-1][1] != factor:
                    entries.append((trade_date(time.time_ns()).isoformat(), factor))

    def of(self, symbol: str) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._history.get(symbol, ()))


def _micro(text: str) -> int:
    """A pool factor's wire text (``"0.784213"``: exactly six places) -> micro-units."""
    whole, _, fraction = text.partition(".")
    return int(whole) * 1_000_000 + int(fraction.ljust(6, "0"))
