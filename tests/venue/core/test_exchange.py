"""The exchange state machine: settlement to the fen, reservations, order states, every refusal."""

from __future__ import annotations

import copy
import json

import pytest

from venue.core.commands import (
    AdmitParticipant,
    CancelAll,
    CancelOrder,
    Deposit,
    ExpireDay,
    ListInstrument,
    PlaceOrder,
    ReplaceOrder,
    RollCouponPeriod,
    SetTradingStatus,
    UpdateFactor,
    Withdraw,
)
from venue.core.exchange import Exchange
from venue.core.order_entry import trade_date
from venue.core.risk import FEE_ACCOUNT
from venue.domain import demo
from venue.errors import VenueError

from .helpers import MEZZ, SENIOR, SUB, TRADE_DAY, Driver, ts_at


@pytest.fixture
def driver() -> Driver:
    return Driver()


def sell(pid: str, cid: str, price: int, qty: int, symbol: str = SENIOR, **kw) -> PlaceOrder:
    return PlaceOrder(pid, cid, symbol, "sell", "limit", price, qty, **kw)


def buy(pid: str, cid: str, price: int, qty: int, symbol: str = SENIOR, **kw) -> PlaceOrder:
    return PlaceOrder(pid, cid, symbol, "buy", "limit", price, qty, **kw)


def state_of(exchange: Exchange) -> str:
    return json.dumps(exchange.snapshot(), sort_keys=True, default=str)


# --------------------------------------------------------------------------- the worked example


def test_the_readme_worked_fill_settles_to_the_fen(driver: Driver) -> None:
    """README's worked example, through the whole exchange (hand figures in test_pricing.py)."""
    accounts = driver.exchange.accounts
    before = {
        key: accounts.balance(*key)
        for key in [
            ("P-BRK1", "CNY"),
            ("P-MM2", "CNY"),
            (FEE_ACCOUNT, "CNY"),
            ("P-BRK1", SENIOR),
            ("P-MM2", SENIOR),
        ]
    }
    resting = driver.result(sell("P-MM2", "ask-1", 1_001_250, 1000))
    assert resting["ord_status"] == "new" and resting["reserved"] == 1000
    assert accounts.available("P-MM2", SENIOR) == before[("P-MM2", SENIOR)] - 1000

    outcome = driver.apply(buy("P-BRK1", "bid-1", 1_001_250, 1000))
    report = outcome.result
    assert report["ord_status"] == "filled"
    assert (report["cum_qty"], report["leaves_qty"], report["last_px"]) == (1000, 0, 1_001_250)
    [entry] = outcome.ledger_entries
    assert entry.kind == "fill"
    payload = entry.payload
    assert payload["accrued"] == 1_084_931_507
    assert payload["factor"] == 784_213
    assert payload["settlement_amount"] == 7_860_441
    assert (payload["buyer_fee"], payload["seller_fee"]) == (393, -79)
    assert (payload["buyer"], payload["seller"]) == ("P-BRK1", "P-MM2")
    assert (payload["buyer_segment"], payload["seller_segment"]) == ("interbank", "exchange")
    assert payload["aggressor"] == "buy"
    assert accounts.balance("P-BRK1", "CNY") == before[("P-BRK1", "CNY")] - 7_860_834
    assert accounts.balance("P-MM2", "CNY") == before[("P-MM2", "CNY")] + 7_860_520
    assert accounts.balance(FEE_ACCOUNT, "CNY") == before[(FEE_ACCOUNT, "CNY")] + 314
    assert accounts.balance("P-BRK1", SENIOR) == before[("P-BRK1", SENIOR)] + 1000
    assert accounts.balance("P-MM2", SENIOR) == before[("P-MM2", SENIOR)] - 1000
    # both orders ended: nothing stays reserved
    assert accounts.reserved_amount("P-BRK1", "CNY") == 0
    assert accounts.reserved_amount("P-MM2", SENIOR) == 0


def test_a_resting_buy_reserves_the_hand_computed_bound(driver: Driver) -> None:
    report = driver.result(buy("P-BRK1", "bid-1", 1_001_250, 1000))
    assert report["reserved"] == 7_925_000  # test_pricing's worked reservation
    accounts = driver.exchange.accounts
    assert accounts.reserved_amount("P-BRK1", "CNY") == 7_925_000
    # a partial fill leaves exactly need(leaves) reserved: 600 x 7 925 fen
    driver.apply(sell("P-MM2", "ask-1", 1_001_250, 400))
    order = driver.exchange.orders[report["order_id"]]
    assert (order.status, order.cum_qty, order.leaves_qty) == ("partially_filled", 400, 600)
    assert accounts.reservation_of(order.order_id) == 600 * 7_925
    driver.apply(CancelOrder("P-BRK1", order.order_id))
    assert accounts.reserved_amount("P-BRK1", "CNY") == 0
    assert driver.exchange.orders[order.order_id].status == "canceled"


