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


# Events are small tuples whose first item names the kind; the dicts they carry are shared with
# the command's result and must be treated as read-only by every subscriber (a copy per event
# was a measurable part of the order path's cost).
#
#   ("order", report)                   an order's new state (``order_report``)
#   ("fill", payload, maker, taker)     a fill block's payload and who made and who took
#   ("trade", print)                    the public print (``trade_print``)
#   ("book", symbol)                    the book of ``symbol`` changed
#   ("instrument", wire)                an instrument's reference data changed


def order_event(report: dict[str, Any]) -> tuple:
    return ("order", report)


def book_event(symbol: str) -> tuple:
    return ("book", symbol)


def instrument_event(wire: dict[str, Any]) -> tuple:
    return ("instrument", wire)


def trade_print(symbol: str, trade_id: str, price: int, qty: int, aggressor: str, ts: int) -> dict:
    """The public print of one fill (also kept as the instrument's recent trades)."""
    return {
        "symbol": symbol,
        "trade_id": trade_id,
        "price": price,
        "qty": qty,
        "aggressor_side": aggressor,
        "ts": ts,
    }


def trade_event(trade: dict[str, Any]) -> tuple:
    return ("trade", trade)


def fill_event(payload: dict[str, Any], maker: str, taker: str) -> tuple:
    return ("fill", payload, maker, taker)
