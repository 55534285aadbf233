"""The reference order book: an independent, obviously-correct pure-Python book.

It implements the contract in ``matching/constants.py`` to the letter and is the oracle the
compiled book (``matching._book``) is tested against, and the fallback where the extension is not
built. It is written to be read, not to be fast: every rule is one visible step.

Layout: per side a ``SortedDict`` price -> level, where a level is a plain ``dict`` order_id ->
``_RestingOrder``. A ``dict`` keeps insertion order, so iterating a level is FIFO (time priority),
removing any order is O(1), and "to the back of the level" is delete-then-insert. Bids are read
from the high end of their ``SortedDict``, asks from the low end. A second ``dict`` maps every
resting order_id to its record.

Argument types: every integer argument must be exactly ``int`` (``type(x) is int``; ``bool`` and
other ``int`` subclasses raise ``TypeError``), and ``post_only`` must be exactly ``bool``. Integers
of any size are accepted and range-checked, so an out-of-range value is a rejection event, never an
exception. ``restore`` also accepts ``post_only`` as the ints 0/1, since snapshots carry it so.
"""

from __future__ import annotations

import gc
import hashlib
import struct
from collections.abc import Iterable, Iterator

from sortedcontainers import SortedDict

from matching.constants import (
    BAD_PARAMETER,
    BAD_PRICE,
    BAD_QTY,
    BUY,
    CANCEL_BOTH,
    CANCEL_MAKER,
    CANCEL_TAKER,
    CANCELLED,
    DAY,
    DUPLICATE_ID,
    EXPIRED,
    FILL,
    FILLED,
    FOK,
    FOK_UNFILLABLE,
    GTC,
    IOC,
    IOC_REMAINDER,
    MAX_INT64,
    POST_ONLY_WOULD_CROSS,
    REJECTED,
    REPLACED,
    RESTED,
    SELF_TRADE,
    SELL,
    UNKNOWN_ID,
    USER_CANCEL,
    IntegrityError,
)

Event = tuple[int, ...]
SnapshotEntry = tuple[int, int, int, int, int, int, int, int]
OrderView = tuple[int, int, int, int, int, int, bool]

_SIDES = (BUY, SELL)
_TIFS = (GTC, DAY, IOC, FOK)
_RESTING_TIFS = (GTC, DAY)
_STP_MODES = (CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH)
# The state_hash record of one resting order; the byte format is part of the contract.
_HASH_RECORD = struct.Struct("<BqqqqBBB")


def _require_int(name: str, value: object) -> None:
    """Raise TypeError unless ``value`` is exactly an ``int`` (a programmer error, not input)."""
    if type(value) is not int:
        raise TypeError(f"{name} must be int, not {type(value).__name__}")


def _in_range(value: int, low: int, high: int = MAX_INT64) -> bool:
    return low <= value <= high


def _crosses(side: int, price: int, opposite_price: int) -> bool:
    """True when an order on ``side`` at ``price`` would trade with ``opposite_price``."""
    return price >= opposite_price if side == BUY else price <= opposite_price


