"""Day counts, accrued, settlement, fees and reservations -- every expectation worked by hand."""

from __future__ import annotations

import dataclasses
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.venue.domain.helpers import make_instrument
from venue.domain import demo
from venue.domain.instruments import DayCount, Instrument
from venue.domain.participants import Segment
from venue.domain.pricing import (
    MAX_FEE_PPM,
    FeeSchedule,
    SegmentFees,
    accrued_interest,
    accrued_upper,
    buy_cost_per_unit_upper,
    buy_reservation_fen,
    days_30_360,
    fee_fen,
    price_fill,
    round_half_away_from_zero,
    settlement_amount_fen,
    year_fraction,
)
from venue.errors import VenueError

D = date


def yf(day_count: DayCount, start: date, end: date, period=(None, None), frequency=2):
    period_start, period_end = period
    return year_fraction(
        day_count,
        start,
        end,
        period_start=period_start or start,
        period_end=period_end or end,
        frequency=frequency,
    )


# --- day counts (hand-counted days) -------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (D(2024, 2, 28), D(2024, 3, 1), 2),  # leap year: 28 Feb, 29 Feb
        (D(2023, 2, 28), D(2023, 3, 1), 1),  # common year
        (D(2023, 12, 31), D(2024, 12, 31), 366),  # a leap year's worth, still over 365
        (D(2024, 1, 31), D(2024, 2, 29), 29),  # month end to leap month end
        (D(2026, 11, 15), D(2026, 11, 15), 0),
    ],
)
def test_act_365f(start: date, end: date, days: int) -> None:
    assert yf(DayCount.ACT_365F, start, end) == Fraction(days, 365)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (D(2024, 1, 31), D(2024, 3, 31), 60),  # 29 (Feb, leap) + 31
        (D(2023, 1, 31), D(2023, 3, 31), 59),  # 28 + 31
        (D(2023, 12, 31), D(2024, 12, 31), 366),
    ],
)
def test_act_360(start: date, end: date, days: int) -> None:
    assert yf(DayCount.ACT_360, start, end) == Fraction(days, 360)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        # D1 31 -> 30, and then D2 31 -> 30: 2 whole months
        (D(2024, 1, 31), D(2024, 3, 31), 60),
        # D1 29 (February's end is NOT adjusted in bond basis), so D2 stays 31: 30 + 2
        (D(2024, 2, 29), D(2024, 3, 31), 32),
        # D1 28, D2 31 stays 31: 6 months + 3 days
        (D(2023, 2, 28), D(2023, 8, 31), 183),
        (D(2024, 1, 15), D(2024, 2, 29), 44),  # 30 + 14
        # D1 30; D2 28: 360 - 6 x 30 - 2
        (D(2024, 8, 30), D(2025, 2, 28), 178),
        (D(2026, 8, 31), D(2026, 9, 30), 30),  # D1 31 -> 30
        (D(2026, 5, 31), D(2026, 8, 31), 90),  # both 31 -> 30
        (D(2023, 12, 31), D(2024, 2, 29), 59),  # 360 - 10 x 30 + (29 - 30)
        (D(2024, 2, 28), D(2024, 3, 1), 3),  # 30 + (1 - 28): 30/360 "jumps" over February
    ],
)
def test_30_360_isda_bond_basis(start: date, end: date, days: int) -> None:
    assert days_30_360(start, end) == days
    assert yf(DayCount.THIRTY_360, start, end) == Fraction(days, 360)


