"""The venue's integer values formatted for the wire: ticks, units and fen become decimal
strings (``venue.domain.money`` and the instrument's own price format), nanoseconds become
RFC 3339 UTC times. The one place the API converts outward; requests are converted inward in
``venue/api/rest.py`` with the same domain functions.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from venue.api import schemas
from venue.domain.instruments import PRICE_PLACES, Instrument
from venue.domain.money import format_cny, format_quantity, format_scaled

ACCRUED_PLACES = 10  # accrued interest per 100 face, in 1e-10 (venue.domain.pricing)
FACTOR_PLACES = 6


def rfc3339(ns: int) -> str:
    """Nanoseconds since the epoch -> ``2026-11-26T02:00:00.123Z`` (UTC, milliseconds)."""
    seconds, ms = divmod(ns // 1_000_000, 1_000)
    return f"{_second(seconds)}.{ms:03d}Z"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    """The RFC 3339 text of a whole second (cached: every report has two times, mostly in the
    same few seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


@lru_cache(maxsize=256)
def _price_shape(tick_size: int) -> tuple[int, int]:
    """``(1e-8 units per tick divided down to the shown places, shown places)``."""
    places = Instrument.price_places.fget(_Tick(tick_size))  # type: ignore[attr-defined]
    return tick_size // 10 ** (PRICE_PLACES - places), places


class _Tick:
    """Just enough of an instrument for ``Instrument.price_places`` (one rule, not two)."""

    __slots__ = ("tick_size",)

    def __init__(self, tick_size: int) -> None:
        self.tick_size = tick_size


def price_text(instrument: Instrument, ticks: int) -> str:
    """``instrument.format_price(ticks)``, the same text, faster: a report formats several
    prices, and ``format_price`` recomputes the tick's decimal places every time."""
    scale, places = _price_shape(instrument.tick_size)
    return format_scaled(ticks * scale, places)


def asset_amount(asset: str, amount: int) -> str:
    """Fen as CNY for cash, units as digits for a tranche."""
    return format_cny(amount) if asset == "CNY" else format_quantity(amount)


def instrument_view(
    instrument: Instrument, history: list[tuple[str, int]]
) -> schemas.InstrumentView:
    lower, upper = instrument.band_edges()
    return schemas.InstrumentView(
        **instrument.to_wire(),
        band_lower=instrument.format_price(lower),
        band_upper=instrument.format_price(upper),
        factor_history=[
            schemas.FactorPoint(effective_date=day, pool_factor=format_scaled(factor, 6))
            for day, factor in history
        ],
    )


def _average_price(instrument: Instrument, notional_ticks: int, qty: int) -> str:
    """The exact average fill price, rounded half up to 8 decimals (the finest price unit)."""
    numerator = notional_ticks * instrument.tick_size
    return format_scaled((2 * numerator + qty) // (2 * qty), PRICE_PLACES)


def order_report(
    report: dict[str, Any],
    instrument: Instrument,
    exec_type: str,
    fills: list[dict[str, Any]],
) -> schemas.OrderReport:
    """An order's FIX report from the core's integer report (``venue.core.reports``) and the
    payloads of its fills (for the settlement amount and fee totals)."""
    side = report["side"]
    fee_field = "buyer_fee" if side == "buy" else "seller_fee"
    cum_qty = report["cum_qty"]
    last_px = report["last_px"]
    last_qty = report["last_qty"]
    reserved_asset = "CNY" if side == "buy" else report["symbol"]
    return schemas.OrderReport(
        order_id=report["order_id"],
        client_order_id=report["client_order_id"],
        participant=report["participant"],
        symbol=report["symbol"],
        side=side,
        order_type=report["order_type"],
        price=price_text(instrument, report["price"]),
        qty=format_quantity(report["qty"]),
        time_in_force=report["time_in_force"],
        post_only=report["post_only"],
        self_trade=report["self_trade"],
        ord_status=report["ord_status"],
        exec_type=exec_type,
        cum_qty=format_quantity(cum_qty),
        leaves_qty=format_quantity(report["leaves_qty"]),
        avg_px=_average_price(instrument, report["notional_ticks"], cum_qty) if cum_qty else None,
        last_px=None if last_px is None else price_text(instrument, last_px),
        last_qty=None if last_qty is None else format_quantity(last_qty),
        settlement_amount=format_cny(sum(fill["settlement_amount"] for fill in fills)),
        fees=format_cny(sum(fill[fee_field] for fill in fills)),
        reserved=asset_amount(reserved_asset, report["reserved"]),
        reserved_asset=reserved_asset,
        reason=report["reason"],
        created_at=rfc3339(report["created_ts"]),
        updated_at=rfc3339(report["updated_ts"]),
        trade_ids=list(report["trade_ids"]),
    )


def execution(
    payload: dict[str, Any], order_id: int, client_order_id: str, instrument: Instrument
) -> schemas.Execution:
    """One fill seen from the side of order ``order_id`` (its fill block's payload)."""
    buy = order_id == _buy_order_id(payload)
    amount = payload["settlement_amount"]
    fee = payload["buyer_fee"] if buy else payload["seller_fee"]
    return schemas.Execution(
        trade_id=payload["trade_id"],
        order_id=order_id,
        client_order_id=client_order_id,
        symbol=payload["instrument"],
        side="buy" if buy else "sell",
        liquidity="maker" if payload["maker_order_id"] == order_id else "taker",
        last_px=price_text(instrument, payload["price"]),
        last_qty=format_quantity(payload["qty"]),
        accrued=format_scaled(payload["accrued"], ACCRUED_PLACES),
        factor=format_scaled(payload["factor"], FACTOR_PLACES),
        settlement_amount=format_cny(amount),
        fee=format_cny(fee),
        cash=format_cny(-(amount + fee) if buy else amount - fee),
        segment=payload["buyer_segment"] if buy else payload["seller_segment"],
        counterparty_segment=payload["seller_segment"] if buy else payload["buyer_segment"],
        time=rfc3339(payload["timestamp_ns"]),
    )


def _buy_order_id(payload: dict[str, Any]) -> int:
    """The fill's buy order: the maker's if the aggressor sold, else the taker's."""
    return payload["maker_order_id" if payload["aggressor"] == "sell" else "taker_order_id"]
