"""Settlement: one fill priced, turned into its balance movements and its ledger block. Pure.

Delivery versus payment in one block: the buyer pays the settlement amount plus its fee, the
seller receives the amount less its fee, the venue's fee account takes both fees (a maker fee may
be a rebate), and the units move the other way. The deltas come from
:func:`ledger.block.fill_deltas`, the one rule the ledger and ``venue-audit`` check every fill
block against, so the venue's balances and the ledger's cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from ledger.block import fill_deltas
from venue.core.orders import Order
from venue.domain import pricing
from venue.domain.instruments import Instrument
from venue.domain.participants import Participant


@dataclass(frozen=True, slots=True)
class Fill:
    """One settled fill: what each order consumes of its reservation, and its ledger block."""

    trade_id: str
    buy_order: Order
    sell_order: Order
    buyer_cost: int  # fen taken from the buy order's reservation (amount + buyer fee)
    qty: int  # units taken from the sell order's reservation
    deltas: tuple  # (account, asset, amount) balance changes, as the ledger block carries them
    payload: dict[str, Any]  # the fill block's payload


def settle_fill(
    instrument: Instrument,
    maker: Order,
    taker: Order,
    maker_participant: Participant,
    taker_participant: Participant,
    price: int,
    qty: int,
    day: date,
    ts: int,
    trade_id: str,
    fees: pricing.FeeSchedule,
) -> Fill:
    """Price a fill of ``qty`` at the maker's ``price`` on trade date ``day`` (its block's
    payload names both orders, both participants and their segments, and the aggressor)."""
    fill = pricing.price_fill(
        instrument,
        price,
        qty,
        day,
        maker_segment=maker_participant.segment,
        taker_segment=taker_participant.segment,
        aggressor_side=taker.side,
        fees=fees,
    )
    if maker.side == "buy":
        buy_order, sell_order, buyer, seller = maker, taker, maker_participant, taker_participant
    else:
        buy_order, sell_order, buyer, seller = taker, maker, taker_participant, maker_participant
    payload = {
        "trade_id": trade_id,
        "instrument": instrument.symbol,
        "price": price,
        "qty": qty,
        "accrued": fill.accrued,
        "factor": fill.factor,
        "settlement_amount": fill.settlement_amount,
        "buyer_fee": fill.buyer_fee,
        "seller_fee": fill.seller_fee,
        "maker_order_id": maker.order_id,
        "taker_order_id": taker.order_id,
        "buyer": buyer.participant_id,
        "seller": seller.participant_id,
        "buyer_segment": buyer.segment.value,
        "seller_segment": seller.segment.value,
        "aggressor": taker.side,
        "timestamp_ns": ts,
    }
    return Fill(
        trade_id,
        buy_order,
        sell_order,
        fill.settlement_amount + fill.buyer_fee,
        qty,
        fill_deltas(payload),
        payload,
    )