@pytest.mark.parametrize(
    ("period", "frequency", "end", "fraction"),
    [
        # 2023-08-31 .. 2024-02-29: 30+31+30+31+31+29 = 182 days; to 2023-12-31: 30+31+30+31 = 122
        ((D(2023, 8, 31), D(2024, 2, 29)), 2, D(2023, 12, 31), Fraction(122, 2 * 182)),
        # quarter 2024-11-30 .. 2025-02-28: 31+31+28 = 90; to 2025-01-31: 31+31 = 62
        ((D(2024, 11, 30), D(2025, 2, 28)), 4, D(2025, 1, 31), Fraction(62, 4 * 90)),
        # annual period spanning 29 Feb 2024: 366 days; to 2024-02-29: 365
        ((D(2023, 3, 1), D(2024, 3, 1)), 1, D(2024, 2, 29), Fraction(365, 366)),
        # 2024-08-15 .. 2025-02-15: 92 + 92 = 184; to 2024-11-15: 92 -> exactly a quarter year
        ((D(2024, 8, 15), D(2025, 2, 15)), 2, D(2024, 11, 15), Fraction(1, 4)),
    ],
)
def test_act_act_icma(period, frequency: int, end: date, fraction: Fraction) -> None:
    assert yf(DayCount.ACT_ACT, period[0], end, period, frequency) == fraction


def test_year_fraction_refuses_reversed_dates() -> None:
    with pytest.raises(ValueError):
        yf(DayCount.ACT_360, D(2024, 3, 1), D(2024, 2, 1))


# --- accrued per 100 face, rounded half up to 1e-10 --------------------------------------


@pytest.mark.parametrize(
    ("overrides", "trade_date", "accrued"),
    [
        # 5 x 29/365 = 0.39726027397|26... -> 0.3972602740
        (
            {
                "day_count": "ACT/365F",
                "accrual_start": "2024-01-31",
                "next_coupon_date": "2024-07-31",
                "maturity_date": "2026-07-31",
            },
            D(2024, 2, 29),
            3_972_602_740,
        ),
        # 5 x 60/360 = 0.8333333333|33... -> 0.8333333333
        (
            {
                "day_count": "ACT/360",
                "accrual_start": "2024-01-31",
                "next_coupon_date": "2024-07-31",
                "maturity_date": "2026-07-31",
            },
            D(2024, 3, 31),
            8_333_333_333,
        ),
        # 5 x 178/360 = 2.4722222222|22... -> 2.4722222222
        (
            {
                "day_count": "30/360",
                "accrual_start": "2023-08-31",
                "next_coupon_date": "2024-02-29",
                "maturity_date": "2026-08-31",
            },
            D(2024, 2, 28),
            24_722_222_222,
        ),
        # 5/2 x 122/182 = 1.6758241758|24... -> 1.6758241758
        (
            {
                "day_count": "ACT/ACT",
                "accrual_start": "2023-08-31",
                "next_coupon_date": "2024-02-29",
                "maturity_date": "2026-08-31",
            },
            D(2023, 12, 31),
            16_758_241_758,
        ),
        # an exact half: 0.0001 x 1/(1 x 128) = 0.00000078125 = 7812.5e-10 -> 7813 (half up)
        (
            {
                "day_count": "ACT/ACT",
                "coupon_rate": "0.0001",
                "coupon_frequency": 1,
                "accrual_start": "2026-01-01",
                "next_coupon_date": "2026-05-09",
                "maturity_date": "2027-05-09",
            },
            D(2026, 1, 2),
            7_813,
        ),
        # the accrual start itself: nothing accrued yet
        ({}, D(2026, 8, 15), 0),
        # a zero coupon accrues nothing
        ({"coupon_rate": "0"}, D(2027, 1, 1), 0),
    ],
)
def test_accrued_interest(overrides: dict, trade_date: date, accrued: int) -> None:
    assert accrued_interest(make_instrument(**overrides), trade_date) == accrued


@pytest.mark.parametrize(
    ("trade_date", "code"),
    [
        (D(2026, 8, 14), "state.instrument_not_started"),
        (D(2027, 2, 15), "state.coupon_roll_required"),
        (D(2027, 3, 1), "state.coupon_roll_required"),
    ],
)
def test_trade_dates_outside_the_period_are_refused(trade_date: date, code: str) -> None:
    with pytest.raises(VenueError) as caught:
        accrued_interest(make_instrument(), trade_date)
    assert caught.value.code.value == code