# --------------------------------------------------------------------------- matching through


def test_fills_print_at_the_makers_price_in_price_time_priority(driver: Driver) -> None:
    first = driver.result(sell("P-MM1", "a1", 1_001_000, 100))
    second = driver.result(sell("P-MM2", "a2", 1_001_000, 100))
    better = driver.result(sell("P-MM2", "a3", 1_000_500, 100))
    outcome = driver.apply(buy("P-BRK1", "b1", 1_002_000, 250))
    fills = [entry.payload for entry in outcome.ledger_entries]
    assert [(f["maker_order_id"], f["price"], f["qty"]) for f in fills] == [
        (better["order_id"], 1_000_500, 100),
        (first["order_id"], 1_001_000, 100),
        (second["order_id"], 1_001_000, 50),
    ]
    assert outcome.result["notional_ticks"] == 100 * 1_000_500 + 150 * 1_001_000
    assert driver.exchange.orders[second["order_id"]].leaves_qty == 50


def test_market_order_becomes_a_band_edge_limit_and_ioc_remainder_is_cancelled(
    driver: Driver,
) -> None:
    driver.apply(sell("P-MM1", "a1", 1_001_250, 30))
    report = driver.result(
        PlaceOrder("P-BRK1", "m1", SENIOR, "buy", "market", None, 50, time_in_force="ioc")
    )
    _lower, upper = driver.exchange.instruments[SENIOR].band_edges()
    assert report["price"] == upper
    assert (report["ord_status"], report["cum_qty"], report["reason"]) == (
        "canceled",
        30,
        "ioc_remainder",
    )


def test_fok_that_cannot_fill_changes_no_balance(driver: Driver) -> None:
    driver.apply(sell("P-MM1", "a1", 1_001_250, 30))
    before = copy.deepcopy(dict(driver.exchange.accounts.balances))
    report = driver.result(buy("P-BRK1", "f1", 1_001_250, 40, time_in_force="fok"))
    assert (report["ord_status"], report["reason"], report["cum_qty"]) == (
        "canceled",
        "fok_unfillable",
        0,
    )
    assert dict(driver.exchange.accounts.balances) == before


def test_self_trade_prevention_cancels_the_incoming_order_by_default(driver: Driver) -> None:
    driver.apply(sell("P-MM1", "a1", 1_001_250, 50))
    report = driver.result(buy("P-MM1", "b1", 1_001_250, 50))
    assert (report["ord_status"], report["reason"]) == ("canceled", "self_trade")
    assert driver.exchange.accounts.reserved_amount("P-MM1", "CNY") == 0


