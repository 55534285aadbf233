"""Mass quotes and market maker protection (venue/core/quoting.py): a quote set is replaced in
one command or not at all, every refusal changes nothing, MMP pulls the quotes and blocks new
ones until reset, and all of it survives a snapshot and a journal replay."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from venue.core.commands import MassQuote, PlaceOrder, ResetMmp, SetMmp
from venue.core.exchange import Exchange
from venue.core.order_entry import trade_date
from venue.core.quoting import MAX_QUOTE_LEVELS
from venue.errors import VenueError
from venue.service import Venue

from .helpers import SENIOR, Driver, venue_config

MID = 1_001_250  # IPABS-2025-1-A's reference price, in ticks
MM, TAKER = "P-MM1", "P-MM2"


def quote(quote_id: str, bids=(), asks=(), participant: str = MM) -> MassQuote:
    return MassQuote(participant, quote_id, SENIOR, tuple(bids), tuple(asks))


def state_of(exchange: Exchange) -> str:
    return json.dumps(exchange.snapshot(), sort_keys=True, default=str)


def open_quote_orders(exchange: Exchange, participant: str = MM) -> list[tuple[str, int, int]]:
    return sorted(
        (o.side, o.price, o.leaves_qty)
        for o in exchange.open_orders.values()
        if o.participant == participant and "." in o.client_order_id
    )


@pytest.fixture
def driver() -> Driver:
    return Driver()


def test_a_mass_quote_replaces_the_whole_set_in_one_command(driver: Driver) -> None:
    first = driver.result(quote("q1", [(MID - 1, 100), (MID - 2, 200)], [(MID + 1, 100)]))
    assert [r["client_order_id"] for r in first["orders"]] == ["q1.b1", "q1.b2", "q1.a1"]
    assert first["canceled"] == []
    seq = driver.exchange.seq
    second = driver.result(quote("q2", [(MID - 3, 50)], [(MID + 2, 60), (MID + 3, 70)]))
    assert driver.exchange.seq == seq + 1  # one command
    assert sorted(second["canceled"]) == sorted(r["order_id"] for r in first["orders"])
    assert open_quote_orders(driver.exchange) == [
        ("buy", MID - 3, 50), ("sell", MID + 2, 60), ("sell", MID + 3, 70),
    ]  # fmt: skip
    for report in first["orders"]:
        order = driver.exchange.orders[report["order_id"]]
        assert (order.status, order.reason) == ("canceled", "user_cancel")
    # reservations are exactly the new set's
    accounts = driver.exchange.accounts
    assert accounts.reserved_amount(MM, SENIOR) == 130
    bid = driver.exchange.orders[second["orders"][0]["order_id"]]
    assert accounts.reserved_amount(MM, "CNY") == driver.exchange.need(bid, trade_date(driver.ts))
    # an empty set withdraws the quotes
    driver.result(quote("q3"))
    assert open_quote_orders(driver.exchange) == []


@pytest.mark.parametrize(
    ("bids", "asks", "code"),
    [
        ([(MID - 2, 10), (MID - 1, 10)], [], "matching.bad_quote"),  # bids not descending
        ([], [(MID + 2, 10), (MID + 2, 10)], "matching.bad_quote"),  # asks not strictly ascending
        ([(MID + 1, 10)], [(MID + 1, 10)], "matching.bad_quote"),  # crossed
        ([(MID - n, 10) for n in range(1, MAX_QUOTE_LEVELS + 2)], [], "matching.bad_quote"),
        ([(MID * 2, 10)], [], "validation.price_out_of_band"),
        ([(MID - 1, 7)], [], "validation.qty_below_min"),
        ([(MID - 1, "10")], [], "validation.bad_quantity"),
        ([[MID - 1]], [], "matching.bad_quote"),
        ([], [(MID + 1, 10**9)], "risk.insufficient_units"),
        ([(MID - 1, 10**8)], [], "risk.insufficient_cash"),
    ],
)
def test_a_refused_mass_quote_changes_nothing(driver: Driver, bids, asks, code) -> None:
    driver.result(quote("q1", [(MID - 1, 100)], [(MID + 1, 100)]))
    before = state_of(driver.exchange)
    with pytest.raises(VenueError) as refused:
        driver.apply(quote("q2", bids, asks))
    assert refused.value.code == code, refused.value
    assert state_of(driver.exchange) == before


def test_a_reused_quote_id_is_refused(driver: Driver) -> None:
    driver.result(quote("q1", [(MID - 1, 10)]))
    before = state_of(driver.exchange)
    with pytest.raises(VenueError, match="already used") as refused:
        driver.apply(quote("q1", [(MID - 2, 10)]))
    assert refused.value.code == "matching.duplicate_client_order_id"
    assert state_of(driver.exchange) == before


def test_the_old_sets_reservation_counts_toward_the_new_one(driver: Driver) -> None:
    """A new set that fits only once the old one's units are released is accepted."""
    units = driver.exchange.accounts.available(MM, SENIOR)
    driver.result(quote("q1", [], [(MID + 1, units)]))
    assert driver.exchange.accounts.available(MM, SENIOR) == 0
    driver.result(quote("q2", [], [(MID + 2, units)]))
    assert open_quote_orders(driver.exchange) == [("sell", MID + 2, units)]