def test_trading_on_or_after_maturity_is_refused() -> None:
    instrument = make_instrument(accrual_start="2029-02-15", next_coupon_date="2029-08-15")
    for day in (D(2029, 8, 15), D(2030, 1, 1)):
        with pytest.raises(VenueError) as caught:
            accrued_interest(instrument, day)
        assert caught.value.code.value == "state.instrument_matured"


def test_accrued_upper_is_the_day_before_the_coupon() -> None:
    # 30/360 from 2023-08-31 to 2024-02-28 (the day before the 29 Feb coupon): 178 days
    instrument = make_instrument(
        day_count="30/360",
        accrual_start="2023-08-31",
        next_coupon_date="2024-02-29",
        maturity_date="2026-08-31",
    )
    assert accrued_upper(instrument, D(2023, 9, 1)) == 24_722_222_222
    assert accrued_upper(instrument, D(2024, 2, 28)) == 24_722_222_222


def test_accrued_never_decreases_within_a_period() -> None:
    for day_count in DayCount:
        instrument = make_instrument(
            day_count=day_count.value,
            accrual_start="2023-08-31",
            next_coupon_date="2024-02-29",
            maturity_date="2026-08-31",
        )
        previous = -1
        day = instrument.accrual_start
        while day < instrument.next_coupon_date:
            accrued = accrued_interest(instrument, day)
            assert accrued >= previous, (day_count, day)
            assert accrued <= accrued_upper(instrument, instrument.accrual_start)
            previous = accrued
            day = date.fromordinal(day.toordinal() + 1)


# --- rounding, amounts, fees --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        (Fraction(5, 2), 3),
        (Fraction(-5, 2), -3),
        (Fraction(7, 2), 4),
        (Fraction(1, 2), 1),
        (Fraction(-1, 2), -1),
        (Fraction(24999, 10000), 2),
        (Fraction(-24999, 10000), -2),
        (Fraction(0), 0),
        (Fraction(10), 10),
    ],
)
def test_round_half_away_from_zero(value: Fraction, rounded: int) -> None:
    assert round_half_away_from_zero(value) == rounded


def test_settlement_amount_rounds_an_exact_half_fen_up() -> None:
    instrument = make_instrument()  # face 100.00, factor 1, tick 0.0001
    # 1 x 10000 fen x 1 x (100.0050 + 0) / 100 = 10000.5 fen -> 10001
    assert settlement_amount_fen(instrument, 1_000_050, 1, 0) == 10_001
    # the same fill for 2 units is exactly 20001 fen: rounded once, not per unit
    assert settlement_amount_fen(instrument, 1_000_050, 2, 0) == 20_001
    # factor 0.5: 10000 x 0.5 x 100.0100 / 100 = 5000.5 -> 5001
    assert settlement_amount_fen(instrument.with_factor(500_000), 1_000_100, 1, 0) == 5_001
    # 99.9949 -> 9999.49 fen -> 9999
    assert settlement_amount_fen(instrument, 999_949, 1, 0) == 9_999


def test_settlement_amount_refuses_nonsense_from_callers() -> None:
    instrument = make_instrument()
    with pytest.raises(ValueError):
        settlement_amount_fen(instrument, 0, 1, 0)
    with pytest.raises(ValueError):
        settlement_amount_fen(instrument, 1_000_000, 0, 0)
    with pytest.raises(TypeError):
        settlement_amount_fen(instrument, 1_000_000.0, 1, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "ppm", "fee"),
    [
        (10_000, 50, 1),  # 0.5 fen -> 1 (half up)
        (10_000, -50, -1),  # -0.5 fen -> -1 (half away from zero)
        (9_999, 50, 0),  # 0.49995 -> 0
        (10_000, -49, 0),  # -0.49 -> 0
        (30_000, 25, 1),  # 0.25 bp of 300.00 CNY = 0.75 fen -> 1
        (7_860_441, 50, 393),  # 393.02205
        (7_860_441, -10, -79),  # -78.60441
        (0, 50, 0),
        (10**8, MAX_FEE_PPM, 10**6),  # 1 % of 1,000,000.00 CNY
    ],
)
def test_fee_rounding(amount: int, ppm: int, fee: int) -> None:
    assert fee_fen(amount, ppm) == fee