class _RestingOrder:
    """One order's mutable record: ``qty`` is the remaining quantity."""

    __slots__ = ("order_id", "owner", "post_only", "price", "qty", "side", "stp", "tif")

    def __init__(
        self,
        order_id: int,
        side: int,
        price: int,
        qty: int,
        tif: int,
        owner: int,
        post_only: bool,
        stp: int,
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.qty = qty
        self.tif = tif
        self.owner = owner
        self.post_only = post_only
        self.stp = stp


def _pause_collections() -> bool:
    """Pause the cyclic garbage collector; whether it was enabled (re-enable it after, if so).

    SortedDict inserts and removes a key in two steps (its dict, then its sorted list, which can
    allocate and so start a collection, whose callbacks may call back into this book): in between
    the two disagree, as does a level just emptied and not yet dropped. The compiled book promises
    re-entrant calls never see such a state; so does this one, by making each change to the levels
    with the collector paused (nothing in it allocates before the pause).
    """
    enabled = gc.isenabled()
    gc.disable()
    return enabled


class OrderBook:
    """A price-time-priority book for one instrument: integers in, event tuples out."""

    def __init__(self) -> None:
        # price -> {order_id: _RestingOrder} in time priority; bids best = highest key.
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()
        self._orders: dict[int, _RestingOrder] = {}

    # ----------------------------------------------------------------------------- commands

    def submit(
        self,
        order_id: int,
        side: int,
        price: int,
        qty: int,
        tif: int = GTC,
        owner: int = 0,
        post_only: bool = False,
        stp: int = CANCEL_TAKER,
    ) -> list[Event]:
        """Submit a new order; returns its events. Checks run in the contract's order."""
        for name, value in (
            ("order_id", order_id),
            ("side", side),
            ("price", price),
            ("qty", qty),
            ("tif", tif),
            ("owner", owner),
            ("stp", stp),
        ):
            _require_int(name, value)
        if type(post_only) is not bool:
            raise TypeError(f"post_only must be bool, not {type(post_only).__name__}")

        if not _in_range(order_id, 1):
            return [(REJECTED, order_id, BAD_PARAMETER)]
        if order_id in self._orders:
            return [(REJECTED, order_id, DUPLICATE_ID)]
        if side not in _SIDES or tif not in _TIFS or stp not in _STP_MODES:
            return [(REJECTED, order_id, BAD_PARAMETER)]
        if not _in_range(owner, 0):
            return [(REJECTED, order_id, BAD_PARAMETER)]
        if not _in_range(price, 1):
            return [(REJECTED, order_id, BAD_PRICE)]
        if not _in_range(qty, 1):
            return [(REJECTED, order_id, BAD_QTY)]
        if post_only and self._crosses_opposite_best(side, price):
            return [(REJECTED, order_id, POST_ONLY_WOULD_CROSS)]

        order = _RestingOrder(order_id, side, price, qty, tif, owner, post_only, stp)
        if tif == FOK and self._fok_liquidity(order) < qty:
            return [(CANCELLED, order_id, FOK_UNFILLABLE, qty)]
        events: list[Event] = []
        self._match_then_finish(order, events)
        return events

    def cancel(self, order_id: int) -> list[Event]:
        """Remove a resting order; an id not resting (of any value) is UNKNOWN_ID."""
        _require_int("order_id", order_id)
        order = self._orders.get(order_id)
        if order is None:
            return [(REJECTED, order_id, UNKNOWN_ID)]
        self._remove(order)
        return [(CANCELLED, order_id, USER_CANCEL, order.qty)]

    def replace(self, order_id: int, price: int, qty: int) -> list[Event]:
        """Change a resting order's price and/or remaining quantity.

        A same-price decrease (or no change) keeps time priority; anything else takes the order
        out and matches it again like a fresh submit with its own tif/owner/post_only/stp.
        """
        _require_int("order_id", order_id)
        _require_int("price", price)
        _require_int("qty", qty)
        order = self._orders.get(order_id)
        if order is None:
            return [(REJECTED, order_id, UNKNOWN_ID)]
        if not _in_range(price, 1):
            return [(REJECTED, order_id, BAD_PRICE)]
        if not _in_range(qty, 1):
            return [(REJECTED, order_id, BAD_QTY)]

        if price == order.price and qty <= order.qty:
            order.qty = qty
            return [(REPLACED, order_id, price, qty, 1)]
        if order.post_only and self._crosses_opposite_best(order.side, price):
            return [(REJECTED, order_id, POST_ONLY_WOULD_CROSS)]

        self._remove(order)
        order.price = price
        order.qty = qty
        events: list[Event] = [(REPLACED, order_id, price, qty, 0)]
        self._match_then_finish(order, events)
        return events

    def expire_day(self) -> list[Event]:
        """End of session: remove every resting DAY order, in canonical order."""
        expiring = [order for order in self._canonical_orders() if order.tif == DAY]
        for order in expiring:
            self._remove(order)
        return [(CANCELLED, order.order_id, EXPIRED, order.qty) for order in expiring]

    # ------------------------------------------------------------------------------ queries

    def best_bid(self) -> int | None:
        """Highest resting buy price, or None when there are no bids."""
        return self._bids.peekitem(-1)[0] if self._bids else None

    def best_ask(self) -> int | None:
        """Lowest resting sell price, or None when there are no asks."""
        return self._asks.peekitem(0)[0] if self._asks else None

    def depth(self, levels: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """``(bids, asks)``: up to ``levels`` ``(price, total_qty, order_count)`` each, best first.

        ``levels`` <= 0 gives two empty lists. Totals are exact Python ints (no overflow).
        """
        _require_int("levels", levels)
        if levels <= 0:
            return [], []
        return self._side_depth(reversed(self._bids), self._bids, levels), self._side_depth(
            iter(self._asks), self._asks, levels
        )

    def get(self, order_id: int) -> OrderView | None:
        """``(side, price, qty, owner, tif, stp, post_only)`` of a resting order, else None."""
        _require_int("order_id", order_id)
        order = self._orders.get(order_id)
        if order is None:
            return None
        return (
            order.side,
            order.price,
            order.qty,
            order.owner,
            order.tif,
            order.stp,
            order.post_only,
        )

    def __len__(self) -> int:
        return len(self._orders)

    def __repr__(self) -> str:
        return (
            f"<reference OrderBook orders={len(self)} "
            f"best_bid={self.best_bid()} best_ask={self.best_ask()}>"
        )

    # ---------------------------------------------------------------------- integrity, state

    def validate(self) -> None:
        """Check every invariant; raise ``IntegrityError`` naming the first one broken."""
        seen: set[int] = set()
        for side, book_side in ((BUY, self._bids), (SELL, self._asks)):
            for price, level in book_side.items():
                if not level:
                    raise IntegrityError(f"empty level kept at price {price} on side {side}")
                if not _in_range(price, 1):
                    raise IntegrityError(f"level price {price} out of range")
                for order_id, order in level.items():
                    if order.order_id != order_id:
                        raise IntegrityError(f"level key {order_id} holds order {order.order_id}")
                    if order_id in seen:
                        raise IntegrityError(f"order {order_id} appears twice")
                    seen.add(order_id)
                    if self._orders.get(order_id) is not order:
                        raise IntegrityError(f"order {order_id} missing from the id index")
                    if order.side != side or order.price != price:
                        raise IntegrityError(f"order {order_id} sits on the wrong side or level")
                    if not _in_range(order.qty, 1):
                        raise IntegrityError(f"order {order_id} rests with qty {order.qty}")
                    if order.tif not in _RESTING_TIFS:
                        raise IntegrityError(f"order {order_id} rests with tif {order.tif}")
                    if order.stp not in _STP_MODES or not _in_range(order.owner, 0):
                        raise IntegrityError(f"order {order_id} has a bad stp or owner")
                    if not _in_range(order_id, 1):
                        raise IntegrityError(f"order id {order_id} out of range")
        if len(seen) != len(self._orders):
            raise IntegrityError("id index holds orders that are not in any level")
        best_bid, best_ask = self.best_bid(), self.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            raise IntegrityError(f"book is crossed: best bid {best_bid} >= best ask {best_ask}")

    def state_hash(self) -> str:
        """Lowercase hex SHA-256 over the canonical-order records (contract byte format)."""
        digest = hashlib.sha256()
        for entry in self.snapshot():
            digest.update(_HASH_RECORD.pack(*entry))
        return digest.hexdigest()

    def snapshot(self) -> list[SnapshotEntry]:
        """``(side, order_id, price, qty, owner, tif, stp, post_only 0/1)`` in canonical order."""
        return [
            (
                order.side,
                order.order_id,
                order.price,
                order.qty,
                order.owner,
                order.tif,
                order.stp,
                int(order.post_only),
            )
            for order in self._canonical_orders()
        ]

    @classmethod
    def restore(cls, data: Iterable[Iterable[int]]) -> OrderBook:
        """Rebuild the book a ``snapshot()`` describes, time priority included.

        Entries are inserted in the order given, so FIFO within a level follows the list. Raises
        ``TypeError`` for non-int fields and ``ValueError`` for a malformed entry, an out-of-range
        value, a duplicate id, a tif that cannot rest, or a crossed result.
        """
        book = cls()
        for entry in data:
            fields = tuple(entry)
            if len(fields) != 8:
                raise ValueError(f"snapshot entry must have 8 fields, got {len(fields)}")
            side, order_id, price, qty, owner, tif, stp, post_only = fields
            for name, value in (
                ("side", side),
                ("order_id", order_id),
                ("price", price),
                ("qty", qty),
                ("owner", owner),
                ("tif", tif),
                ("stp", stp),
            ):
                _require_int(name, value)
            if type(post_only) not in (int, bool):
                raise TypeError(f"post_only must be 0/1, not {type(post_only).__name__}")
            if (
                side not in _SIDES
                or tif not in _RESTING_TIFS
                or stp not in _STP_MODES
                or post_only not in (0, 1)
                or not _in_range(order_id, 1)
                or not _in_range(price, 1)
                or not _in_range(qty, 1)
                or not _in_range(owner, 0)
            ):
                raise ValueError(f"snapshot entry out of range: {fields!r}")
            if order_id in book._orders:
                raise ValueError(f"snapshot repeats order id {order_id}")
            book._rest(_RestingOrder(order_id, side, price, qty, tif, owner, bool(post_only), stp))
        best_bid, best_ask = book.best_bid(), book.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            raise ValueError(f"snapshot is crossed: best bid {best_bid} >= best ask {best_ask}")
        book.validate()
        return book

    # ---------------------------------------------------------------------------- internals

    def _opposite(self, side: int) -> SortedDict:
        return self._asks if side == BUY else self._bids

    def _best_opposite_price(self, side: int) -> int | None:
        return self.best_ask() if side == BUY else self.best_bid()

    def _crosses_opposite_best(self, side: int, price: int) -> bool:
        best = self._best_opposite_price(side)
        return best is not None and _crosses(side, price, best)

    def _crossing_orders(self, side: int, price: int) -> Iterator[_RestingOrder]:
        """Resting opposite orders an order on ``side`` at ``price`` crosses, priority order."""
        opposite = self._opposite(side)
        if side == BUY:
            prices = opposite.irange(maximum=price)
        else:
            prices = opposite.irange(minimum=price, reverse=True)
        for level_price in prices:
            yield from opposite[level_price].values()

    def _fok_liquidity(self, order: _RestingOrder) -> int:
        """Quantity a FOK order may trade, counted before anything changes (see contract)."""
        available = 0
        for maker in self._crossing_orders(order.side, order.price):
            if order.owner != 0 and maker.owner == order.owner:
                if order.stp == CANCEL_MAKER:
                    continue
                break  # CANCEL_TAKER / CANCEL_BOTH: matching would stop at this order
            available += maker.qty
        return available

    def _match_then_finish(self, order: _RestingOrder, events: list[Event]) -> None:
        """Match ``order`` against the opposite side, then fill, cancel or rest what is left."""
        opposite = self._opposite(order.side)
        while order.qty > 0:
            best = self._best_opposite_price(order.side)
            if best is None or not _crosses(order.side, order.price, best):
                break
            maker = next(iter(opposite[best].values()))
            if order.owner != 0 and maker.owner == order.owner:
                if order.stp == CANCEL_TAKER:
                    events.append((CANCELLED, order.order_id, SELF_TRADE, order.qty))
                    return
                self._remove(maker)
                events.append((CANCELLED, maker.order_id, SELF_TRADE, maker.qty))
                if order.stp == CANCEL_BOTH:
                    events.append((CANCELLED, order.order_id, SELF_TRADE, order.qty))
                    return
                continue
            traded = min(order.qty, maker.qty)
            events.append((FILL, maker.order_id, order.order_id, maker.price, traded))
            maker.qty -= traded
            order.qty -= traded
            if maker.qty == 0:
                self._remove(maker)
                events.append((FILLED, maker.order_id))
        if order.qty == 0:
            events.append((FILLED, order.order_id))
        elif order.tif == IOC:
            events.append((CANCELLED, order.order_id, IOC_REMAINDER, order.qty))
        else:
            self._rest(order)
            events.append((RESTED, order.order_id, order.price, order.qty))

    def _rest(self, order: _RestingOrder) -> None:
        """Put ``order`` at the back of its price level."""
        book_side = self._bids if order.side == BUY else self._asks
        enabled = _pause_collections()
        try:
            level = book_side.get(order.price)
            if level is None:
                book_side[order.price] = {order.order_id: order}
            else:
                level[order.order_id] = order
            self._orders[order.order_id] = order
        finally:
            if enabled:
                gc.enable()

    def _remove(self, order: _RestingOrder) -> None:
        """Take a resting order out of its level (dropping an emptied level) and the index."""
        book_side = self._bids if order.side == BUY else self._asks
        enabled = _pause_collections()
        try:
            level = book_side[order.price]
            del level[order.order_id]
            if not level:
                del book_side[order.price]
            del self._orders[order.order_id]
        finally:
            if enabled:
                gc.enable()

    def _canonical_orders(self) -> Iterator[_RestingOrder]:
        """Bids best (highest) first, then asks best (lowest) first; FIFO within a level."""
        for price in reversed(self._bids):
            yield from self._bids[price].values()
        for price in self._asks:
            yield from self._asks[price].values()

    @staticmethod
    def _side_depth(
        prices: Iterator[int], book_side: SortedDict, levels: int
    ) -> list[tuple[int, int, int]]:
        rows: list[tuple[int, int, int]] = []
        for price in prices:
            if len(rows) == levels:
                break
            level = book_side[price]
            rows.append((price, sum(order.qty for order in level.values()), len(level)))
        return rows