def test_a_crossing_quote_level_trades_like_a_limit_order(driver: Driver) -> None:
    driver.result(PlaceOrder(TAKER, "t1", SENIOR, "sell", "limit", MID, 30))
    result = driver.result(quote("q1", [(MID, 50)], [(MID + 1, 10)]))
    bid = result["orders"][0]
    assert (bid["cum_qty"], bid["leaves_qty"], bid["ord_status"]) == (30, 20, "partially_filled")


def test_mmp_pulls_the_quotes_once_the_window_fills_past_the_limit(driver: Driver) -> None:
    driver.result(SetMmp(MM, SENIOR, 1_000, 25))
    driver.result(quote("q1", [(MID - 1, 50)], [(MID + 1, 50)]))
    driver.result(PlaceOrder(TAKER, "t1", SENIOR, "buy", "limit", MID + 1, 20, "ioc"))
    assert len(open_quote_orders(driver.exchange)) == 2  # 20 <= 25: still quoting
    hit = driver.apply(PlaceOrder(TAKER, "t2", SENIOR, "buy", "limit", MID + 1, 10, "ioc"))
    assert open_quote_orders(driver.exchange) == []  # 30 > 25: pulled in the same command
    reports = {}
    for event in hit.events:  # the last report of each of the participant's orders
        if event[0] == "order" and event[1]["participant"] == MM:
            reports[event[1]["order_id"]] = event[1]
    assert sorted((r["side"], r["ord_status"], r["reason"]) for r in reports.values()) == [
        ("buy", "canceled", "mmp_triggered"),
        ("sell", "canceled", "mmp_triggered"),
    ]
    before = state_of(driver.exchange)
    with pytest.raises(VenueError) as refused:
        driver.apply(quote("q2", [(MID - 1, 10)]))
    assert refused.value.code == "risk.mmp_triggered"
    assert state_of(driver.exchange) == before
    # ordinary orders are not blocked; a reset lets quotes back in
    driver.result(PlaceOrder(MM, "plain", SENIOR, "buy", "limit", MID - 5, 10))
    driver.result(ResetMmp(MM, SENIOR))
    driver.result(quote("q2", [(MID - 1, 10)]))
    assert len(open_quote_orders(driver.exchange)) == 1


def test_mmp_forgets_fills_that_left_the_window(driver: Driver) -> None:
    driver.result(SetMmp(MM, SENIOR, 1_000, 25))
    driver.result(quote("q1", [], [(MID + 1, 100)]))
    driver.result(PlaceOrder(TAKER, "t1", SENIOR, "buy", "limit", MID + 1, 20, "ioc"))
    driver.ts += 2_000_000_000  # two seconds later: the first fill is out of the window
    driver.result(PlaceOrder(TAKER, "t2", SENIOR, "buy", "limit", MID + 1, 20, "ioc"))
    assert open_quote_orders(driver.exchange) == [("sell", MID + 1, 60)]