# --- fee schedules ------------------------------------------------------------------------


def test_fee_schedule_from_wire_in_ppm() -> None:
    schedule = FeeSchedule.from_wire(demo.FEE_SCHEDULE)
    assert schedule.interbank == SegmentFees(maker_ppm=-20, taker_ppm=50)
    assert schedule.exchange == SegmentFees(maker_ppm=-10, taker_ppm=30)
    assert schedule.for_segment("exchange") is schedule.exchange
    assert schedule.to_wire() == demo.FEE_SCHEDULE


def _schedule(ib_maker: str, ib_taker: str, ex_maker: str, ex_taker: str) -> dict:
    return {
        "interbank": {"maker_bps": ib_maker, "taker_bps": ib_taker},
        "exchange": {"maker_bps": ex_maker, "taker_bps": ex_taker},
    }


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        # an interbank rebate of 0.40 bp against an exchange taker paying 0.30 bp
        (_schedule("-0.40", "0.50", "-0.10", "0.30"), "validation.bad_fee_schedule"),
        (_schedule("-0.30", "0.30", "0", "0.30"), None),  # exactly zero net: allowed
        (_schedule("0.10", "-0.05", "0.10", "0.10"), "validation.bad_rate"),  # taker rebate
        (_schedule("0.123", "0.50", "0", "0.50"), "validation.bad_rate"),
        (_schedule("0", "100.01", "0", "0.50"), "validation.absurd_value"),
        (_schedule("0", 0.5, "0", "0.50"), "validation.bad_rate"),
        ({"interbank": {"maker_bps": "0", "taker_bps": "0"}}, "validation.bad_fee_schedule"),
        ({**_schedule("0", "0", "0", "0"), "retail": {}}, "validation.bad_fee_schedule"),
        (
            {"interbank": {"maker_bps": "0"}, "exchange": {"maker_bps": "0", "taker_bps": "0"}},
            "validation.bad_fee_schedule",
        ),
    ],
)
def test_fee_schedule_validation(wire: dict, code: str | None) -> None:
    if code is None:
        FeeSchedule.from_wire(wire)
        return
    with pytest.raises(VenueError) as caught:
        FeeSchedule.from_wire(wire)
    assert caught.value.code.value == code


# --- one fill, worked by hand end to end --------------------------------------------------


def demo_instrument(symbol: str) -> Instrument:
    wire = next(w for w in demo.INSTRUMENTS if w["symbol"] == symbol)
    return Instrument.from_wire(wire)


