"""The venue's order records and their FIX order state machine.

``new -> partially_filled -> filled``, and from ``new``/``partially_filled`` to ``canceled`` or
``expired``; ``rejected`` only at entry (a FOK that cannot fill is ``canceled``, as FIX reports
it). ``cum_qty + leaves_qty == qty`` while open; an order that ends has ``leaves_qty == 0``.
``avg_px`` is kept exact as the integer sum of ``price_ticks * qty`` over fills.

An order is a ``msgspec.Struct``: compact, fast to read and write, encoded straight to its
snapshot row (a JSON array in ``ORDER_FIELDS`` order) in C without building a Python list, and
not tracked by the cyclic garbage collector (``gc=False``: an order refers to nothing that could
refer back to it). A busy venue holds hundreds of thousands of orders; as tracked objects, each
collection walked them all, which measured as most of the time of building a snapshot.
"""

from __future__ import annotations

import msgspec

from venue.core.integrity import IntegrityError

OPEN_STATUSES = frozenset({"new", "partially_filled"})
FINAL_STATUSES = frozenset({"filled", "canceled", "rejected", "expired"})


class Order(msgspec.Struct, array_like=True, gc=False):
    """One order as the venue tracks it (mutated only by the single-writer exchange)."""

    order_id: int
    participant: str
    client_order_id: str
    symbol: str
    side: str  # buy | sell
    order_type: str  # limit | market
    price: int  # limit price in ticks (a market order's band-edge limit)
    qty: int  # current total quantity: cum_qty + leaves_qty while open
    time_in_force: str
    post_only: bool
    self_trade: str
    created_ts: int
    request_fingerprint: str
    status: str = "new"
    cum_qty: int = 0
    leaves_qty: int = 0
    notional_ticks: int = 0  # sum of fill price (ticks) * fill qty, for avg_px
    last_px: int | None = None
    last_qty: int | None = None
    reason: str | None = None  # why it was canceled/rejected/expired
    updated_ts: int = 0
    # trade ids: a tuple, so that the collector stops tracking it (a list per order would be
    # hundreds of thousands of long-lived tracked objects for every collection to walk)
    fills: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def record_fill(self, trade_id: str, price: int, qty: int, ts: int) -> None:
        if not (self.status in OPEN_STATUSES and 0 < qty <= self.leaves_qty):
            raise IntegrityError(f"order {self.order_id} cannot fill {qty} ({self.status})")
        self.cum_qty += qty
        self.leaves_qty -= qty
        self.notional_ticks += price * qty
        self.last_px, self.last_qty = price, qty
        self.status = "filled" if self.leaves_qty == 0 else "partially_filled"
        self.updated_ts = ts
        self.fills = (*self.fills, trade_id)

    def close(self, status: str, reason: str | None, ts: int) -> None:
        if status not in FINAL_STATUSES:
            raise IntegrityError(f"{status!r} is not a final order status")
        self.status = status
        self.reason = reason
        self.leaves_qty = 0
        self.updated_ts = ts

    def snapshot(self) -> list:
        """The order as one positional row (field order: ``ORDER_FIELDS``): an independent
        copy, since the snapshot is written while trading goes on.

        Rows rather than dicts because a snapshot holds many orders: rows are about half the
        bytes and much faster to write and load.
        """
        return ROW_DECODER.decode(ROW_ENCODER.encode(self))

    @classmethod
    def restore(cls, row: list) -> Order:
        order = cls(*row)
        order.fills = tuple(order.fills)
        return order


ORDER_FIELDS = Order.__struct_fields__
ROW_ENCODER = msgspec.json.Encoder()  # an Order (or a list of them) -> JSON row(s)
ROW_DECODER = msgspec.json.Decoder(list)
