"""Property tests: random command streams through the venue keep money whole.

After every command: no participant balance below its reservations, every asset conserved (fees
included, the ``external:`` accounts balance the outside world), every open order's reservation
equal to its need recomputed independently here, the engine and order table consistent. Refused
commands change nothing. The same streams through the real service (sequencer, journal,
ledger) leave a ledger that ``venue-audit`` verifies, with the venue's balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.audit import verify_ledger
from venue.core.commands import (
    CancelAll,
    CancelOrder,
    Deposit,
    ExpireDay,
    PlaceOrder,
    ReplaceOrder,
    SetTradingStatus,
    UpdateFactor,
    Withdraw,
)
from venue.core.exchange import Exchange, trade_date
from venue.domain import pricing
from venue.errors import VenueError
from venue.service import Venue

from .helpers import SENIOR, SUB, Driver, venue_config

TRADERS = ["P-MM1", "P-MM2", "P-BRK1", "P-BRK2"]
# (symbol, reference price in ticks, price step in ticks, lot in units): prices stay in band
BOOKS = [(SENIOR, 1_001_250, 250, 10), (SUB, 19_200, 2, 100)]

order_ids = st.integers(min_value=1, max_value=80)
place = st.builds(
    lambda who, cid, book, side, offset, lots, tif, stp, post_only, market: PlaceOrder(
        who,
        f"c{cid}",
        book[0],
        side,
        "market" if market else "limit",
        None if market else book[1] + offset * book[2],
        lots * book[3],
        time_in_force=("ioc" if tif in ("gtc", "day") else tif) if market else tif,
        post_only=post_only and not market,
        self_trade=stp,
    ),
    st.sampled_from(TRADERS),
    st.integers(0, 60),
    st.sampled_from(BOOKS),
    st.sampled_from(["buy", "sell"]),
    st.integers(-4, 4),
    st.integers(1, 30),
    st.sampled_from(["gtc", "gtc", "day", "ioc", "fok"]),
    st.sampled_from(["cancel_taker", "cancel_maker", "cancel_both"]),
    st.integers(0, 4).map(lambda n: n == 0),
    st.integers(0, 9).map(lambda n: n == 0),
)
rare = st.integers(0, 5).map(lambda n: n == 0)
others = st.one_of(
    st.builds(CancelOrder, st.sampled_from(TRADERS), order_ids),
    st.builds(
        lambda who, oid, offset, lots: ReplaceOrder(
            who,
            oid,
            None if offset is None else 1_001_250 + offset * 250,
            None if lots is None else lots * 10,
        ),
        st.sampled_from(TRADERS),
        order_ids,
        st.none() | st.integers(-4, 4),
        st.none() | st.integers(1, 30),
    ),
    st.builds(CancelAll, st.sampled_from(TRADERS), st.none() | st.just(SENIOR)),
    st.builds(Deposit, st.sampled_from(TRADERS), st.just("CNY"), st.integers(1, 10**9)),
    st.builds(
        Withdraw, st.sampled_from(TRADERS), st.sampled_from(["CNY", SENIOR]), st.integers(1, 10**10)
    ),
    st.builds(UpdateFactor, st.just(SENIOR), st.integers(500_000, 1_000_000)),
    st.builds(
        SetTradingStatus, st.just(SENIOR), rare.map(lambda halt: "halted" if halt else "open")
    ),
    st.just(ExpireDay()),
)
# About two thirds new orders, so books fill up and trade; the rest everything else.
commands = st.tuples(st.integers(0, 2), place, others).map(
    lambda choice: choice[2] if choice[0] == 0 else choice[1]
)


def independent_need(exchange: Exchange, order, day: date) -> int:
    """An open order's reservation, recomputed from the pricing rules (not the exchange's)."""
    if order.side == "sell":
        return order.leaves_qty
    instrument = exchange.instruments[order.symbol]
    segment = exchange.participants[order.participant].segment
    return pricing.buy_reservation_fen(
        instrument,
        order.price,
        order.leaves_qty,
        pricing.accrued_upper(instrument, day),
        exchange.fee_schedule,
        segment,
    )


def check_invariants(exchange: Exchange, ts: int) -> None:
    exchange.validate()
    accounts = exchange.accounts
    totals: dict[str, int] = defaultdict(int)
    for (account, asset), balance in accounts.balances.items():
        totals[asset] += balance
        if not account.startswith("external:"):
            assert balance >= accounts.reserved_amount(account, asset) >= 0, (account, asset)
    assert all(total == 0 for total in totals.values()), dict(totals)
    day = trade_date(ts)
    for order in exchange.orders.values():
        if order.is_open:
            assert accounts.reservation_of(order.order_id) == independent_need(
                exchange, order, day
            ), order


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, min_size=30, max_size=150))
def test_random_streams_keep_every_invariant(stream) -> None:
    driver = Driver()
    for command in stream:
        before = json.dumps(driver.exchange.snapshot(), sort_keys=True, default=str)
        try:
            driver.apply(command)
        except VenueError:
            after = json.dumps(driver.exchange.snapshot(), sort_keys=True, default=str)
            assert after == before, f"a refused {command!r} changed the state"
        check_invariants(driver.exchange, driver.ts)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(commands, min_size=20, max_size=150))
def test_streams_through_the_service_leave_a_ledger_that_verifies_and_agrees(
    tmp_path_factory, stream
) -> None:
    """The same streams through the real service: sequencer, journal, ledger."""
    data_dir = tmp_path_factory.mktemp("venue")
    config = venue_config(data_dir, checkpoint_every_ms=20)

    async def run() -> dict:
        venue = await Venue.open(config)
        try:
            for command in stream:
                with contextlib.suppress(VenueError):
                    await venue.submit(command)
            check_invariants(venue.exchange, time.time_ns())
            balances = venue.exchange.accounts.balances
            return {key: value for key, value in balances.items() if value}
        finally:
            await venue.close()

    venue_balances = asyncio.run(run())
    result = verify_ledger(data_dir, workers=1)
    assert result.ok, result.problem
    assert {key: value for key, value in result.balances.items() if value} == venue_balances
    # the venue-audit command line recomputes the same balances from the files alone
    audit = subprocess.run(
        [sys.executable, "-m", "ledger.audit", "--data-dir", str(data_dir), "--json", "balances"],
        capture_output=True,
        text=True,
        check=True,
    )
    audited = {(row["account"], row["asset"]): row["balance"] for row in json.loads(audit.stdout)}
    assert {key: value for key, value in audited.items() if value} == venue_balances