def test_worked_example_by_hand() -> None:
    """One fill worked by hand, end to end (the README copies this text).

    Worked example: demo tranche IPABS-2025-1-A
    -------------------------------------------
    Tranche: face 100.00 CNY per unit, pool factor 0.784213, coupon 3.60 % ACT/365F, current
    period 2026-11-15 .. 2027-02-15, tick 0.0001. Fees: interbank taker 0.50 bp, exchange maker
    -0.10 bp (rebate).

    P-BRK1 (interbank broker) buys 1000 units on 2026-11-26 by lifting P-MM2's (exchange market
    maker) resting offer at 100.1250. The fill prints at the maker's price, 100.1250
    (1 001 250 ticks).

    1. Accrued per 100 face: 11 days (15 Nov counted, 26 Nov not) x 3.60 / 365
       = 0.108493150684... -> half up to 10 places: 0.1084931507 (accrued = 1 084 931 507).
    2. Dirty price per 100 face: 100.1250 + 0.1084931507 = 100.2334931507.
    3. Settlement amount: 1000 x 100.00 x 0.784213 x 100.2334931507 / 100
       = 78 421.30 x 1.002334931507 = 78 604.408364... CNY -> half up to the fen: 78 604.41 CNY
       (7 860 441 fen), rounded once for the whole fill.
    4. Buyer (taker, interbank) fee: 7 860 441 fen x 0.50 bp = 393.02205 -> 393 fen (3.93 CNY).
       Seller (maker, exchange) fee: 7 860 441 fen x -0.10 bp = -78.60441 -> -79 fen (a 0.79 CNY
       rebate; half away from zero).
    5. Buyer pays 78 604.41 + 3.93 = 78 608.34 CNY; seller receives 78 604.41 + 0.79 =
       78 605.20 CNY; the venue's fee account gets 3.93 - 0.79 = 3.14 CNY. Units: 1000 from seller
       to buyer.

    Reservation that P-BRK1's order held (limit 100.1250, 1000 units): the largest accrued before
    the 2027-02-15 coupon is on 2027-02-14, 91 days: 3.60 x 91 / 365 = 0.8975342466. Per unit:
    100.00 x 0.784213 x (100.1250 + 0.8975342466) / 100 = 79.2231846491 CNY; with the larger
    interbank fee rate (0.50 bp): x 1.00005 = 79.22714581 CNY = 7922.714581 fen -> up to 7923 fen,
    plus 2 fen of rounding allowance = 7925 fen per unit; x 1000 = 7 925 000 fen (79 250.00 CNY),
    of which the fill consumed 7 860 834 fen and 64 166 fen are released.
    """
    instrument = demo_instrument("IPABS-2025-1-A")
    fees = FeeSchedule.from_wire(demo.FEE_SCHEDULE)
    fill = price_fill(
        instrument,
        instrument.parse_price("100.1250"),
        1000,
        D(2026, 11, 26),
        maker_segment="exchange",
        taker_segment="interbank",
        aggressor_side="buy",
        fees=fees,
    )
    assert fill.price_ticks == 1_001_250
    assert fill.accrued == 1_084_931_507
    assert fill.factor == 784_213
    assert fill.settlement_amount == 7_860_441
    assert fill.buyer_fee == 393
    assert fill.seller_fee == -79
    assert fill.buyer_segment is Segment.INTERBANK
    assert fill.seller_segment is Segment.EXCHANGE
    assert fill.buyer_pays == 7_860_834
    assert fill.seller_receives == 7_860_520
    assert fill.venue_fee == 314

    upper = accrued_upper(instrument, D(2026, 11, 26))
    assert upper == 8_975_342_466
    assert buy_cost_per_unit_upper(instrument, 1_001_250, upper, fees, "interbank") == 7_923
    assert buy_reservation_fen(instrument, 1_001_250, 1000, upper, fees, "interbank") == (7_925_000)


def test_an_aggressive_sell_puts_the_taker_fee_on_the_seller() -> None:
    instrument = demo_instrument("IPABS-2025-1-A")
    fees = FeeSchedule.from_wire(demo.FEE_SCHEDULE)
    fill = price_fill(
        instrument,
        1_001_250,
        1000,
        D(2026, 11, 26),
        maker_segment=Segment.INTERBANK,
        taker_segment=Segment.EXCHANGE,
        aggressor_side="sell",
        fees=fees,
    )
    # same amount as the worked example; buyer = interbank maker (-0.20 bp of 7 860 441 =
    # -157.20882 -> -157), seller = exchange taker (0.30 bp = 235.81323 -> 236)
    assert fill.settlement_amount == 7_860_441
    assert (fill.buyer_fee, fill.seller_fee) == (-157, 236)
    assert (fill.buyer_segment, fill.seller_segment) == (Segment.INTERBANK, Segment.EXCHANGE)
    assert fill.venue_fee == 79


