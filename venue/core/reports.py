"""Reports: what the venue tells a participant about an order, and the events it publishes.

Integers throughout (ticks, units, fen, nanoseconds): the API edge formats them as decimal
strings and RFC 3339 times. Field names follow FIX (``ord_status``, ``cum_qty``,
``leaves_qty``, ``last_px``, ``last_qty``). These run for every order a command touches, so they
are plain dict literals: no per-field function calls.
"""

from __future__ import annotations

from typing import Any

from venue.core.orders import Order


def order_report(order: Order, reserved: int) -> dict[str, Any]:
    """The order's FIX-named state; ``reserved`` is what it holds reserved now."""
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "participant": order.participant,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "price": order.price,
        "qty": order.qty,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "self_trade": order.self_trade,
        "ord_status": order.status,
        "cum_qty": order.cum_qty,
        "leaves_qty": order.leaves_qty,
        "notional_ticks": order.notional_ticks,
        "last_px": order.last_px,
        "last_qty": order.last_qty,
        "reason": order.reason,
        "created_ts": order.created_ts,
        "updated_ts": order.updated_ts,
        "reserved": reserved,
        "trade_ids": list(order.fills),
    }


def order_event(report: dict[str, Any]) -> dict[str, Any]:
    """The private ``order`` event carrying a report."""
    return {"type": "order", **report}


def book_event(symbol: str) -> dict[str, Any]:
    """The book of ``symbol`` changed (subscribers read its depth)."""
    return {"type": "book", "symbol": symbol}


def instrument_event(wire: dict[str, Any]) -> dict[str, Any]:
    """An instrument's reference data changed (status, factor, coupon period)."""
    return {"type": "instrument", **wire}


def trade_event(symbol: str, trade_id: str, price: int, qty: int, aggressor: str, ts: int) -> dict:
    """The public print of one fill."""
    return {
        "type": "trade",
        "symbol": symbol,
        "trade_id": trade_id,
        "price": price,
        "qty": qty,
        "aggressor_side": aggressor,
        "ts": ts,
    }


def fill_event(payload: dict[str, Any], maker: str, taker: str) -> dict[str, Any]:
    """The private ``fill`` event: the fill block's payload plus who made and who took."""
    return {"type": "fill", **payload, "maker": maker, "taker": taker}
