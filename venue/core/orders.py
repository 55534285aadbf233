"""The venue's order records and their FIX order state machine.

``new -> partially_filled -> filled``, and from ``new``/``partially_filled`` to ``canceled`` or
``expired``; ``rejected`` only at entry (a FOK that cannot fill is ``canceled``, as FIX reports
it). ``cum_qty + leaves_qty == qty`` while open; an order that ends has ``leaves_qty == 0``.
``avg_px`` is kept exact as the integer sum of ``price_ticks * qty`` over fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from venue.core.integrity import IntegrityError

OPEN_STATUSES = frozenset({"new", "partially_filled"})
FINAL_STATUSES = frozenset({"filled", "canceled", "rejected", "expired"})


@dataclass(slots=True)
class Order:
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
    fills: list[str] = field(default_factory=list)  # trade ids

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
        self.fills.append(trade_id)

    def close(self, status: str, reason: str | None, ts: int) -> None:
        if status not in FINAL_STATUSES:
            raise IntegrityError(f"{status!r} is not a final order status")
        self.status = status
        self.reason = reason
        self.leaves_qty = 0
        self.updated_ts = ts

    def snapshot(self) -> list:
        """The order as one positional row (field order: ``ORDER_FIELDS``).

        Rows rather than dicts because a snapshot holds every order the venue has seen (closed
        ones answer client_order_id retries): rows are about half the bytes and much faster to
        write and load than ``dataclasses.asdict`` dicts.
        """
        row = [getattr(self, name) for name in ORDER_FIELDS]
        row[_FILLS_INDEX] = list(
            self.fills
        )  # a copy: the snapshot is written while trading goes on
        return row

    @classmethod
    def restore(cls, row: list) -> Order:
        return cls(*row)


ORDER_FIELDS = tuple(item.name for item in fields(Order))
_FILLS_INDEX = ORDER_FIELDS.index("fills")