def test_replace_down_keeps_reservation_exact_and_up_needs_cash(driver: Driver) -> None:
    report = driver.result(buy("P-BRK2", "b1", 1_000_000, 1000))
    order_id = report["order_id"]
    accounts = driver.exchange.accounts
    per_unit = report["reserved"] // 1000
    replaced = driver.result(ReplaceOrder("P-BRK2", order_id, None, 500))
    assert replaced["leaves_qty"] == 500 and replaced["reserved"] == 500 * per_unit
    # an increase beyond the broker's cash is refused and changes nothing
    cash = accounts.available("P-BRK2", "CNY")
    before = state_of(driver.exchange)
    with pytest.raises(VenueError) as refused:
        driver.apply(
            ReplaceOrder("P-BRK2", order_id, None, 500 + (cash // per_unit // 10 + 1) * 10)
        )
    assert refused.value.code == "risk.insufficient_cash"
    assert state_of(driver.exchange) == before


def test_replace_to_a_crossing_price_trades(driver: Driver) -> None:
    driver.apply(sell("P-MM1", "a1", 1_001_250, 100))
    report = driver.result(buy("P-BRK1", "b1", 1_000_000, 100))
    crossed = driver.result(ReplaceOrder("P-BRK1", report["order_id"], 1_001_250, None))
    assert crossed["ord_status"] == "filled" and crossed["last_px"] == 1_001_250


def test_cancel_all_releases_everything(driver: Driver) -> None:
    driver.apply(buy("P-MM1", "b1", 1_000_000, 100))
    driver.apply(sell("P-MM1", "a1", 1_002_000, 100))
    driver.apply(sell("P-MM1", "a2", 1_002_000, 100, symbol=MEZZ))
    result = driver.result(CancelAll("P-MM1", SENIOR))
    assert len(result["canceled"]) == 2
    assert driver.exchange.accounts.reserved_amount("P-MM1", "CNY") == 0
    assert driver.exchange.accounts.reserved_amount("P-MM1", MEZZ) == 100
    assert driver.apply(CancelAll("P-MM1", SENIOR)).journaled is False  # nothing to cancel


def test_day_orders_expire_at_session_end_and_gtc_stay(driver: Driver) -> None:
    day = driver.result(buy("P-BRK1", "b1", 1_000_000, 100, time_in_force="day"))
    gtc = driver.result(buy("P-BRK1", "b2", 1_000_000, 100))
    result = driver.result(ExpireDay())
    assert result["expired"] == [day["order_id"]]
    orders = driver.exchange.orders
    assert orders[day["order_id"]].status == "expired"
    assert orders[gtc["order_id"]].status == "new"
    assert driver.exchange.accounts.reservation_of(day["order_id"]) == 0


def test_factor_update_settles_later_fills_at_the_new_factor(driver: Driver) -> None:
    outcome = driver.apply(UpdateFactor(SENIOR, 700_000))
    assert outcome.ledger_entries[0].kind == "factor_update"
    driver.apply(sell("P-MM2", "a1", 1_001_250, 1000))
    fill = driver.apply(buy("P-BRK1", "b1", 1_001_250, 1000)).ledger_entries[0].payload
    # 1000 x 100.00 x 0.70 x 100.2334931507 / 100 = 70 163.44520549 -> 70 163.45 CNY
    assert fill["factor"] == 700_000
    assert fill["settlement_amount"] == 7_016_345


def test_factor_increase_re_reserves_resting_buys(driver: Driver) -> None:
    report = driver.result(buy("P-BRK1", "b1", 1_001_250, 1000))
    driver.apply(UpdateFactor(SENIOR, 1_000_000))
    order = driver.exchange.orders[report["order_id"]]
    assert order.is_open
    assert driver.exchange.accounts.reservation_of(order.order_id) > report["reserved"]


def test_a_buy_cancelled_by_a_factor_increase_is_a_book_change(driver: Driver) -> None:
    """The largest buy P-BRK1 can afford at the current factor cannot be covered at 1.0: the
    factor update cancels it, and says the book changed (market data follows the book)."""
    exchange = driver.exchange
    instrument = exchange.instruments[SENIOR]
    segment = exchange.participants["P-BRK1"].segment
    day = trade_date(driver.ts)
    cash = exchange.accounts.available("P-BRK1", "CNY")

    def need(lots: int) -> int:
        return exchange.reservation_rule.buy_need(instrument, segment, 1_001_250, lots * 10, day)

    low, high = 1, 10**7  # the largest affordable number of 10-unit lots, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if need(middle) <= cash else (low, middle - 1)
    report = driver.result(buy("P-BRK1", "b1", 1_001_250, low * 10))
    outcome = driver.apply(UpdateFactor(SENIOR, 1_000_000))
    assert exchange.orders[report["order_id"]].status == "canceled"
    assert ("book", SENIOR) in outcome.events


def test_halted_instrument_refuses_orders_but_allows_cancels(driver: Driver) -> None:
    report = driver.result(sell("P-MM1", "a1", 1_001_250, 100))
    driver.apply(SetTradingStatus(SENIOR, "halted"))
    with pytest.raises(VenueError) as refused:
        driver.apply(buy("P-BRK1", "b1", 1_001_250, 100))
    assert refused.value.code == "state.instrument_halted"
    driver.apply(CancelOrder("P-MM1", report["order_id"]))
    driver.apply(SetTradingStatus(SENIOR, "open"))
    assert driver.result(buy("P-BRK1", "b2", 1_001_250, 100))["ord_status"] == "new"


def test_client_order_id_is_idempotent_and_refuses_a_different_body(driver: Driver) -> None:
    first = driver.apply(buy("P-BRK1", "same", 1_000_000, 100))
    again = driver.apply(buy("P-BRK1", "same", 1_000_000, 100))
    assert again.journaled is False and again.result["order_id"] == first.result["order_id"]
    with pytest.raises(VenueError) as refused:
        driver.apply(buy("P-BRK1", "same", 1_000_000, 200))
    assert refused.value.code == "matching.duplicate_client_order_id"
    # another participant may use the same client id
    assert driver.result(buy("P-BRK2", "same", 1_000_000, 100))["participant"] == "P-BRK2"


def test_deposit_and_withdraw_move_cash_through_external_accounts(driver: Driver) -> None:
    accounts = driver.exchange.accounts
    start = accounts.balance("P-BRK2", "CNY")
    entry = driver.apply(Deposit("P-BRK2", "CNY", 12_345)).ledger_entries[0]
    assert entry.kind == "deposit" and entry.payload["source"] == "external:bank"
    driver.apply(Withdraw("P-BRK2", "CNY", 10_000))
    assert accounts.balance("P-BRK2", "CNY") == start + 2_345


# --------------------------------------------------------------------------- refusals


def _rest_some(driver: Driver) -> dict:
    return driver.result(sell("P-MM1", "resting", 1_001_250, 100))


REFUSALS = [
    (
        "unknown instrument",
        lambda r: buy("P-BRK1", "x", 1_000_000, 10, symbol="NOPE-1"),
        "validation.unknown_instrument",
    ),
    (
        "unknown participant",
        lambda r: buy("P-NOBODY", "x", 1_000_000, 10),
        "validation.unknown_participant",
    ),
    (
        "clerk cannot trade",
        lambda r: buy("P-CLK1", "x", 1_000_000, 10),
        "state.participant_cannot_trade",
    ),
    (
        "price outside the band",
        lambda r: buy("P-BRK1", "x", 900_000, 10),
        "validation.price_out_of_band",
    ),
    ("zero price", lambda r: buy("P-BRK1", "x", 0, 10), "validation.bad_price"),
    ("absurd price", lambda r: buy("P-BRK1", "x", 10**30, 10), "validation.absurd_value"),
    ("qty below minimum", lambda r: buy("P-BRK1", "x", 1_000_000, 5), "validation.qty_below_min"),
    (
        "qty off increment",
        lambda r: buy("P-BRK1", "x", 1_000_000, 15),
        "validation.qty_off_increment",
    ),
    ("negative qty", lambda r: buy("P-BRK1", "x", 1_000_000, -10), "validation.bad_quantity"),
    ("absurd qty", lambda r: buy("P-BRK1", "x", 1_000_000, 10**40), "validation.absurd_value"),
    (
        "insufficient cash",
        lambda r: buy("P-BRK2", "x", 1_000_000, 1_000_000),
        "risk.insufficient_cash",
    ),
    ("short sale", lambda r: sell("P-BRK1", "x", 1_001_250, 10), "risk.insufficient_units"),
    (
        "bad side",
        lambda r: PlaceOrder("P-BRK1", "x", SENIOR, "hold", "limit", 1_000_000, 10),
        "validation.bad_side",
    ),
    (
        "bad tif",
        lambda r: buy("P-BRK1", "x", 1_000_000, 10, time_in_force="forever"),
        "validation.bad_parameter",
    ),
    (
        "market with price",
        lambda r: PlaceOrder(
            "P-BRK1", "x", SENIOR, "buy", "market", 1_000_000, 10, time_in_force="ioc"
        ),
        "validation.bad_parameter",
    ),
    ("empty client id", lambda r: buy("P-BRK1", "", 1_000_000, 10), "validation.bad_parameter"),
    (
        "post-only would cross",
        lambda r: buy("P-BRK1", "x", 1_001_250, 10, post_only=True),
        "matching.post_only_would_cross",
    ),
    ("cancel unknown order", lambda r: CancelOrder("P-MM1", 999_999), "matching.unknown_order"),
    (
        "cancel another's order",
        lambda r: CancelOrder("P-BRK1", r["order_id"]),
        "matching.not_order_owner",
    ),
    (
        "replace another's order",
        lambda r: ReplaceOrder("P-BRK1", r["order_id"], None, 50),
        "matching.not_order_owner",
    ),
    (
        "replace with no change",
        lambda r: ReplaceOrder("P-MM1", r["order_id"], None, 100),
        "matching.no_change",
    ),
    (
        "replace off increment",
        lambda r: ReplaceOrder("P-MM1", r["order_id"], None, 55),
        "validation.qty_off_increment",
    ),
    ("withdraw too much", lambda r: Withdraw("P-BRK2", "CNY", 10**14), "risk.insufficient_cash"),
    (
        "withdraw reserved units",
        lambda r: Withdraw("P-MM1", SENIOR, 200_000),
        "risk.insufficient_units",
    ),
    ("deposit zero", lambda r: Deposit("P-BRK2", "CNY", 0), "validation.bad_amount"),
    ("deposit unknown asset", lambda r: Deposit("P-BRK2", "GOLD", 10), "validation.bad_parameter"),
    ("factor above one", lambda r: UpdateFactor(SENIOR, 1_000_001), "validation.bad_factor"),
    ("list twice", lambda r: ListInstrument(dict(demo.INSTRUMENTS[0])), "state.instrument_exists"),
    (
        "admit twice",
        lambda r: AdmitParticipant("P-MM1", "x", "interbank", "broker", "k", "s"),
        "state.participant_exists",
    ),
    ("bad status", lambda r: SetTradingStatus(SENIOR, "paused"), "validation.bad_parameter"),
]


@pytest.mark.parametrize(
    ("make", "code"), [(m, c) for _, m, c in REFUSALS], ids=[name for name, _, _ in REFUSALS]
)
def test_every_refusal_has_a_stable_code_and_changes_nothing(driver: Driver, make, code) -> None:
    resting = _rest_some(driver)
    before = state_of(driver.exchange)
    with pytest.raises(VenueError) as refused:
        driver.apply(make(resting))
    assert refused.value.code == code
    assert state_of(driver.exchange) == before


def test_trading_outside_the_coupon_period_is_refused(driver: Driver) -> None:
    driver.ts = ts_at(2027, 2, 15)  # the senior's next coupon date: a roll is due
    with pytest.raises(VenueError) as refused:
        driver.apply(buy("P-BRK1", "late", 1_000_000, 10))
    assert refused.value.code == "state.coupon_roll_required"


# --------------------------------------------------------------------------- persistence


def test_snapshot_restore_round_trips_the_whole_state(driver: Driver) -> None:
    driver.apply(sell("P-MM1", "a1", 1_001_250, 100))
    driver.apply(buy("P-BRK1", "b1", 1_001_250, 40))
    driver.apply(buy("P-BRK1", "b2", 1_000_000, 100, time_in_force="day"))
    sub = driver.exchange.instruments[SUB]
    driver.apply(
        sell("P-MM2", "c1", sub.parse_price(sub.to_wire()["reference_price"]), 100, symbol=SUB)
    )
    snapshot = json.loads(json.dumps(driver.exchange.snapshot()))
    restored = Exchange.restore(snapshot)
    restored.validate()
    assert state_of(restored) == state_of(driver.exchange)
    # and it behaves the same afterwards
    command = buy("P-BRK2", "after", 1_001_250, 60)
    assert (
        restored.apply(command, TRADE_DAY + 10**9).result
        == driver.exchange.apply(command, TRADE_DAY + 10**9).result
    )


def test_coupon_roll_moves_the_period_and_re_reserves_resting_buys(driver: Driver) -> None:
    resting = driver.result(buy("P-BRK1", "before-roll", 1_001_250, 1000))
    with pytest.raises(VenueError) as refused:
        driver.apply(RollCouponPeriod(SENIOR))
    assert refused.value.code == "state.coupon_roll_not_due"

    driver.ts = ts_at(2027, 2, 16)
    outcome = driver.apply(RollCouponPeriod(SENIOR))
    rolled = driver.exchange.instruments[SENIOR]
    assert (str(rolled.accrual_start), str(rolled.next_coupon_date)) == (
        "2027-02-15",
        "2027-05-15",
    )
    [entry] = outcome.ledger_entries
    assert entry.kind == "instrument_updated" and entry.payload["change"] == "coupon_roll"
    # the largest accrued before 2027-05-15 is now 88 days (15 Feb counted .. 14 May): 3.60 x
    # 88 / 365 = 0.8679452055, less than the old bound (91 days), so the reservation shrinks
    order_id = resting["order_id"]
    new_reservation = driver.exchange.accounts.reservation_of(order_id)
    assert 0 < new_reservation < resting["reserved"]
    # and trading resumes in the new period: 1 day of accrual on 16 Feb
    driver.apply(sell("P-MM2", "after-roll", 1_001_250, 1000))
    fill = driver.exchange.orders[order_id]
    assert fill.status == "filled"
