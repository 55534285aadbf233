"""Day-boundary housekeeping through the real service: DAY expiry and coupon rolls.

The calendar is the real one, so each test moves the *state* across the boundary (an order
created before the last session end, a tranche whose coupon date is today) and lets the venue's
own housekeeping decide what is due, journal it, and settle it on the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from pathlib import Path

from ledger.audit import verify_ledger
from tests.venue.core.helpers import demo_setup_commands, venue_config
from venue.core.commands import PlaceOrder
from venue.core.exchange import trade_date
from venue.service import Venue, last_session_end

SENIOR = "IPABS-2025-1-A"


def test_last_session_end_is_the_latest_boundary_at_or_before_now() -> None:
    now = time.time_ns()
    end = last_session_end(now, 15 * 60 + 30)
    assert end <= now < end + 86_400 * 10**9
    assert last_session_end(end, 15 * 60 + 30) == end


def test_stale_day_orders_expire_and_due_coupon_rolls_are_settled_on_the_ledger(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        # the demo without its deal: a coupon roll of a deal tranche waits for its distribution
        venue = await Venue.open(venue_config(data_dir, seed_demo=False))
        try:
            for command in demo_setup_commands():
                await venue.submit(command)
            day_order = await venue.submit(
                PlaceOrder(
                    "P-BRK1", "day-1", SENIOR, "buy", "limit", 1_000_000, 10, time_in_force="day"
                )
            )
            gtc_order = await venue.submit(
                PlaceOrder("P-BRK1", "gtc-1", SENIOR, "buy", "limit", 1_000_000, 10)
            )
            exchange = venue.exchange
            # the DAY order was placed before the last session end; the senior's coupon is due
            exchange.orders[day_order["order_id"]].created_ts = 0
            today = trade_date(time.time_ns())
            exchange.instruments[SENIOR] = dataclasses.replace(
                exchange.instruments[SENIOR],
                accrual_start=today - timedelta(days=90),
                next_coupon_date=today,
            )
            await venue._housekeeping()

            assert exchange.orders[day_order["order_id"]].status == "expired"
            assert exchange.orders[gtc_order["order_id"]].status == "new"
            rolled = exchange.instruments[SENIOR]
            assert rolled.accrual_start == today < rolled.next_coupon_date
            block = venue.ledger.block(venue.ledger.height).block
            assert (block.kind, block.payload["change"]) == ("instrument_updated", "coupon_roll")
            # nothing more is due: housekeeping is idempotent
            seq = exchange.seq
            await venue._housekeeping()
            assert exchange.seq == seq
        finally:
            await venue.close()

    asyncio.run(scenario())
    assert verify_ledger(data_dir, workers=1).ok