def test_price_fill_other_day_counts_match_hand_figures() -> None:
    fees = FeeSchedule.from_wire(demo.FEE_SCHEDULE)
    # IPABS-2025-1-C: 30/360, 6 %, from 2026-08-15: 3 x 30 + 11 = 101 days -> 6 x 101/360
    # = 1.6833333333; 100 units x 100.00 x 1.0 x (96.000 + 1.6833333333) / 100 = 9768.33333333
    # CNY -> 976 833 fen; fees: exchange maker -0.10 bp -> -9.76833 -> -10; interbank taker
    # 0.50 bp -> 48.84165 -> 49
    instrument = demo_instrument("IPABS-2025-1-C")
    fill = price_fill(
        instrument,
        instrument.parse_price("96.000"),
        100,
        D(2026, 11, 26),
        maker_segment="exchange",
        taker_segment="interbank",
        aggressor_side="sell",
        fees=fees,
    )
    assert fill.accrued == 16_833_333_333
    assert fill.settlement_amount == 976_833
    assert (fill.buyer_fee, fill.seller_fee) == (-10, 49)


# --- reservations: guaranteed to cover every split ----------------------------------------

BASE = make_instrument()


@st.composite
def reservation_cases(draw):
    tick = draw(st.sampled_from([1, 10, 5_000, 10_000, 50_000, 1_000_000]))
    instrument = dataclasses.replace(
        BASE,
        face_per_unit=draw(st.integers(1, 10**7)),
        pool_factor=draw(st.integers(1, 10**6)),
        tick_size=tick,
        reference_price=10**8 // tick,
    )
    limit = draw(
        st.one_of(st.integers(1, instrument.max_price_ticks), st.integers(1, 2 * 10**8 // tick))
    )
    upper = draw(st.integers(0, 30 * 10**10))
    makers = draw(st.lists(st.integers(-MAX_FEE_PPM, MAX_FEE_PPM), min_size=2, max_size=2))
    lowest_taker = max(0, -min(makers))
    takers = draw(st.lists(st.integers(lowest_taker, MAX_FEE_PPM), min_size=2, max_size=2))
    fees = FeeSchedule(SegmentFees(makers[0], takers[0]), SegmentFees(makers[1], takers[1]))
    segment = draw(st.sampled_from(list(Segment)))
    qty = draw(st.integers(1, 5_000))
    fills = []
    remaining = qty
    while remaining:
        part = draw(st.one_of(st.just(remaining), st.just(1), st.integers(1, remaining)))
        price = draw(st.one_of(st.just(limit), st.integers(1, limit)))
        accrued = draw(st.one_of(st.just(upper), st.integers(0, upper)))
        buyer_is_maker = draw(st.booleans())
        fills.append((part, price, accrued, buyer_is_maker))
        remaining -= part
    return instrument, limit, upper, fees, segment, qty, fills


@settings(max_examples=400, deadline=None)
@given(reservation_cases())
def test_buy_reservation_covers_any_split_and_shrinks_linearly(case) -> None:
    instrument, limit, upper, fees, segment, qty, fills = case
    rates = fees.for_segment(segment)
    reserved = buy_reservation_fen(instrument, limit, qty, upper, fees, segment)
    spent, remaining = 0, qty
    for part, price, accrued, buyer_is_maker in fills:
        amount = settlement_amount_fen(instrument, price, part, accrued)
        rate = rates.maker_ppm if buyer_is_maker else rates.taker_ppm
        spent += amount + fee_fen(amount, rate)
        remaining -= part
        # what is left always covers the reservation the remainder needs
        left_needed = (
            buy_reservation_fen(instrument, limit, remaining, upper, fees, segment)
            if remaining
            else 0
        )
        assert reserved - spent >= left_needed
    assert spent <= reserved


@settings(max_examples=200, deadline=None)
@given(reservation_cases())
def test_buy_reservation_is_tight_within_three_fen_per_unit(case) -> None:
    instrument, limit, upper, fees, segment, qty, _fills = case
    rates = fees.for_segment(segment)
    rate = max(rates.maker_ppm, rates.taker_ppm, 0)
    # the worst single fill: everything at the limit, at the largest accrued, the larger rate
    amount = settlement_amount_fen(instrument, limit, qty, upper)
    worst = amount + fee_fen(amount, rate)
    reserved = buy_reservation_fen(instrument, limit, qty, upper, fees, segment)
    assert worst <= reserved <= worst + 3 * qty + 1