def test_quotes_and_protection_survive_a_snapshot(driver: Driver) -> None:
    driver.result(SetMmp(MM, SENIOR, 1_000, 25))
    driver.result(quote("q1", [(MID - 1, 50)], [(MID + 1, 50)]))
    driver.result(PlaceOrder(TAKER, "t1", SENIOR, "buy", "limit", MID + 1, 20, "ioc"))
    restored = Exchange.restore(json.loads(json.dumps(driver.exchange.snapshot())))
    restored.validate()
    assert state_of(restored) == state_of(driver.exchange)
    # the restored window still counts the first 20: 10 more trips it
    ts = driver.ts + 1_000
    restored.apply(PlaceOrder(TAKER, "t2", SENIOR, "buy", "limit", MID + 1, 10, "ioc"), ts)
    assert open_quote_orders(restored) == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["quote", "hit_bid", "hit_ask", "reset"]),
            st.integers(1, 4),  # levels
            st.integers(1, 6),  # size in lots
        ),
        min_size=1,
        max_size=25,
    )
)
def test_random_quoting_keeps_every_invariant_and_replays_exactly(steps) -> None:
    driver = Driver()
    driver.result(SetMmp(MM, SENIOR, 500, 120))
    history = []
    for n, (action, levels, lots) in enumerate(steps):
        if action == "quote":
            command = quote(
                f"q{n}",
                [(MID - k, lots * 10) for k in range(1, levels + 1)],
                [(MID + k, lots * 10) for k in range(1, levels + 1)],
            )
        elif action == "reset":
            command = ResetMmp(MM, SENIOR)
        else:
            side, price = ("sell", MID - 4) if action == "hit_bid" else ("buy", MID + 4)
            command = PlaceOrder(TAKER, f"t{n}", SENIOR, side, "limit", price, lots * 10, "ioc")
        try:
            driver.apply(command)  # validates the whole state after every step
        except VenueError as error:
            assert error.code == "risk.mmp_triggered", error
            continue
        history.append((command, driver.ts))
    # what the journal would hold, replayed through a fresh exchange: the very same state
    replayed = Driver()
    replayed.exchange.apply(SetMmp(MM, SENIOR, 500, 120), replayed.ts + 1_000)
    for command, ts in history:
        replayed.exchange.apply(command, ts)
    assert state_of(replayed.exchange) == state_of(driver.exchange)
    restored = Exchange.restore(json.loads(json.dumps(driver.exchange.snapshot())))
    assert state_of(restored) == state_of(driver.exchange)


def test_a_mass_quote_is_one_journal_record_and_stands_after_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = venue_config(tmp_path / "data", snapshot_every_commands=1_000_000)
        venue = await Venue.open(config)
        try:
            await venue.submit(quote("q1", [(MID - 1, 50), (MID - 2, 50)], [(MID + 1, 50)]))
            journal_before = venue.journal.durable_count
            await venue.submit(quote("q2", [(MID - 3, 40)], [(MID + 2, 40), (MID + 3, 40)]))
            assert venue.journal.durable_count == journal_before + 1
            expected = open_quote_orders(venue.exchange)
            quotes = dict(venue.exchange.quotes)
        finally:
            await venue.close()
        reopened = await Venue.open(config)
        try:
            assert open_quote_orders(reopened.exchange) == expected
            assert reopened.exchange.quotes == quotes
            reopened.exchange.validate()
        finally:
            await reopened.close()

    asyncio.run(scenario())


def test_cancel_orders_cancels_a_sessions_orders_in_one_command(driver: Driver) -> None:
    """Cancel-on-disconnect: the orders a session placed, in one journaled command; those that
    already ended are skipped, another participant's is refused with nothing changed."""
    from venue.core.commands import CancelOrders

    placed = driver.result(quote("q1", [(MID - 1, 10)], [(MID + 1, 10)]))["orders"]
    ids = [report["order_id"] for report in placed]
    plain = driver.result(PlaceOrder(MM, "p1", SENIOR, "buy", "limit", MID - 3, 10))["order_id"]
    driver.result(PlaceOrder(TAKER, "t1", SENIOR, "buy", "limit", MID + 1, 10, "ioc"))  # fills ask
    other = driver.result(PlaceOrder(TAKER, "t2", SENIOR, "buy", "limit", MID - 4, 10))["order_id"]
    before = state_of(driver.exchange)
    with pytest.raises(VenueError) as refused:
        driver.apply(CancelOrders(MM, (ids[0], other)))
    assert refused.value.code == "matching.not_order_owner"
    assert state_of(driver.exchange) == before
    seq = driver.exchange.seq
    result = driver.result(CancelOrders(MM, (ids[0], ids[1], plain, 999_999)))
    assert driver.exchange.seq == seq + 1
    assert result == {"canceled": [ids[0], plain], "skipped": [ids[1], 999_999]}
    assert all(o.participant != MM for o in driver.exchange.open_orders.values())
    # nothing left to cancel: answered, not journaled
    assert not driver.apply(CancelOrders(MM, (ids[0],))).journaled
    # hostile ids are a refusal, never a crash
    before = state_of(driver.exchange)
    for bad in ([[1]], ["1"], [True], "12", [1.0], list(range(10_001))):
        with pytest.raises(VenueError) as refused:
            driver.apply(CancelOrders(MM, bad))
        assert refused.value.code == "validation.bad_parameter"
    assert state_of(driver.exchange) == before
